//! The running process's side of a binary upgrade: it accepts on the control
//! socket and, for a successor that speaks its protocol version, hands over
//! every listening socket, then pauses its UDP loops and hands over their
//! flows, and on READY stops accepting (without closing a socket first: the
//! successor holds the same kernel sockets) and drains.
//!
//! Sessions run side by side, but one upgrade at a time: a second successor
//! asking for the sockets while one is under way is refused. Every step has a deadline. Until READY nothing is final: a successor
//! that fails, says `Failed`, disconnects or falls silent leaves this process
//! serving as before — its UDP loops resume, and the attempt is logged and
//! counted. What the server itself does (exporting sockets, the UDP loops'
//! pause senders, stopping) is asked over `HandoffCommand`s, answered by the
//! serve loop.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::proxy::udp::handoff::PauseRequest;
use crate::status::HandoverReport;
use crate::upgrade::fds::{FDS_PER_MESSAGE, send_batch};
use crate::upgrade::protocol::{
    self, FlowRecord, Message, PROTOCOL_VERSION, ProtocolError, SocketRecord,
};

use super::live::LiveState;

/// How long the successor gets for each step (and to become ready once it
/// has the flows: datagrams queue in the kernel meanwhile).
const STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// Most UDP flows handed over in one upgrade; the rest are closed here and
/// their clients' next datagrams open new flows in the successor.
pub const MAX_FLOWS_HANDED_OVER: usize = 100_000;

/// How long the UDP loops may spend collecting their flows.
pub const FLOW_BUDGET: Duration = Duration::from_secs(2);

/// What a handoff session asks of the serve loop.
#[derive(Debug)]
pub enum HandoffCommand {
    /// Every listening socket (a descriptor each), services' and admin's.
    Sockets(oneshot::Sender<Vec<(SocketRecord, OwnedFd)>>),
    /// How to pause each UDP loop, by the identity of the socket it reads.
    UdpPauses(oneshot::Sender<Vec<(u64, mpsc::Sender<PauseRequest>)>>),
    /// The successor serves: stop accepting and drain.
    Commit(HandoverReport),
}

/// Accepts successors on `listener` until `stop`.
pub async fn serve_control(
    listener: UnixListener,
    path: PathBuf,
    config: PathBuf,
    commands: mpsc::Sender<HandoffCommand>,
    live: Arc<LiveState>,
    stop: CancellationToken,
) {
    let one_at_a_time = Arc::new(Semaphore::new(1));
    let closed = CancellationToken::new();
    info!(path = %path.display(), "control socket listening (binary upgrades)");
    loop {
        let stream = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    warn!(error = %e, "control socket: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let session = Session {
            one_at_a_time: Arc::clone(&one_at_a_time),
            permit: None,
            stream,
            config: config.clone(),
            stop: stop.clone(),
            closed: closed.clone(),
            commands: commands.clone(),
            outcomes: Vec::new(),
            report: HandoverReport::default(),
        };
        let live = Arc::clone(&live);
        tokio::spawn(async move {
            match session.run(&live).await {
                Ok(_) => {}
                Err(reason) => {
                    live.update_upgrade(|u| u.failed_attempts += 1);
                    warn!(reason = %reason, "binary upgrade failed before the new process was ready; still serving");
                }
            }
        });
    }
    // Never unlink the path: after a handoff it may be the successor's.
    drop(listener);
    closed.cancel();
}

/// One successor's session.
struct Session {
    stream: UnixStream,
    /// Taken when the successor asks for the sockets: one upgrade at a time
    /// (a `Hello` or a description needs none).
    one_at_a_time: Arc<Semaphore>,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
    /// The configuration file this process runs (the successor checks it is
    /// this process's successor).
    config: PathBuf,
    /// Ends the control socket's accept loop, which then cancels `closed`.
    stop: CancellationToken,
    closed: CancellationToken,
    commands: mpsc::Sender<HandoffCommand>,
    /// Paused UDP loops, waiting for READY (dropped: they resume).
    outcomes: Vec<oneshot::Sender<bool>>,
    report: HandoverReport,
}

