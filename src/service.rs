//! One running service: its backends, its strategies, its limits and its counters.
//!
//! `Service` is what the accept loops share. It answers "which backend next for this
//! client, given the ones already tried": primaries while any is available, backups
//! while no primary is, and — with `on_all_down = "use_all"` — every primary when
//! nothing is available at all. It admits clients under the service and per-source
//! caps and counts rejections by reason. It does no I/O: sockets belong to `proxy`,
//! probes to `health`, wiring to `runtime`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use prometheus::Histogram;

use crate::backend::Backend;
use crate::balancer::{self, PickContext, Strategy};
use crate::config::{BackendConfig, OnAllDown, ServiceConfig};
use crate::limit::{ConnectionLimit, LimitPermit, SourceLimit, SourcePermit};
use crate::metrics::Metrics;
use crate::random;

/// Why a client was turned away (the `reason` label of rejected-connection counts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// No backend could be chosen (none available, or all full).
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

/// Why a UDP datagram was dropped (the `reason` label of dropped-datagram counts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// No backend could be chosen for a new flow.
    NoBackend,
    /// The flow table is full: a new flow was refused.
    MaxFlows,
    /// Sending failed (e.g. ICMP unreachable, or a full socket buffer).
    SendError,
}

impl DropReason {
    pub const ALL: [DropReason; 3] = [
        DropReason::NoBackend,
        DropReason::MaxFlows,
        DropReason::SendError,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::NoBackend => "no_backend",
            DropReason::MaxFlows => "max_flows",
            DropReason::SendError => "send_error",
        }
    }
}

/// Everything a service holds for an admitted client until its session ends.
#[derive(Debug)]
pub struct Admission {
    _service: LimitPermit,
    _source: Option<SourcePermit>,
}

/// Backends of one rank (primaries or backups) and the strategy that picks among them.
#[derive(Debug)]
struct Tier {
    /// Index of each member in the service's backend list.
    members: Vec<usize>,
    backends: Vec<Arc<Backend>>,
    strategy: Box<dyn Strategy>,
}

impl Tier {
    fn new(service: &ServiceConfig, all: &[Arc<Backend>], backup: bool) -> Tier {
        let members: Vec<usize> = (0..all.len())
            .filter(|&i| all[i].is_backup() == backup)
            .collect();
        let backends: Vec<_> = members.iter().map(|&i| Arc::clone(&all[i])).collect();
        let strategy = balancer::build(&service.strategy, &backends);
        Tier {
            members,
            backends,
            strategy,
        }
    }

    fn any_available(&self, now: Instant) -> bool {
        self.backends.iter().any(|b| b.is_available(now))
    }

    /// A member for `ctx` among those `usable` says yes to, skipping `tried`
    /// (service indices); when that leaves none, any but the last one tried.
    fn pick(
        &self,
        ctx: &PickContext,
        usable: &dyn Fn(&Backend) -> bool,
        tried: &[usize],
    ) -> Option<usize> {
        let fresh = |i: usize| usable(&self.backends[i]) && !tried.contains(&self.members[i]);
        let local = self
            .strategy
            .pick(&self.backends, ctx, &fresh)
            .or_else(|| {
                let last = *tried.last()?;
                let not_last = |i: usize| usable(&self.backends[i]) && self.members[i] != last;
                self.strategy.pick(&self.backends, ctx, &not_last)
            })?;
        Some(self.members[local])
    }
}

/// The live state of one `[[service]]`.
#[derive(Debug)]
pub struct Service {
    config: ServiceConfig,
    backends: Vec<Arc<Backend>>,
    primaries: Tier,
    backups: Tier,
    connections: Arc<ConnectionLimit>,
    per_source: Option<Arc<SourceLimit>>,
    rejected: [AtomicU64; RejectReason::ALL.len()],
    accept_errors: AtomicU64,
    session_histogram: Histogram,
    /// udp: live flows, capped at `max_flows`.
    flows: Arc<ConnectionLimit>,
    dropped: [AtomicU64; DropReason::ALL.len()],
}

