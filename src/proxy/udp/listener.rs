//! The socket shell of one UDP listen address: receives datagrams in batches,
//! asks the flow core (`flows`) what to do with each, and does it.
//!
//! The core decides; this file only opens a flow's socket connected to its
//! backend, sends, spawns the flow's reply task, writes access-log lines and
//! counts drops. A flow's reply task sends whatever the backend answers back to
//! the client from the listening socket (so the client sees the address it sent
//! to) and tells the receive loop how many replies went back, or that the
//! backend answered with an error. Nothing waits for buffer space: a datagram
//! that cannot be sent now is dropped and counted; one too big to be sent at
//! all is the sender's problem, never the backend's.

use std::borrow::Cow;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::lifecycle::Lifecycle;
use crate::log_throttle::LogThrottle;
use crate::proxy::backend_socket::connect_udp;
use crate::proxy::proxy_protocol;
use crate::proxy::udp::batch::RecvBatch;
use crate::proxy::udp::flow_budget::FlowBudget;
use crate::proxy::udp::flows::{Action, Closed, FlowCore, FlowId};
use crate::proxy::udp::handoff::{HandedFlow, PauseRequest};
use crate::proxy::udp::own_addresses::OwnAddresses;
use crate::proxy::udp::send::{SendFailure, send_now};
use crate::proxy::udp::view::{FlowBackend, FlowSlots, LiveView};
use crate::service::{DropReason, Service, ServiceSlot};

mod upgrade;

/// Datagrams received per system call at most (each slot holds 64 KiB).
const RECV_BATCH: usize = 32;

/// Backend replies received per system call at most, into a per-thread batch.
const REPLY_BATCH: usize = 4;

/// Reply-task reports handled per wake-up at most (the rest wait their turn).
const EVENT_BATCH: usize = 256;

thread_local! {
    /// Shared by the reply tasks of one worker thread, each borrowing it only
    /// between two awaits: idle flows hold no buffer.
    static REPLIES: std::cell::RefCell<RecvBatch> = std::cell::RefCell::new(RecvBatch::new(REPLY_BATCH));
}

/// The socket layer's part of one flow.
#[derive(Debug)]
pub struct FlowIo {
    upstream: Arc<UdpSocket>,
    closer: CancellationToken,
    _slots: FlowSlots,
}

type Core = FlowCore<FlowBackend, FlowIo, FlowSlots>;
type Flow = crate::proxy::udp::flows::Flow<FlowBackend, FlowIo>;
type Actions = Vec<Action<FlowBackend, FlowIo, FlowSlots>>;

/// What a flow's reply task tells the receive loop.
#[derive(Debug)]
enum FlowEvent {
    Replied {
        client: SocketAddr,
        id: FlowId,
        count: u64,
    },
    BackendError {
        client: SocketAddr,
        id: FlowId,
    },
}

/// One listen address of a UDP service: what its receive loop needs.
#[derive(Debug, Clone)]
pub struct UdpProxy {
    /// The service's current configuration; swapped by a reload.
    pub slot: Arc<ServiceSlot>,
    pub lifecycle: Lifecycle,
    /// Stops this listener alone (a reload that removes the address).
    pub stop: CancellationToken,
    pub warnings: Arc<LogThrottle>,
    /// Every UDP listen address of this process (a source to refuse).
    pub own_addresses: Arc<ArcSwap<OwnAddresses>>,
    /// The process-wide bound on flows (their descriptors).
    pub flow_budget: Arc<FlowBudget>,
}