impl Session {
    /// `Ok(true)` once the successor took over; `Ok(false)` when it left
    /// before asking for anything; the reason of a failed attempt otherwise.
    async fn run(mut self, live: &LiveState) -> Result<bool, String> {
        let hello = match self.read().await {
            Ok(hello) => hello,
            // A liveness probe (`control_path::probe`) connects and closes.
            Err(ProtocolError::Closed) => return Ok(false),
            Err(e) => return Err(format!("no hello: {e}")),
        };
        let Message::Hello {
            protocol_version,
            pid,
            version,
            ..
        } = hello
        else {
            return Err(format!("expected hello, got {hello:?}"));
        };
        if protocol_version != PROTOCOL_VERSION {
            let reason = format!(
                "upgrade protocol version {protocol_version} is not this process's {PROTOCOL_VERSION}"
            );
            let _ = write(
                &mut self.stream,
                &Message::Refused {
                    reason: reason.clone(),
                },
            )
            .await;
            return Err(format!("pid {pid} (l4lb {version}): {reason}"));
        }
        write(&mut self.stream, &protocol::hello(&self.config))
            .await
            .map_err(|e| e.to_string())?;
        self.report.pid = pid;
        self.report.version = version;
        let mut asked = false;
        loop {
            let message = match self.read().await {
                Ok(message) => message,
                Err(ProtocolError::Closed) if !asked => return Ok(false),
                Err(e) => return Err(format!("pid {pid}: {e}")),
            };
            asked = true;
            match message {
                Message::Describe => return self.describe(live).await.map(|()| false),
                Message::SendSockets => self.send_sockets().await?,
                Message::SendFlows => self.send_flows().await?,
                Message::Ready { .. } => return self.commit().await.map(|()| true),
                Message::Failed { reason } => return Err(format!("pid {pid} gave up: {reason}")),
                other => return Err(format!("pid {pid}: unexpected {other:?}")),
            }
        }
    }

    async fn read(&mut self) -> Result<Message, ProtocolError> {
        match tokio::time::timeout(STEP_TIMEOUT, read(&mut self.stream)).await {
            Ok(result) => result,
            Err(_) => Err(ProtocolError::Io(std::io::ErrorKind::TimedOut.into())),
        }
    }

