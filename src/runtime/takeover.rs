//! The successor's side of a binary upgrade: finds a live predecessor on the
//! control socket, takes its listening sockets and then its UDP flows, and
//! once this process serves, says READY and waits for the predecessor to
//! confirm it stopped accepting.
//!
//! Blocking I/O with a deadline on every step: this runs before the server
//! serves anything, on the main thread. Any error before READY leaves the
//! predecessor serving (it resumes what it paused); the caller exits non-zero.
//! A predecessor is a live process on the control socket that runs the same
//! configuration file; one of another configuration is another instance and
//! is left alone — unless `--upgrade` says to take over from whatever runs there.

use std::collections::HashMap;
use std::io;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracing::info;

use crate::proxy::udp::handoff::HandedFlow;
use crate::status::HandoverReport;
use crate::upgrade::control_path::{self, PathState};
use crate::upgrade::fds;
use crate::upgrade::protocol::{self, Message, PROTOCOL_VERSION, ProtocolError};

use super::inherited::{InheritedSockets, SocketOrigin};
use super::listeners::HandedFlows;

/// How long each step may take (the predecessor pausing its UDP loops, a
/// large flow list crossing the socket).
pub const STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether a predecessor is required.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpgradeMode {
    /// Upgrade from a live predecessor of the same configuration, if any.
    Auto,
    /// `--upgrade`: a live process on the control socket is required.
    Required,
}

