//! How the flow core sees a running service: its ACL, settings and backends,
//! the process's own listen addresses and the flow bounds, at one instant.
//!
//! Built once per batch of datagrams from the service's current generation, so a
//! reload reaches the very next new flow. Taking a flow slot (`admit`) and a
//! backend slot (`choose`) are the only effects, each an atomic counter.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use crate::backend::{Backend, ConnectionGuard};
use crate::limit::LimitPermit;
use crate::proxy::udp::flow_budget::FlowBudget;
use crate::proxy::udp::flows::{FlowSettings, ServiceView};
use crate::proxy::udp::own_addresses::OwnAddresses;
use crate::service::Service;

/// A flow's backend and its place among the backend's active flows.
#[derive(Debug)]
pub struct FlowBackend {
    pub backend: Arc<Backend>,
    _active: ConnectionGuard,
}

/// The places a flow holds: one under its service's `max_flows` and one in
/// the process's descriptor budget.
#[derive(Debug)]
pub struct FlowSlots {
    _service: LimitPermit,
    _process: LimitPermit,
}

/// One service generation, seen at `now`.
#[derive(Debug)]
pub struct LiveView<'a> {
    pub service: &'a Arc<Service>,
    pub own_addresses: &'a OwnAddresses,
    pub flow_budget: &'a FlowBudget,
    pub now: Instant,
}

impl LiveView<'_> {
    /// The backend a handed-over flow continues on, and its places under the
    /// bounds: the service's backend of that configured `address`, when it still
    /// resolves to `connected` (where the flow's socket is connected), is
    /// available and has room.
    pub fn adoptable(
        &self,
        address: &str,
        connected: SocketAddr,
    ) -> Option<(FlowBackend, FlowSlots)> {
        let backends = self.service.backends();
        let backend = backends
            .iter()
            .find(|b| b.address() == address && b.addr() == connected)?;
        if !backend.is_available(self.now) {
            return None;
        }
        let slots = self.admit()?;
        let active = backend.try_acquire()?;
        let backend = FlowBackend {
            backend: Arc::clone(backend),
            _active: active,
        };
        Some((backend, slots))
    }
}

impl ServiceView for LiveView<'_> {
    type Backend = FlowBackend;
    type Slot = FlowSlots;

    fn generation(&self) -> u64 {
        Arc::as_ptr(self.service) as usize as u64
    }

    fn settings(&self) -> FlowSettings {
        let config = self.service.config();
        FlowSettings {
            idle_ms: config
                .idle_timeout
                .as_millis()
                .try_into()
                .unwrap_or(u64::MAX),
            requests: config.udp_requests,
            responses: config.udp_responses,
            proxy_protocol: config.proxy_protocol,
            access_log: config.access_log,
        }
    }

    fn permits(&self, client: SocketAddr) -> bool {
        self.service.permits(client)
    }

    fn is_own_address(&self, client: SocketAddr) -> bool {
        self.own_addresses.contains(client)
    }

    fn admit(&self) -> Option<FlowSlots> {
        let service = self.service.admit_flow()?;
        let process = self.flow_budget.try_acquire()?;
        Some(FlowSlots {
            _service: service,
            _process: process,
        })
    }

    fn choose(&self, client: SocketAddr) -> Option<FlowBackend> {
        let index = self.service.choose_backend(client, &[])?;
        let backend = Arc::clone(self.service.backends().get(index)?);
        let active = backend.try_acquire()?;
        Some(FlowBackend {
            backend,
            _active: active,
        })
    }

    fn is_available(&self, backend: &FlowBackend) -> bool {
        backend.backend.is_available(self.now)
    }

    fn keeps(&self, backend: &FlowBackend) -> bool {
        let backends = self.service.backends();
        backends.iter().any(|b| Arc::ptr_eq(b, &backend.backend))
    }
}