    async fn ask<T>(
        &self,
        command: impl FnOnce(oneshot::Sender<T>) -> HandoffCommand,
    ) -> Result<T, String> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(command(reply))
            .await
            .map_err(|_| "the server is stopping".to_string())?;
        answer
            .await
            .map_err(|_| "the server is stopping".to_string())
    }

    /// What a successor would get, without descriptors (`l4lb check`).
    async fn describe(&mut self, live: &LiveState) -> Result<(), String> {
        let sockets = self.ask(HandoffCommand::Sockets).await?;
        let sockets = sockets.into_iter().map(|(record, _)| record).collect();
        let snapshot = live.snapshot();
        let udp_flows = snapshot
            .services
            .iter()
            .map(|v| v.service.udp_flows())
            .sum();
        let description = Message::Description { sockets, udp_flows };
        write(&mut self.stream, &description)
            .await
            .map_err(|e| e.to_string())
    }

    async fn send_sockets(&mut self) -> Result<(), String> {
        match Arc::clone(&self.one_at_a_time).try_acquire_owned() {
            Ok(permit) => self.permit = Some(permit),
            Err(_) => {
                let reason = "another upgrade is under way".to_string();
                let _ = write(
                    &mut self.stream,
                    &Message::Refused {
                        reason: reason.clone(),
                    },
                )
                .await;
                return Err(reason);
            }
        }
        let sockets = self.ask(HandoffCommand::Sockets).await?;
        let (records, fds): (Vec<SocketRecord>, Vec<OwnedFd>) = sockets.into_iter().unzip();
        self.report.sockets = records.len();
        write(&mut self.stream, &Message::Sockets { sockets: records })
            .await
            .map_err(|e| e.to_string())?;
        send_fds(&self.stream, &fds)
            .await
            .map_err(|e| format!("sending sockets: {e}"))
    }

    /// Pauses every UDP loop, collects their flows and sends them.
    async fn send_flows(&mut self) -> Result<(), String> {
        let pauses = self.ask(HandoffCommand::UdpPauses).await?;
        let mut records = Vec::new();
        let mut fds = Vec::new();
        let mut room = MAX_FLOWS_HANDED_OVER;
        for (listener, pause) in pauses {
            let (reply, flows) = oneshot::channel();
            let (outcome, waiting) = oneshot::channel();
            let request = PauseRequest {
                limit: room,
                budget: FLOW_BUDGET,
                reply,
                outcome: waiting,
            };
            if pause.send(request).await.is_err() {
                continue; // that loop has stopped (a reload removed its address)
            }
            self.outcomes.push(outcome);
            let Ok(Ok(flows)) = tokio::time::timeout(STEP_TIMEOUT, flows).await else {
                return Err("a udp loop did not pause in time".to_string());
            };
            room = room.saturating_sub(flows.len());
            for flow in flows {
                records.push(FlowRecord {
                    listener,
                    backend: flow.backend,
                    backend_addr: flow.backend_addr,
                    state: flow.state,
                });
                fds.push(flow.socket);
            }
        }
        self.report.udp_flows = records.len();
        write(&mut self.stream, &Message::Flows { flows: records })
            .await
            .map_err(|e| e.to_string())?;
        send_fds(&self.stream, &fds)
            .await
            .map_err(|e| format!("sending flows: {e}"))
    }

    /// The successor serves: the UDP loops end, the server stops accepting.
    async fn commit(mut self) -> Result<(), String> {
        for outcome in self.outcomes.drain(..) {
            let _ = outcome.send(true);
        }
        let report = self.report.clone();
        info!(successor = report.pid, version = %report.version, sockets = report.sockets,
            udp_flows = report.udp_flows, "handed over to the new process; stopping accepting and draining");
        self.commands
            .send(HandoffCommand::Commit(report))
            .await
            .map_err(|_| "the server is stopping".to_string())?;
        // The successor binds the control socket's path next: nobody may
        // accept on it here by then.
        self.stop.cancel();
        let _ = tokio::time::timeout(STEP_TIMEOUT, self.closed.cancelled()).await;
        let _ = write(&mut self.stream, &Message::Done).await;
        Ok(())
    }
}

async fn write(stream: &mut UnixStream, message: &Message) -> Result<(), ProtocolError> {
    let frame = protocol::encode(message)?;
    tokio::time::timeout(STEP_TIMEOUT, stream.write_all(&frame))
        .await
        .map_err(|_| ProtocolError::Io(std::io::ErrorKind::TimedOut.into()))??;
    Ok(())
}

async fn read(stream: &mut UnixStream) -> Result<Message, ProtocolError> {
    let mut header = [0u8; 4];
    read_exact(stream, &mut header).await?;
    let mut body = vec![0u8; protocol::frame_len(header)?];
    read_exact(stream, &mut body).await?;
    protocol::decode(&body)
}

async fn read_exact(stream: &mut UnixStream, buf: &mut [u8]) -> Result<(), ProtocolError> {
    match stream.read_exact(buf).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(ProtocolError::Closed),
        Err(e) => Err(ProtocolError::Io(e)),
    }
}

/// Sends `fds` in batches, waiting for room on the socket.
async fn send_fds(stream: &UnixStream, fds: &[OwnedFd]) -> std::io::Result<()> {
    let borrowed: Vec<BorrowedFd<'_>> = fds.iter().map(|fd| fd.as_fd()).collect();
    for batch in borrowed.chunks(FDS_PER_MESSAGE) {
        let send = || match send_batch(stream.as_fd(), batch)? {
            true => Ok(()),
            false => Err(std::io::ErrorKind::WouldBlock.into()),
        };
        tokio::time::timeout(STEP_TIMEOUT, stream.async_io(Interest::WRITABLE, send))
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
    }
    Ok(())
}