impl UdpProxy {
    /// Receives on `socket` until `stop` (or `stop_accepting`) is cancelled, then
    /// closes every flow. `adopted` are flows a predecessor handed over on this
    /// very socket; `pauses` asks the loop to hand its own flows over.
    pub async fn serve(
        self,
        socket: UdpSocket,
        adopted: Vec<HandedFlow>,
        mut pauses: mpsc::Receiver<PauseRequest>,
    ) {
        let (events, mut reports) = mpsc::unbounded_channel();
        let now = Instant::now();
        let oldest = adopted.iter().map(|f| f.state.age_ms).max().unwrap_or(0);
        let mut shell = Shell {
            socket: Arc::new(socket),
            // Adopted flows' ages fit on this clock (ticks never go below 0).
            started: now
                .checked_sub(Duration::from_millis(oldest))
                .unwrap_or(now),
            every_flow: CancellationToken::new(),
            events,
            proxy: &self,
            core: Core::default(),
        };
        shell.adopt(adopted);
        let mut batch = RecvBatch::new(RECV_BATCH);
        let mut reported = Vec::with_capacity(EVENT_BATCH);
        let mut next_sweep = tokio::time::Instant::now();
        loop {
            tokio::select! {
                () = self.stop.cancelled() => break,
                () = self.lifecycle.stop_accepting.cancelled() => break,
                Some(pause) = pauses.recv() => if shell.pause(pause).await { return },
                () = tokio::time::sleep_until(next_sweep) => next_sweep = shell.sweep(),
                _ = reports.recv_many(&mut reported, EVENT_BATCH) => shell.on_events(reported.drain(..)),
                ready = shell.socket.readable() => {
                    match ready.and_then(|()| batch.recv_ready(&shell.socket)) {
                        Ok(count) => shell.on_batch(&batch, count),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(e) => shell.recv_failed(&e).await,
                    }
                }
            }
        }
        shell.close_all();
    }
}

/// The receive loop's state: the flow core and what carrying out its actions needs.
struct Shell<'p> {
    socket: Arc<UdpSocket>,
    started: Instant,
    every_flow: CancellationToken,
    events: mpsc::UnboundedSender<FlowEvent>,
    proxy: &'p UdpProxy,
    core: Core,
}

