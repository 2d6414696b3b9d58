//! What the UDP receive loop and a binary upgrade exchange: a request to pause
//! the loop and hand its flows over, and the flows themselves (state, backend,
//! and a descriptor of each flow's connected backend socket).
//!
//! A paused loop reads neither its listening socket nor its flows' sockets, so
//! datagrams wait in the kernel's buffers for whichever process reads next: this
//! one if the upgrade fails (`outcome` false, or dropped), the successor if it
//! succeeds. Nothing here does I/O; `listener` carries it out.

use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::time::Duration;

use tokio::sync::oneshot;

use crate::proxy::udp::flows::handoff::FlowState;

/// One flow on its way to (or from) another process.
#[derive(Debug)]
pub struct HandedFlow {
    pub state: FlowState,
    /// The backend's address as configured (its identity in the service).
    pub backend: String,
    /// Where the flow's socket is connected.
    pub backend_addr: SocketAddr,
    /// The flow's socket, connected to `backend_addr`.
    pub socket: OwnedFd,
}

/// Asks a UDP receive loop to stop reading and hand its flows over.
#[derive(Debug)]
pub struct PauseRequest {
    /// At most this many flows (the most recently active first).
    pub limit: usize,
    /// Stop collecting flows after this long; the rest are not handed over.
    pub budget: Duration,
    pub reply: oneshot::Sender<Vec<HandedFlow>>,
    /// `true`: the successor serves now, the loop ends; `false` (or dropped):
    /// the loop resumes as if nothing happened.
    pub outcome: oneshot::Receiver<bool>,
}