/// Why an upgrade could not happen (the predecessor keeps serving).
#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    #[error("no running l4lb accepts on the control socket {path}: {why}")]
    NoPredecessor { path: PathBuf, why: String },
    #[error("control socket {path}: {source}")]
    Connect {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the running l4lb refused the upgrade: {0}")]
    Refused(String),
    #[error(
        "the running l4lb speaks upgrade protocol version {theirs}, this binary {PROTOCOL_VERSION}"
    )]
    Version { theirs: u32 },
    #[error("upgrade protocol: {0}")]
    Protocol(#[from] ProtocolError),
    #[error("upgrade protocol: expected {expected}, got {got}")]
    Unexpected { expected: &'static str, got: String },
}

/// A session with the predecessor, between `Hello` and `Done`.
#[derive(Debug)]
pub struct Takeover {
    stream: UnixStream,
    report: HandoverReport,
}

impl Takeover {
    /// Connects to the predecessor on `path`; `Ok(None)` when there is none
    /// (and none is required), or when the process there runs another
    /// configuration than `config` (automatic mode only).
    pub fn connect(
        path: &Path,
        config: &Path,
        mode: UpgradeMode,
    ) -> Result<Option<Takeover>, UpgradeError> {
        let missing = |why: &str| UpgradeError::NoPredecessor {
            path: path.to_path_buf(),
            why: why.to_string(),
        };
        let connect_error = |source| UpgradeError::Connect {
            path: path.to_path_buf(),
            source,
        };
        let (state, stream) = match control_path::connect(path) {
            Ok(connected) => connected,
            Err(e) if mode == UpgradeMode::Auto => {
                info!(path = %path.display(), error = %e, "control socket unusable; no upgrade");
                return Ok(None);
            }
            Err(e) => return Err(connect_error(e)),
        };
        let stream = match (state, stream, mode) {
            (PathState::Live, Some(stream), _) => stream,
            (_, _, UpgradeMode::Auto) => return Ok(None),
            (PathState::Stale, _, UpgradeMode::Required) => {
                return Err(missing("a stale socket file, its process is gone"));
            }
            (_, _, UpgradeMode::Required) => return Err(missing("no such socket")),
        };
        stream
            .set_read_timeout(Some(STEP_TIMEOUT))
            .and_then(|()| stream.set_write_timeout(Some(STEP_TIMEOUT)))
            .map_err(connect_error)?;
        let answer = protocol::write(&stream, &protocol::hello(config))
            .and_then(|()| protocol::read(&stream));
        let answer = match (answer, mode) {
            (Ok(answer), _) => answer,
            (Err(e), UpgradeMode::Auto) => {
                // A process that is stopping closes its control socket with
                // this connection queued: it is no predecessor.
                info!(path = %path.display(), error = %e,
                    "the l4lb on the control socket did not answer; starting without it");
                return Ok(None);
            }
            (Err(e), UpgradeMode::Required) => return Err(e.into()),
        };
        let (pid, version, their_config) = match answer {
            Message::Hello {
                protocol_version,
                pid,
                version,
                config,
                net_namespace,
            } => {
                if protocol_version != PROTOCOL_VERSION {
                    return Err(UpgradeError::Version {
                        theirs: protocol_version,
                    });
                }
                let ours = protocol::net_namespace();
                if !ours.is_empty() && !net_namespace.is_empty() && ours != net_namespace {
                    info!(pid, theirs = %net_namespace, ours = %ours,
                        "the l4lb on the control socket runs in another network namespace: not its successor");
                    return match mode {
                        UpgradeMode::Auto => Ok(None),
                        UpgradeMode::Required => Err(UpgradeError::Refused(format!(
                            "it runs in another network namespace ({net_namespace}, this one {ours}): \
                             its sockets are of no use here"
                        ))),
                    };
                }
                (pid, version, config)
            }
            Message::Refused { reason } => return Err(UpgradeError::Refused(reason)),
            other => return Err(unexpected("hello", &other)),
        };
        if mode == UpgradeMode::Auto && !same_file(config, &their_config) {
            info!(pid, their_config = %their_config.display(),
                "the l4lb on the control socket runs another configuration: not its successor");
            return Ok(None);
        }
        info!(pid, version = %version, path = %path.display(), "upgrading from the running l4lb");
        let report = HandoverReport {
            pid,
            version,
            unix_time: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            ..HandoverReport::default()
        };
        Ok(Some(Takeover { stream, report }))
    }

    /// Every listening socket of the predecessor (services' and admin's).
    pub fn receive_sockets(&mut self) -> Result<InheritedSockets, UpgradeError> {
        protocol::write(&self.stream, &Message::SendSockets)?;
        let sockets = match protocol::read(&self.stream)? {
            Message::Sockets { sockets } => sockets,
            Message::Refused { reason } => return Err(UpgradeError::Refused(reason)),
            other => return Err(unexpected("sockets", &other)),
        };
        let received = fds::recv_all(&self.stream, sockets.len()).map_err(ProtocolError::Io)?;
        let mut inherited = InheritedSockets::default();
        for (record, fd) in sockets.iter().zip(received) {
            inherited.add(record.protocol, record.local, fd, SocketOrigin::Predecessor);
        }
        self.report.sockets = sockets.len();
        info!(sockets = sockets.len(), "listening sockets received");
        Ok(inherited)
    }

    /// The predecessor's UDP flows (it stops reading its UDP sockets now).
    pub fn receive_flows(&mut self) -> Result<HandedFlows, UpgradeError> {
        protocol::write(&self.stream, &Message::SendFlows)?;
        let flows = match protocol::read(&self.stream)? {
            Message::Flows { flows } => flows,
            other => return Err(unexpected("flows", &other)),
        };
        let received = fds::recv_all(&self.stream, flows.len()).map_err(ProtocolError::Io)?;
        let mut handed: HandedFlows = HashMap::new();
        for (record, socket) in flows.into_iter().zip(received) {
            handed.entry(record.listener).or_default().push(HandedFlow {
                state: record.state,
                backend: record.backend,
                backend_addr: record.backend_addr,
                socket,
            });
        }
        self.report.udp_flows = handed.values().map(Vec::len).sum();
        info!(flows = self.report.udp_flows, "udp flows received");
        Ok(handed)
    }

    /// This process serves now: tells the predecessor, which stops accepting
    /// and drains; what was handed over.
    pub fn ready(self) -> Result<HandoverReport, UpgradeError> {
        let pid = std::process::id();
        protocol::write(&self.stream, &Message::Ready { pid })?;
        match protocol::read(&self.stream)? {
            Message::Done => {
                info!(
                    predecessor = self.report.pid,
                    "the previous process stopped accepting; upgrade complete"
                );
                Ok(self.report)
            }
            other => Err(unexpected("done", &other)),
        }
    }

    /// Tells the predecessor this process gives up (it carries on as before).
    pub fn fail(self, reason: &str) {
        let message = Message::Failed {
            reason: reason.to_string(),
        };
        let _ = protocol::write(&self.stream, &message);
    }
}

/// What the l4lb on `path` would hand over (`l4lb check`): its `Hello` and
/// its description; `Ok(None)` when none runs there.
pub fn describe(path: &Path, config: &Path) -> Result<Option<(Message, Message)>, UpgradeError> {
    let connect_error = |source| UpgradeError::Connect {
        path: path.to_path_buf(),
        source,
    };
    let (_, stream) = control_path::connect(path).map_err(connect_error)?;
    let Some(stream) = stream else {
        return Ok(None);
    };
    stream
        .set_read_timeout(Some(STEP_TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(STEP_TIMEOUT)))
        .map_err(connect_error)?;
    protocol::write(&stream, &protocol::hello(config))?;
    let hello = protocol::read(&stream)?;
    match &hello {
        Message::Hello {
            protocol_version, ..
        } if *protocol_version != PROTOCOL_VERSION => {
            return Err(UpgradeError::Version {
                theirs: *protocol_version,
            });
        }
        Message::Hello { .. } => {}
        Message::Refused { reason } => return Err(UpgradeError::Refused(reason.clone())),
        other => return Err(unexpected("hello", other)),
    }
    protocol::write(&stream, &Message::Describe)?;
    Ok(Some((hello, protocol::read(&stream)?)))
}

fn unexpected(expected: &'static str, got: &Message) -> UpgradeError {
    UpgradeError::Unexpected {
        expected,
        got: format!("{got:?}").chars().take(200).collect(),
    }
}

/// Whether two paths name one file (the configuration both processes run).
fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}
