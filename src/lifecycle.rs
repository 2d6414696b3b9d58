//! The stages of stopping, shared by every listener and session.
//!
//! First `withdraw` (the process says it is draining — `/ready` and `/healthz`
//! answer 503 so routers withdraw its route — while listeners still accept), then,
//! after `drain_delay`, `stop_accepting` (listeners close, open sessions carry
//! on), then, when the grace period is over, `close_sessions` (every remaining
//! session is closed). `sessions` tracks the session tasks so a drain can wait
//! for them.
//!
//! `CloseSignal` is what closes sessions (here, and per backend): a token
//! plus a flag set before the token is cancelled, so a session can see that
//! it was closed with one atomic load rather than the token's mutex.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tokio_util::task::TaskTracker;

#[derive(Debug, Clone, Default)]
pub struct Lifecycle {
    pub withdraw: CancellationToken,
    pub stop_accepting: CancellationToken,
    pub close_sessions: Arc<CloseSignal>,
    pub sessions: TaskTracker,
}

/// Closes the sessions that watch it, once.
#[derive(Debug, Default)]
pub struct CloseSignal {
    closed: AtomicBool,
    token: CancellationToken,
}

impl CloseSignal {
    /// Closes every session watching this signal, and those that start to.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.token.cancel();
    }

    /// Whether `close` was called; no lock.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Completes once `close` has been called.
    pub fn closed(&self) -> WaitForCancellationFutureOwned {
        self.token.clone().cancelled_owned()
    }
}

impl Lifecycle {
    pub fn new() -> Lifecycle {
        Lifecycle::default()
    }

    /// Whether shutdown has begun (from `withdraw` on).
    pub fn is_draining(&self) -> bool {
        self.withdraw.is_cancelled() || self.stop_accepting.is_cancelled()
    }
}
