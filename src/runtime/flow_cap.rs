//! Applying the process-wide bound on UDP flows (see `fd_budget::process_flow_cap`)
//! at start and on each reload, with a warning when the services' `max_flows`
//! add up to more than the open-file limit lets the process hold.

use tracing::warn;

use crate::proxy::udp::flow_budget::FlowCap;

use super::{Server, fd_budget, listeners};

impl Server {
    /// Sets the flows' budget; must follow `apply_process_cap` (a shared budget
    /// is the process connection cap).
    pub(super) fn apply_flow_cap(&self) {
        let sockets = listeners::wanted(&self.config).len() * self.ctx.workers.len();
        let open_files = fd_budget::open_file_limit();
        let cap = fd_budget::process_flow_cap(&self.config, sockets, open_files);
        self.ctx.flow_budget.set(cap);
        let wanted = fd_budget::configured_flows(&self.config);
        let Some(allowed) = self.ctx.flow_budget.max().filter(|&max| wanted > max) else {
            return;
        };
        let shared = cap == FlowCap::SharedWithConnections;
        warn!(
            max_flows = wanted,
            allowed_flows = allowed,
            shared_with_tcp = shared,
            open_file_limit = open_files,
            "udp max_flows add up to more flows than the open-file limit allows; \
             datagrams that would open more are dropped (max_flows); raise LimitNOFILE"
        );
    }
}
