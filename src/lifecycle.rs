//! The two stages of stopping, shared by every listener and session.
//!
//! First `stop_accepting` (listeners close, open sessions carry on), then, when the
//! grace period is over, `close_sessions` (every remaining session is closed).
//! `sessions` tracks the session tasks so a drain can wait for them.

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Debug, Clone, Default)]
pub struct Lifecycle {
    pub stop_accepting: CancellationToken,
    pub close_sessions: CancellationToken,
    pub sessions: TaskTracker,
}

impl Lifecycle {
    pub fn new() -> Lifecycle {
        Lifecycle::default()
    }
}