impl Shell<'_> {
    /// The flow core's clock: milliseconds since the loop started.
    fn ticks(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.started).as_millis() as u64
    }

    /// Handles one batch of client datagrams with the service's current generation.
    fn on_batch(&mut self, batch: &RecvBatch, count: usize) {
        let service = self.proxy.slot.current();
        let own = self.proxy.own_addresses.load();
        let view = view(&service, &own, &self.proxy.flow_budget);
        let ticks = self.ticks(view.now);
        let mut actions = Actions::new();
        for (data, client) in (0..count).filter_map(|i| batch.get(i)) {
            self.core.on_datagram(ticks, client, &view, &mut actions);
            self.carry_out(&mut actions, &view, data);
        }
    }

    /// Carries out `actions` (and whatever they lead to) for one datagram `data`.
    fn carry_out(&mut self, actions: &mut Actions, view: &LiveView<'_>, data: &[u8]) {
        while let Some(action) = actions.pop() {
            match action {
                Action::Send { client, header } => self.send(client, header, data, view, actions),
                Action::Open {
                    client,
                    backend,
                    slot,
                    header,
                } => {
                    self.open(client, backend, slot, header, data, view, actions);
                }
                Action::Close(closed) => self.close(view.service, closed),
                Action::Drop { client, reason } => {
                    drop_datagram(view.service, &self.proxy.warnings, client, reason)
                }
                Action::ArmTimer { .. } => {}
            }
        }
    }

    /// Sends `data` to `client`'s flow and tells the core how it went.
    fn send(
        &mut self,
        client: SocketAddr,
        header: bool,
        data: &[u8],
        view: &LiveView<'_>,
        actions: &mut Actions,
    ) {
        let Some(flow) = self.core.flow(client) else {
            return;
        };
        let datagram = with_header(header, &self.socket, client, data);
        let error = match send_now(&flow.io.upstream, &datagram, None) {
            Ok(_) => return flow.backend.backend.count_datagram_up(data.len()),
            Err(e) => e,
        };
        let service = view.service;
        match SendFailure::of(&error) {
            SendFailure::Full => {
                service.count_drop(DropReason::SendError);
                self.core.send_lost(client, header);
            }
            SendFailure::TooBig => {
                drop_too_big(service, &self.proxy.warnings, client, data.len(), &error);
                self.core.send_lost(client, header);
            }
            SendFailure::Broken => {
                service.count_drop(DropReason::SendError);
                flow.backend.backend.record_connect_failure(view.now);
                if let Some(held_back) = self.proxy.warnings.permit() {
                    warn!(service = service.name(), backend = flow.backend.backend.address(),
                        error = %error, held_back, "udp send to backend failed; flow dropped");
                }
                self.core
                    .send_failed(client, service.config().access_log, actions);
            }
        }
    }

    /// Opens the flow the core asked for, with its reply task, and sends `data` on it.
    #[allow(clippy::too_many_arguments)]
    fn open(
        &mut self,
        client: SocketAddr,
        backend: FlowBackend,
        slots: FlowSlots,
        header: bool,
        data: &[u8],
        view: &LiveView<'_>,
        actions: &mut Actions,
    ) {
        let source = &view.service.config().source;
        let upstream = match connect_udp(source, client, backend.backend.addr()) {
            Ok(upstream) => Arc::new(upstream),
            Err(e) => {
                if let Some(held_back) = self.proxy.warnings.permit() {
                    warn!(service = view.service.name(), client = %client,
                        backend = backend.backend.address(), error = %e, held_back,
                        "cannot open a udp socket to the backend");
                }
                return self.core.open_failed(client, actions);
            }
        };
        let io = FlowIo {
            upstream,
            closer: self.every_flow.child_token(),
            _slots: slots,
        };
        let ticks = self.ticks(view.now);
        self.core.opened(ticks, client, backend, io, view, actions);
        if let Some(flow) = self.core.flow(client) {
            self.spawn_replies(client, flow, view.service);
        }
        self.send(client, header, data, view, actions);
    }

    /// Starts the task relaying `flow`'s replies to `client`.
    fn spawn_replies(&self, client: SocketAddr, flow: &Flow, service: &Arc<Service>) {
        let replies = ReplyTask {
            upstream: Arc::clone(&flow.io.upstream),
            closer: flow.io.closer.clone(),
            listen: Arc::clone(&self.socket),
            client,
            backend: Arc::clone(&flow.backend.backend),
            service: Arc::clone(service),
            events: self.events.clone(),
        };
        tokio::spawn(replies.run(flow.id));
    }

    /// Stops a closed flow's reply task and writes its access-log line.
    fn close(&self, service: &Service, closed: Closed<FlowBackend, FlowIo>) {
        let flow = &closed.flow;
        flow.io.closer.cancel();
        if !closed.log {
            return;
        }
        let now = self.ticks(Instant::now());
        info!(
            target: "l4lb::access",
            service = service.name(),
            client = %closed.client,
            backend = flow.backend.backend.address(),
            datagrams_up = flow.datagrams_up,
            datagrams_down = flow.datagrams_down,
            duration_ms = now.saturating_sub(flow.opened_at) as f64,
            end = closed.reason.as_str(),
            "udp flow closed"
        );
    }

    /// Reply-task reports: replies that went back, backends that answered with an error.
    fn on_events(&mut self, events: impl Iterator<Item = FlowEvent>) {
        let service = self.proxy.slot.current();
        let own = self.proxy.own_addresses.load();
        let view = view(&service, &own, &self.proxy.flow_budget);
        let ticks = self.ticks(view.now);
        let log = service.config().access_log;
        let mut actions = Actions::new();
        for event in events {
            match event {
                FlowEvent::Replied { client, id, count } => {
                    self.core
                        .on_replies(ticks, client, id, count, &view, &mut actions);
                }
                FlowEvent::BackendError { client, id } => {
                    self.core.on_backend_error(client, id, log, &mut actions);
                }
            }
        }
        self.carry_out(&mut actions, &view, &[]);
    }

    /// Closes idle flows; when to sweep next.
    fn sweep(&mut self) -> tokio::time::Instant {
        let service = self.proxy.slot.current();
        let own = self.proxy.own_addresses.load();
        let view = view(&service, &own, &self.proxy.flow_budget);
        let mut actions = Actions::new();
        self.core.sweep(self.ticks(view.now), &view, &mut actions);
        let at = actions.iter().find_map(|a| match a {
            Action::ArmTimer { at } => Some(*at),
            _ => None,
        });
        self.carry_out(&mut actions, &view, &[]);
        let after = at.map_or(Duration::from_secs(1), Duration::from_millis);
        tokio::time::Instant::from_std(self.started + after)
    }

    fn close_all(&mut self) {
        let service = self.proxy.slot.current();
        let own = self.proxy.own_addresses.load();
        let view = view(&service, &own, &self.proxy.flow_budget);
        let mut actions = Actions::new();
        self.core
            .close_all(service.config().access_log, &mut actions);
        self.carry_out(&mut actions, &view, &[]);
        self.every_flow.cancel();
    }

    async fn recv_failed(&self, error: &io::Error) {
        if let Some(held_back) = self.proxy.warnings.permit() {
            let service = self.proxy.slot.current();
            warn!(service = service.name(), error = %error, held_back, "udp receive failed");
        }
        // Never spin on a persistent error.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn view<'a>(
    service: &'a Arc<Service>,
    own: &'a OwnAddresses,
    budget: &'a FlowBudget,
) -> LiveView<'a> {
    LiveView {
        service,
        own_addresses: own,
        flow_budget: budget,
        now: Instant::now(),
    }
}

