//! One running service: its backends, its strategy, its limits and its counters.
//!
//! `Service` is what the accept loops share. It answers "which backend next for this
//! client, given the ones already tried", admits clients under the service and
//! per-source caps, and counts rejections by reason. It does no I/O: sockets belong
//! to `proxy`, wiring to `runtime`.

use std::cell::Cell;
use std::hash::{BuildHasher, RandomState};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::backend::Backend;
use crate::balancer::{self, PickContext, Strategy};
use crate::config::ServiceConfig;
use crate::limit::{ConnectionLimit, LimitPermit, SourceLimit, SourcePermit};

/// Why a client was turned away (the `reason` label of rejected-connection counts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// No backend could be chosen (all full, or none available).
    NoBackend,
    /// A process, service or per-source connection cap was reached.
    MaxConnections,
    /// Every connect attempt failed.
    BackendConnect,
}

impl RejectReason {
    pub const ALL: [RejectReason; 3] = [
        RejectReason::NoBackend,
        RejectReason::MaxConnections,
        RejectReason::BackendConnect,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::NoBackend => "no_backend",
            RejectReason::MaxConnections => "max_connections",
            RejectReason::BackendConnect => "backend_connect",
        }
    }
}

/// Everything a service holds for an admitted client until its session ends.
#[derive(Debug)]
pub struct Admission {
    _service: LimitPermit,
    _source: Option<SourcePermit>,
}

/// The live state of one `[[service]]`.
#[derive(Debug)]
pub struct Service {
    config: ServiceConfig,
    backends: Vec<Arc<Backend>>,
    strategy: Box<dyn Strategy>,
    connections: Arc<ConnectionLimit>,
    per_source: Option<Arc<SourceLimit>>,
    rejected: [AtomicU64; RejectReason::ALL.len()],
    accept_errors: AtomicU64,
}

impl Service {
    /// Builds the service's backends and strategy from its checked configuration.
    pub fn new(config: ServiceConfig) -> Service {
        let backends: Vec<Arc<Backend>> = config
            .backends
            .iter()
            .map(|b| {
                let backend = Backend::new(b.address.clone(), b.resolved, b.weight);
                Arc::new(backend.with_max_connections(b.max_connections))
            })
            .collect();
        let strategy = balancer::build(&config.strategy, &backends);
        let per_source = (config.max_connections_per_source > 0)
            .then(|| Arc::new(SourceLimit::new(config.max_connections_per_source)));
        Service {
            connections: Arc::new(ConnectionLimit::new(config.max_connections)),
            per_source,
            backends,
            strategy,
            config,
            rejected: Default::default(),
            accept_errors: AtomicU64::new(0),
        }
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    pub fn config(&self) -> &ServiceConfig {
        &self.config
    }

    pub fn backends(&self) -> &[Arc<Backend>] {
        &self.backends
    }

    /// Clients currently admitted to this service.
    pub fn active_connections(&self) -> usize {
        self.connections.active()
    }

    /// Admits a client under the service and per-source caps.
    pub fn admit(&self, client: SocketAddr) -> Option<Admission> {
        let service = self.connections.try_acquire()?;
        let source = match &self.per_source {
            Some(limit) => Some(limit.try_acquire(client.ip())?),
            None => None,
        };
        Some(Admission {
            _service: service,
            _source: source,
        })
    }

    /// The next backend to try for `client`, or `None` when none is left.
    ///
    /// Backends in `tried` are skipped; when that leaves nothing, any backend but the
    /// last one tried may be offered again, so one client never hits the same backend
    /// twice in a row.
    pub fn choose_backend(&self, client: SocketAddr, tried: &[usize]) -> Option<usize> {
        let ctx = PickContext {
            client,
            random: next_random(),
        };
        let usable = |i: usize| self.backends[i].has_capacity();
        let fresh = |i: usize| usable(i) && !tried.contains(&i);
        if let Some(i) = self.strategy.pick(&self.backends, &ctx, &fresh) {
            return Some(i);
        }
        let last = tried.last().copied()?;
        let not_last = |i: usize| usable(i) && i != last;
        self.strategy.pick(&self.backends, &ctx, &not_last)
    }

    /// Counts one rejected client.
    pub fn count_rejection(&self, reason: RejectReason) {
        self.rejected[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Clients rejected so far for `reason`.
    pub fn rejections(&self, reason: RejectReason) -> u64 {
        self.rejected[reason as usize].load(Ordering::Relaxed)
    }

    /// Counts one failed `accept()` (e.g. out of file descriptors).
    pub fn count_accept_error(&self) {
        self.accept_errors.fetch_add(1, Ordering::Relaxed);
    }

    pub fn accept_errors(&self) -> u64 {
        self.accept_errors.load(Ordering::Relaxed)
    }
}

thread_local! {
    static RANDOM_STATE: Cell<u64> = Cell::new(RandomState::new().hash_one(0u64) | 1);
}

/// A fast per-thread pseudo-random number (splitmix64); not for cryptography.
fn next_random() -> u64 {
    RANDOM_STATE.with(|state| {
        let next = state.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
        state.set(next);
        let mut z = next;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    })
}
