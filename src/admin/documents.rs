//! Serving `/metrics` and `/status` within the memory budget for rendered
//! bodies (see `budget`).
//!
//! Before rendering, a request takes a share of the budget the size of the
//! document's last rendering. When the budget is taken, the request waits for
//! a bounded time, meanwhile evicting connections whose responses have been
//! stuck longer than the grace period (their clients do not read); then it
//! gets a 503 with `Retry-After`, which costs nothing to hold. After rendering, the share is fitted to the real size. The share
//! and the connection's in-flight mark ride with the body until it is sent.
//! Does not render the documents (the [`AdminState`] does).

use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::StatusCode;

use super::AdminState;
use super::body::Hold;
use super::budget::{BodyBudget, BudgetShare, Document};
use super::response::{self, AdminResponse, JSON, PROMETHEUS_TEXT};
use super::slots::{ConnectionSlots, ResponseTracker};

/// How often a request waiting for budget looks for stalled connections to evict.
const STALL_CHECK: Duration = Duration::from_millis(250);

/// What serving a document needs, shared by every connection.
#[derive(Debug)]
pub(crate) struct Documents {
    pub(crate) budget: BodyBudget,
    pub(crate) slots: Arc<ConnectionSlots>,
    /// How long a request waits for a share of the budget.
    pub(crate) wait: Duration,
}

impl Documents {
    /// Renders and answers `document` for the connection `tracker` marks.
    pub(crate) async fn serve(
        &self,
        document: Document,
        state: &dyn AdminState,
        tracker: &ResponseTracker,
    ) -> AdminResponse {
        let Some(share) = self.share_for(self.budget.estimate(document)).await else {
            tracing::debug!(?document, "admin document refused: memory budget taken");
            return response::budget_exhausted();
        };
        let body = match document {
            Document::Metrics => state.metrics_text(),
            Document::Status => state.status_json(),
        };
        self.budget.record(document, body.len());
        let Some(share) = self.budget.resize(share, body.len()) else {
            return response::budget_exhausted();
        };
        let hold = Hold::new(Some(share), Some(tracker.begin(Instant::now())));
        let content_type = match document {
            Document::Metrics => PROMETHEUS_TEXT,
            Document::Status => JSON,
        };
        response::with_held_body(StatusCode::OK, content_type, body, hold)
    }

    /// A share for `len` bytes: at once, or within `wait` while stalled
    /// connections are evicted as they reach the grace period.
    async fn share_for(&self, len: usize) -> Option<BudgetShare> {
        if let Some(share) = self.budget.try_take(len) {
            return Some(share);
        }
        let deadline = Instant::now() + self.wait;
        loop {
            let now = Instant::now();
            let evicted = self.slots.evict_stalled(now);
            if evicted > 0 {
                tracing::debug!(
                    evicted,
                    "admin connections evicted: responses unread too long"
                );
            }
            let left = deadline.saturating_duration_since(now);
            if let Some(share) = self.budget.take(len, left.min(STALL_CHECK)).await {
                return Some(share);
            }
            if left <= STALL_CHECK {
                return None;
            }
        }
    }
}