/// Counts a datagram that could not be sent on, and says why (rate-limited).
fn drop_datagram(
    service: &Service,
    warnings: &LogThrottle,
    client: SocketAddr,
    reason: DropReason,
) {
    service.count_drop(reason);
    let Some(held_back) = warnings.permit() else {
        return;
    };
    let why = match reason {
        DropReason::Acl => return, // refused by configuration: counted, not worth a warning
        DropReason::Loop => "its source is a listen address of this l4lb, answering it would loop",
        DropReason::MaxFlows => {
            "the flow table is full (max_flows), or the process has no descriptor to spare"
        }
        DropReason::NoBackend => "no backend available",
        DropReason::SendError => "no socket to the backend",
        DropReason::TooBig => "too big to send",
    };
    warn!(service = service.name(), client = %client, reason = reason.as_str(), why, held_back,
        "udp datagram dropped: no flow could be opened");
}

/// Counts a client datagram too big to send on (with the PROXY header, or to a
/// backend of the other address family); the flow and its backend are fine.
fn drop_too_big(
    service: &Service,
    warnings: &LogThrottle,
    client: SocketAddr,
    len: usize,
    error: &io::Error,
) {
    service.count_drop(DropReason::TooBig);
    if let Some(held_back) = warnings.permit() {
        warn!(service = service.name(), client = %client, bytes = len,
            error = %error, held_back, "udp datagram too big to send to the backend; dropped");
    }
}

/// `data`, behind a PROXY v2 header naming `client` and the service address it
/// sent to when `header`.
fn with_header<'d>(
    header: bool,
    listen: &UdpSocket,
    client: SocketAddr,
    data: &'d [u8],
) -> Cow<'d, [u8]> {
    if !header {
        return Cow::Borrowed(data);
    }
    let destination = listen.local_addr().unwrap_or(client);
    let mut datagram = proxy_protocol::encode_v2_udp(client, destination);
    datagram.extend_from_slice(data);
    Cow::Owned(datagram)
}

/// Sends one flow's backend replies back to its client, from the listening socket.
struct ReplyTask {
    upstream: Arc<UdpSocket>,
    closer: CancellationToken,
    listen: Arc<UdpSocket>,
    client: SocketAddr,
    backend: Arc<crate::backend::Backend>,
    service: Arc<Service>,
    events: mpsc::UnboundedSender<FlowEvent>,
}

impl ReplyTask {
    /// Relays until the flow is closed or its backend answers with an error.
    async fn run(self, id: FlowId) {
        let client = self.client;
        loop {
            tokio::select! {
                // A paused flow (an upgrade) must not read one more reply.
                biased;
                () = self.closer.cancelled() => return,
                ready = self.upstream.readable() => if ready.is_err() { return },
            }
            let event = match REPLIES.with(|replies| self.relay_ready(&mut replies.borrow_mut())) {
                Ok(0) => continue,
                Ok(count) => FlowEvent::Replied { client, id, count },
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(_) => {
                    // ICMP unreachable (ECONNREFUSED) or worse: the flow closes and
                    // the next client datagram opens a new one, perhaps elsewhere.
                    self.backend.record_connect_failure(Instant::now());
                    self.service.count_drop(DropReason::SendError);
                    FlowEvent::BackendError { client, id }
                }
            };
            let failed = matches!(event, FlowEvent::BackendError { .. });
            if self.events.send(event).is_err() || failed {
                return;
            }
        }
    }

    /// Sends the replies waiting on the flow's socket to its client; how many
    /// were received.
    fn relay_ready(&self, replies: &mut RecvBatch) -> io::Result<u64> {
        let received = replies.recv_ready(&self.upstream)?;
        for (data, _) in (0..received).filter_map(|i| replies.get(i)) {
            match send_now(&self.listen, data, Some(self.client)) {
                Ok(_) => self.backend.count_datagram_down(data.len()),
                Err(e) => self.service.count_drop(match SendFailure::of(&e) {
                    SendFailure::TooBig => DropReason::TooBig,
                    SendFailure::Full | SendFailure::Broken => DropReason::SendError,
                }),
            }
        }
        Ok(received as u64)
    }
}
