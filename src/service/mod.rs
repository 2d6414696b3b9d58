//! One running service: its backends, its strategies, its limits and its counters.
//!
//! `Service` is what the accept loops share. It answers "which backend next for this
//! client, given the ones already tried": primaries while any is available, backups
//! while no primary is, and — with `on_all_down = "use_all"` — every primary when
//! nothing is available at all. It admits clients under the service and per-source
//! caps and counts rejections by reason. It does no I/O: sockets belong to `proxy`,
//! probes to `health`, wiring to `runtime`.

mod counters;
mod key_index;
mod pool;
mod router;
mod tier;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use prometheus::Histogram;

use crate::acl::Acl;
use crate::backend::Backend;
use crate::backend::admin_state::AdminState;
use crate::backend::identity::Identity;
use crate::balancer::PickContext;
use crate::config::{BackendConfig, ServiceConfig};
use crate::limit::{ConnectionLimit, LimitPermit, SourceLimit, SourcePermit};
use crate::metrics::Metrics;
use crate::random;

pub use counters::{DropReason, RejectReason, ServiceCounters};
pub use key_index::{KeyIndex, KeyMatch};
pub use pool::Pool;
use router::Router;

/// Everything a service holds for an admitted client until its session ends.
#[derive(Debug)]
pub struct Admission {
    _service: LimitPermit,
    _source: Option<SourcePermit>,
}

/// The current configuration of the service one listen address serves, swapped
/// whole by a reload (or pointed at another service when the address moves).
/// A client reads it again each time it chooses a backend; once connected, its
/// session keeps the generation it connected with.
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
    /// Where each backend is in `backends`, by address.
    positions: KeyIndex<String>,
    /// One per route: the default route (0) first, then `config.routes` in order.
    pools: Vec<Pool>,
    router: Router,
    /// Whether clients' ClientHellos are read ahead (routes, or hashing by SNI).
    prereads_tls: bool,
    connections: Arc<ConnectionLimit>,
    per_source: Option<Arc<SourceLimit>>,
    counters: Arc<ServiceCounters>,
    acl: Acl,
    session_histogram: Histogram,
    /// udp: live flows, capped at `max_flows`.
    flows: Arc<ConnectionLimit>,
}

/// How a reload changed a service's backends (by identity: service + address).
#[derive(Debug, Default)]
pub struct BackendChanges {
    /// Addresses new to the service.
    pub added: usize,
    /// Addresses kept with other settings: a new configuration of the same identity.
    pub changed: usize,
    /// The previous generation's backends whose address is gone (they drain).
    pub removed: Vec<Arc<Backend>>,
}

impl Service {
    /// Builds the service's backends and strategies from its checked configuration,
    /// with their histograms in `metrics`.
    pub fn new(config: ServiceConfig, metrics: &Metrics) -> Service {
        Service::build(config, metrics, None, &mut |_| None).0
    }

    /// The next generation of `previous` (if the service existed) after a
    /// reload, matched by address in linear time. A backend whose settings did not change is kept as it is (with
    /// its sessions, back in rotation); one whose settings changed becomes a new
    /// configuration of the same identity (counters, health history and open
    /// sessions carry on); a new address gets a fresh identity, unless `draining`
    /// hands back the one of a backend removed earlier that still drains. Limits
    /// keep counting the clients already admitted; counters carry on.
    pub fn reloaded(
        config: ServiceConfig,
        metrics: &Metrics,
        previous: Option<&Service>,
        draining: &mut dyn FnMut(&str) -> Option<Arc<Identity>>,
    ) -> (Service, BackendChanges) {
        Service::build(config, metrics, previous, draining)
    }

    fn build(
        config: ServiceConfig,
        metrics: &Metrics,
        previous: Option<&Service>,
        draining: &mut dyn FnMut(&str) -> Option<Arc<Identity>>,
    ) -> (Service, BackendChanges) {
        let addresses = || config.backends.iter().map(|b| b.address.as_str());
        let matched = previous.map(|p| p.positions.match_next(addresses()));
        let mut lineage = Lineage {
            metrics,
            draining,
            changes: BackendChanges::default(),
        };
        let backends: Vec<Arc<Backend>> = (0..config.backends.len())
            .map(|i| {
                let prior = previous
                    .zip(matched.as_ref())
                    .and_then(|(p, m)| m.previous_position[i].map(|j| (p, j)));
                lineage.backend(&config, i, prior)
            })
            .collect();
        let mut changes = lineage.changes;
        if let (Some(p), Some(m)) = (previous, matched) {
            changes.removed = m
                .missing
                .iter()
                .map(|&j| Arc::clone(&p.backends[j]))
                .collect();
        }
        forget_switched_off_checks(&config, &backends);
        let service = Service::assemble(config, metrics, previous, backends);
        (service, changes)
    }