impl Service {
    /// Builds the service's backends and strategies from its checked configuration,
    /// with their histograms in `metrics`.
    pub fn new(config: ServiceConfig, metrics: &Metrics) -> Service {
        let backends: Vec<Arc<Backend>> = config
            .backends
            .iter()
            .map(|b| {
                let histogram = metrics.connect_histogram(&config.name, &b.address);
                Arc::new(build_backend(&config, b).with_connect_histogram(histogram))
            })
            .collect();
        let per_source = (config.max_connections_per_source > 0)
            .then(|| Arc::new(SourceLimit::new(config.max_connections_per_source)));
        Service {
            primaries: Tier::new(&config, &backends, false),
            backups: Tier::new(&config, &backends, true),
            connections: Arc::new(ConnectionLimit::new(config.max_connections)),
            flows: Arc::new(ConnectionLimit::new(config.max_flows)),
            per_source,
            session_histogram: metrics.session_histogram(&config.name),
            backends,
            config,
            rejected: Default::default(),
            accept_errors: AtomicU64::new(0),
            dropped: Default::default(),
        }
    }

    /// udp: takes a slot in the flow table bound, or `None` when it is full.
    pub fn admit_flow(&self) -> Option<LimitPermit> {
        self.flows.try_acquire()
    }

    /// udp: live flows.
    pub fn udp_flows(&self) -> usize {
        self.flows.active()
    }

    /// udp: counts one dropped datagram.
    pub fn count_drop(&self, reason: DropReason) {
        self.dropped[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// udp: datagrams dropped so far for `reason`.
    pub fn drops(&self, reason: DropReason) -> u64 {
        self.dropped[reason as usize].load(Ordering::Relaxed)
    }

    /// Records the duration of one finished session.
    pub fn record_session(&self, duration: Duration) {
        self.session_histogram.observe(duration.as_secs_f64());
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    pub fn config(&self) -> &ServiceConfig {
        &self.config
    }

    /// Every backend, in configuration order (the indices `choose_backend` returns).
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

    /// The next backend to try for `client` (an index into `backends()`), or `None`
    /// when none is left. Backends in `tried` are skipped; when that leaves nothing,
    /// any but the last one tried may be offered again, so one client never hits
    /// the same backend twice in a row. Full backends are never offered.
    pub fn choose_backend(&self, client: SocketAddr, tried: &[usize]) -> Option<usize> {
        let now = Instant::now();
        let ctx = PickContext {
            client,
            random: random::next_u64(),
        };
        for tier in [&self.primaries, &self.backups] {
            if tier.any_available(now) {
                return pick_in_rotation(tier, &ctx, now, tried);
            }
        }
        match self.config.on_all_down {
            OnAllDown::Reject => None,
            OnAllDown::UseAll => {
                let tier = if self.primaries.members.is_empty() {
                    &self.backups
                } else {
                    &self.primaries
                };
                tier.pick(&ctx, &|b: &Backend| b.has_capacity(), tried)
            }
        }
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

/// Picks among `tier`'s available backends, letting slow-starting ones take only
/// their current share; when that leaves none (say, the only one is ramping), the
/// ramp is ignored rather than turning the client away.
fn pick_in_rotation(
    tier: &Tier,
    ctx: &PickContext,
    now: Instant,
    tried: &[usize],
) -> Option<usize> {
    let admission = random::next_u64();
    let ready = |b: &Backend| b.has_capacity() && b.is_available(now);
    let admitted = |b: &Backend| ready(b) && b.admits(now, admission);
    tier.pick(ctx, &admitted, tried)
        .or_else(|| tier.pick(ctx, &ready, tried))
}

fn build_backend(service: &ServiceConfig, config: &BackendConfig) -> Backend {
    let mut backend = Backend::new(config.address.clone(), config.resolved, config.weight)
        .with_max_connections(config.max_connections)
        .with_backup(config.backup)
        .with_slow_start(config.slow_start);
    if let Some(outlier) = &service.outlier {
        backend =
            backend.with_outlier_detection(outlier.consecutive_failures, outlier.ejection_time);
    }
    backend
}
