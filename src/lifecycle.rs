//! The stages of stopping, shared by every listener and session.
//!
//! First `withdraw` (the process says it is draining — `/ready` and `/healthz`
//! answer 503 so routers withdraw its route — while listeners still accept), then,
//! after `drain_delay`, `stop_accepting` (listeners close, open sessions carry
//! on), then, when the grace period is over, `close_sessions` (every remaining
//! session is closed). `sessions` tracks the session tasks so a drain can wait
//! for them.

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Debug, Clone, Default)]
pub struct Lifecycle {
    pub withdraw: CancellationToken,
    pub stop_accepting: CancellationToken,
    pub close_sessions: CancellationToken,
    pub sessions: TaskTracker,
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
