//! One running service: its backends, its strategies, its limits and its counters.
//!
//! `Service` is what the accept loops share. It answers "which backend next for this
//! client, given the ones already tried": primaries while any is available, backups
//! while no primary is, and — with `on_all_down = "use_all"` — every primary when
//! nothing is available at all. It admits clients under the service and per-source
//! caps and counts rejections by reason. It does no I/O: sockets belong to `proxy`,
//! probes to `health`, wiring to `runtime`.

mod counters;
mod tier;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use prometheus::Histogram;

use crate::acl::Acl;
use crate::backend::Backend;
use crate::backend::admin_state::AdminState;
use crate::balancer::PickContext;
use crate::config::{BackendConfig, OnAllDown, ServiceConfig};
use crate::limit::{ConnectionLimit, LimitPermit, SourceLimit, SourcePermit};
use crate::metrics::Metrics;
use crate::random;

pub use counters::{DropReason, RejectReason, ServiceCounters};
use tier::Tier;

/// Everything a service holds for an admitted client until its session ends.
#[derive(Debug)]
pub struct Admission {
    _service: LimitPermit,
    _source: Option<SourcePermit>,
}

/// The current configuration of one service, swapped whole by a reload; each
/// accepted client keeps the one it started with.
#[derive(Debug)]
pub struct ServiceSlot(ArcSwap<Service>);

impl ServiceSlot {
    pub fn new(service: Arc<Service>) -> ServiceSlot {
        ServiceSlot(ArcSwap::new(service))
    }

    pub fn current(&self) -> Arc<Service> {
        self.0.load_full()
    }

    pub fn replace(&self, service: Arc<Service>) {
        self.0.store(service);
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
    counters: Arc<ServiceCounters>,
    acl: Acl,
    session_histogram: Histogram,
    /// udp: live flows, capped at `max_flows`.
    flows: Arc<ConnectionLimit>,
}

impl Service {
    /// Builds the service's backends and strategies from its checked configuration,
    /// with their histograms in `metrics`.
    pub fn new(config: ServiceConfig, metrics: &Metrics) -> Service {
        Service::build(config, metrics, None)
    }

    /// The next generation of `previous` after a reload: backends whose settings
    /// did not change are kept (with their counters, health and open sessions, and
    /// back in rotation); limits keep counting the clients already admitted;
    /// counters carry on.
    pub fn reloaded(config: ServiceConfig, metrics: &Metrics, previous: &Service) -> Service {
        Service::build(config, metrics, Some(previous))
    }

    fn build(config: ServiceConfig, metrics: &Metrics, previous: Option<&Service>) -> Service {
        let backends: Vec<Arc<Backend>> = config
            .backends
            .iter()
            .map(|b| {
                let kept = previous.and_then(|p| p.reusable_backend(&config, b));
                kept.unwrap_or_else(|| {
                    let histogram = metrics.connect_histogram(&config.name, &b.address);
                    Arc::new(build_backend(&config, b).with_connect_histogram(histogram))
                })
            })
            .collect();
        let connections = carry_limit(previous.map(|p| &p.connections), config.max_connections);
        let flows = carry_limit(previous.map(|p| &p.flows), config.max_flows);
        let per_source = carry_source_limit(
            previous.and_then(|p| p.per_source.as_ref()),
            config.max_connections_per_source,
        );
        Service {
            primaries: Tier::new(&config, &backends, false),
            backups: Tier::new(&config, &backends, true),
            connections,
            flows,
            per_source,
            counters: previous.map_or_else(Default::default, |p| Arc::clone(&p.counters)),
            acl: Acl::new(config.allow.clone(), config.deny.clone()),
            session_histogram: metrics.session_histogram(&config.name),
            backends,
            config,
        }
    }

    /// `previous`'s backend for `wanted`, if it exists with exactly these settings
    /// (and the same passive-check settings); it goes back into rotation.
    fn reusable_backend(
        &self,
        config: &ServiceConfig,
        wanted: &BackendConfig,
    ) -> Option<Arc<Backend>> {
        if self.config.outlier != config.outlier {
            return None;
        }
        let index = self.config.backends.iter().position(|b| b == wanted)?;
        let backend = Arc::clone(&self.backends[index]);
        backend.set_admin_state(AdminState::Ready);
        Some(backend)
    }

    /// Backends of this generation that `next` does not keep.
    pub fn backends_dropped_by(&self, next: &Service) -> Vec<Arc<Backend>> {
        self.backends
            .iter()
            .filter(|b| !next.backends.iter().any(|n| Arc::ptr_eq(b, n)))
            .cloned()
            .collect()
    }

    /// Whether a client from `client` may use this service (`allow` / `deny`).
    pub fn permits(&self, client: SocketAddr) -> bool {
        self.acl.is_open() || self.acl.permits(client.ip())
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
        self.counters.count_drop(reason);
    }

    /// udp: datagrams dropped so far for `reason`.
    pub fn drops(&self, reason: DropReason) -> u64 {
        self.counters.drops(reason)
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
        self.counters.count_rejection(reason);
    }

    /// Clients rejected so far for `reason`.
    pub fn rejections(&self, reason: RejectReason) -> u64 {
        self.counters.rejections(reason)
    }

    /// Counts one failed `accept()` (e.g. out of file descriptors).
    pub fn count_accept_error(&self) {
        self.counters.count_accept_error();
    }

    pub fn accept_errors(&self) -> u64 {
        self.counters.accept_errors()
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

/// The previous generation's limit with the new cap, or a new one.
fn carry_limit(previous: Option<&Arc<ConnectionLimit>>, max: usize) -> Arc<ConnectionLimit> {
    match previous {
        Some(limit) => {
            limit.set_max(max);
            Arc::clone(limit)
        }
        None => Arc::new(ConnectionLimit::new(max)),
    }
}

fn carry_source_limit(previous: Option<&Arc<SourceLimit>>, max: usize) -> Option<Arc<SourceLimit>> {
    if max == 0 {
        return None;
    }
    Some(match previous {
        Some(limit) => {
            limit.set_max(max);
            Arc::clone(limit)
        }
        None => Arc::new(SourceLimit::new(max)),
    })
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