    fn assemble(
        config: ServiceConfig,
        metrics: &Metrics,
        previous: Option<&Service>,
        backends: Vec<Arc<Backend>>,
    ) -> Service {
        let connections = carry_limit(previous.map(|p| &p.connections), config.max_connections);
        let flows = carry_limit(previous.map(|p| &p.flows), config.max_flows);
        let per_source = carry_source_limit(
            previous.and_then(|p| p.per_source.as_ref()),
            config.max_connections_per_source,
        );
        let pools = (0..=config.routes.len())
            .map(|route| {
                let name = config.route_name(route);
                let prior = previous.and_then(|p| p.pools.iter().find(|q| q.name() == name));
                Pool::new(&config, route, &backends, prior)
            })
            .collect();
        Service {
            pools,
            router: Router::new(&config.routes),
            prereads_tls: config.prereads_tls(),
            positions: KeyIndex::new(config.backends.iter().map(|b| b.address.clone())),
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

    /// Whether this generation's backend at `index` can serve as `wanted` in
    /// `next` as it is: the same settings, under the same passive-check settings.
    fn keeps_unchanged(&self, next: &ServiceConfig, index: usize, wanted: &BackendConfig) -> bool {
        self.config.outlier == next.outlier
            && self
                .config
                .backends
                .get(index)
                .is_some_and(|b| same_backend(b, wanted))
    }

    /// Where the backend named `address` is in `backends()`, if it is there.
    pub fn position(&self, address: &str) -> Option<usize> {
        self.positions.position(address)
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
    /// when none is left, from the default route. Backends in `tried` are
    /// skipped; when that leaves nothing, any but the last one tried may be
    /// offered again, so one client never hits the same backend twice in a row.
    /// Full backends are never offered.
    pub fn choose_backend(&self, client: SocketAddr, tried: &[usize]) -> Option<usize> {
        self.choose_backend_in(0, client, None, tried)
    }

    /// `choose_backend` from route `route` (0 = default), for a client that
    /// asked for the server name whose `balancer::sni_hash` is `server_name`.
    pub fn choose_backend_in(
        &self,
        route: usize,
        client: SocketAddr,
        server_name: Option<u64>,
        tried: &[usize],
    ) -> Option<usize> {
        let ctx = PickContext {
            client,
            random: random::next_u64(),
            server_name,
        };
        let pool = self.pools.get(route).unwrap_or(&self.pools[0]);
        pool.choose(&ctx, self.config.on_all_down, tried)
    }

    /// Whether each client's ClientHello is read before a backend is chosen.
    pub fn prereads_tls(&self) -> bool {
        self.prereads_tls
    }

    /// The route for a client that asked for `server_name` and offered `alpn`
    /// (0, the default route, without a name or a matching route).
    pub fn route_for(&self, server_name: Option<&str>, alpn: &[String]) -> usize {
        server_name.map_or(0, |name| self.router.route_for(name, alpn))
    }

    /// Every route's pool, the default route first.
    pub fn pools(&self) -> &[Pool] {
        &self.pools
    }

    /// The pool of route `route` (the default route's if there is no such route).
    pub fn pool(&self, route: usize) -> &Pool {
        self.pools.get(route).unwrap_or(&self.pools[0])
    }

    /// Whether any backend (a primary, or else a backup) of any route can take
    /// a new client now: what `/ready` asks of every service.
    pub fn has_available_backend(&self) -> bool {
        let now = std::time::Instant::now();
        self.pools.iter().any(|pool| pool.any_available(now))
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

/// Where the backends of a next generation come from, and the tally of changes.
struct Lineage<'a> {
    metrics: &'a Metrics,
    draining: &'a mut dyn FnMut(&str) -> Option<Arc<Identity>>,
    changes: BackendChanges,
}

impl Lineage<'_> {
    /// The backend for `config.backends[i]`, given the previous generation's one
    /// at the same address (`prior`: its service and position), if any.
    fn backend(
        &mut self,
        config: &ServiceConfig,
        i: usize,
        prior: Option<(&Service, usize)>,
    ) -> Arc<Backend> {
        let wanted = &config.backends[i];
        let identity = match prior {
            Some((p, j)) if p.keeps_unchanged(config, j, wanted) => {
                let kept = Arc::clone(&p.backends[j]);
                kept.set_admin_state(AdminState::Ready);
                return kept;
            }
            Some((p, j)) => {
                self.changes.changed += 1;
                Arc::clone(p.backends[j].identity())
            }
            None => {
                self.changes.added += 1;
                (self.draining)(&wanted.address).unwrap_or_else(|| {
                    let histogram = self
                        .metrics
                        .connect_histogram(&config.name, &wanted.address);
                    Identity::new(wanted.address.clone(), Some(histogram))
                })
            }
        };
        Arc::new(build_backend(config, wanted, identity))
    }
}

/// A configuration of `identity` with `config`'s settings.
fn build_backend(
    service: &ServiceConfig,
    config: &BackendConfig,
    identity: Arc<Identity>,
) -> Backend {
    let mut backend = Backend::with_identity(identity, config.resolved, config.weight)
        .with_max_connections(config.max_connections)
        .with_backup(config.backup)
        .with_slow_start(config.slow_start);
    if let Some(outlier) = &service.outlier {
        backend =
            backend.with_outlier_detection(outlier.consecutive_failures, outlier.ejection_time);
    }
    backend
}

/// Whether two configurations of one address ask for the same backend (the
/// route it belongs to is the pools' business, not the backend's).
fn same_backend(a: &BackendConfig, b: &BackendConfig) -> bool {
    let mut a = a.clone();
    a.route = b.route;
    &a == b
}

/// Identities keep their health and passive-check state across reloads; when a
/// service no longer has active checks (or passive ones), nothing would ever
/// update that state again, so it is forgotten: such backends are up and not
/// ejected.
fn forget_switched_off_checks(config: &ServiceConfig, backends: &[Arc<Backend>]) {
    for (backend, settings) in backends.iter().zip(&config.backends) {
        if config.health_of(settings).is_none() && !backend.is_healthy() {
            backend.identity().reset_health();
        }
        if config.outlier.is_none() {
            backend.identity().outlier.reset();
        }
    }
}
