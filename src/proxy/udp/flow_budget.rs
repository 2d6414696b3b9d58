//! The process-wide bound on UDP flows, so that flows can never take the
//! descriptors the rest of the process needs.
//!
//! Each flow holds one descriptor (its socket connected to the backend). With the
//! process connection cap derived from the open-file limit, TCP sessions and UDP
//! flows share that one cap: a flow takes a slot as a session does, so whatever
//! the mix, the process stays within its limit. With a configured
//! `[global] max_connections` (TCP's alone), flows get a cap of their own: the
//! descriptors that cap leaves. `runtime::fd_budget` decides which; this file
//! only hands out the permits.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::limit::{ConnectionLimit, LimitPermit};

/// How UDP flows are bounded process-wide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowCap {
    /// Each flow takes one slot of the process connection cap.
    SharedWithConnections,
    /// At most this many flows (0: unlimited), apart from TCP sessions.
    Own(usize),
}

/// Hands out one permit per UDP flow under the current `FlowCap`.
#[derive(Debug)]
pub struct FlowBudget {
    connections: Arc<ConnectionLimit>,
    own: Arc<ConnectionLimit>,
    shared: AtomicBool,
}

impl FlowBudget {
    /// A budget sharing `connections` (the process connection cap) until `set`.
    pub fn new(connections: Arc<ConnectionLimit>) -> FlowBudget {
        FlowBudget {
            connections,
            own: Arc::new(ConnectionLimit::new(0)),
            shared: AtomicBool::new(true),
        }
    }

    /// Applies a new cap (start, reload). Flows already open keep their permit,
    /// which goes back to the limit it came from.
    pub fn set(&self, cap: FlowCap) {
        match cap {
            FlowCap::SharedWithConnections => self.shared.store(true, Ordering::Relaxed),
            FlowCap::Own(max) => {
                self.own.set_max(max);
                self.shared.store(false, Ordering::Relaxed);
            }
        }
    }

    /// The most flows the budget allows now, if bounded (with a shared cap, TCP
    /// sessions take from the same figure).
    pub fn max(&self) -> Option<usize> {
        let limit = if self.shared.load(Ordering::Relaxed) {
            &self.connections
        } else {
            &self.own
        };
        Some(limit.max()).filter(|&max| max > 0)
    }

    /// A permit for one more flow, or `None` when the budget is spent.
    pub fn try_acquire(&self) -> Option<LimitPermit> {
        if self.shared.load(Ordering::Relaxed) {
            self.connections.try_acquire()
        } else {
            self.own.try_acquire()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shared_budget_counts_flows_and_sessions_together() {
        let connections = Arc::new(ConnectionLimit::new(3));
        let budget = FlowBudget::new(Arc::clone(&connections));
        let session = connections.try_acquire();
        let flows: Vec<_> = (0..5).filter_map(|_| budget.try_acquire()).collect();
        assert!(session.is_some());
        assert_eq!(flows.len(), 2, "one slot went to the session");
        assert!(
            connections.try_acquire().is_none(),
            "flows fill the cap for sessions too"
        );
        drop(flows);
        assert_eq!(connections.active(), 1);
        assert_eq!(budget.max(), Some(3));
    }

    #[test]
    fn an_own_cap_leaves_the_connection_cap_alone() {
        let connections = Arc::new(ConnectionLimit::new(1));
        let budget = FlowBudget::new(Arc::clone(&connections));
        budget.set(FlowCap::Own(2));
        let flows: Vec<_> = (0..5).filter_map(|_| budget.try_acquire()).collect();
        assert_eq!(flows.len(), 2);
        assert!(connections.try_acquire().is_some());
        assert_eq!(budget.max(), Some(2));
        budget.set(FlowCap::Own(0));
        assert_eq!(budget.max(), None, "0 is unlimited");
    }

    #[test]
    fn a_flow_gives_its_permit_back_where_it_came_from_after_a_change() {
        let connections = Arc::new(ConnectionLimit::new(10));
        let budget = FlowBudget::new(Arc::clone(&connections));
        let shared_flow = budget.try_acquire();
        budget.set(FlowCap::Own(5));
        let own_flow = budget.try_acquire();
        assert!(shared_flow.is_some() && own_flow.is_some());
        assert_eq!(connections.active(), 1);
        drop(shared_flow);
        assert_eq!(connections.active(), 0);
    }
}
