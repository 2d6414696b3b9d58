//! Snapshots of the live state for operators: the `/status` JSON document and the
//! sample the metrics collector turns into Prometheus series.
//!
//! Both are read from the very services and backends the proxy uses (no copy that
//! could drift), at the moment they are asked for. This module only reads.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::backend::Backend;
use crate::config::Protocol;
use crate::discovery::{Group, GroupStatus};
use crate::metrics::{BackendSample, ProxySample, ServiceSample, UdpSample, WorkerSample};
use crate::service::{DropReason, RejectReason, Service};

/// A service and the addresses it is actually bound to.
#[derive(Debug, Clone)]
pub struct ServiceView {
    pub service: Arc<Service>,
    pub listen: Vec<SocketAddr>,
    /// The service's `[[service.discover]]` groups.
    pub discovery: Vec<Arc<Group>>,
}

/// The `/status` document.
#[derive(Debug, Serialize)]
pub struct Status {
    pub version: &'static str,
    pub uptime_seconds: f64,
    pub config_generation: u64,
    pub draining: bool,
    pub services: Vec<ServiceStatus>,
    pub upgrade: UpgradeStatus,
    /// Each worker thread's TCP sessions, busy time and hand-offs.
    pub workers: Vec<WorkerSample>,
}

/// Binary upgrades this process took part in, and where its sockets came from.
#[derive(Debug, Clone, Default, Serialize)]
pub struct UpgradeStatus {
    /// The control socket a successor connects to (`null`: none, another
    /// process holds the path, or it is being handed over).
    pub control_socket: Option<String>,
    /// The process this one upgraded from, and what it handed over.
    pub predecessor: Option<HandoverReport>,
    /// The process this one handed over to (it is draining then).
    pub successor: Option<HandoverReport>,
    /// Upgrade attempts that failed before READY (this process kept serving).
    pub failed_attempts: u64,
    /// Each listen address and where each of its sockets came from.
    pub listeners: Vec<ListenerSockets>,
}

/// One side of a handover.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HandoverReport {
    pub pid: u32,
    pub version: String,
    /// Listening sockets handed over (services' and admin's).
    pub sockets: usize,
    /// UDP flows handed over.
    pub udp_flows: usize,
    /// When (seconds since the Unix epoch).
    pub unix_time: u64,
}

/// Where the sockets of one listen address came from: `bound` (by this
/// process), `predecessor` (handed over), `shared:predecessor` (a duplicate of
/// a handed-over socket serving one more worker).
#[derive(Debug, Clone, Serialize)]
pub struct ListenerSockets {
    pub service: String,
    pub protocol: &'static str,
    pub address: SocketAddr,
    pub sockets: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct ServiceStatus {
    pub name: String,
    pub protocol: &'static str,
    pub listen: Vec<String>,
    pub strategy: &'static str,
    pub active_connections: usize,
    pub udp_flows: usize,
    pub backends: Vec<BackendStatus>,
    /// Each `[[service.discover]]` group's set and history (absent without any).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub discovery: Vec<GroupStatus>,
    /// Services with `[[service.route]]`: every route, `default` first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<RouteStatus>,
}

/// One route of a service routed by TLS server name.
#[derive(Debug, Serialize)]
pub struct RouteStatus {
    pub name: String,
    /// The patterns it matches (empty for `default`).
    pub sni: Vec<String>,
    pub alpn: Vec<String>,
    pub strategy: &'static str,
    /// Clients given to this route so far.
    pub routed_connections: u64,
}

#[derive(Debug, Serialize)]
pub struct BackendStatus {
    pub address: String,
    /// `up`, `down` (failed its active checks, or ejected by passive checks),
    /// `draining` (no new clients; set by the runtime API or a reload removing it)
    /// or `maint` (out, sessions closed; runtime API).
    pub state: &'static str,
    pub weight: u32,
    pub backup: bool,
    /// The route it belongs to (services with `[[service.route]]` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    pub active_connections: usize,
    pub total_connections: u64,
    pub connect_failures: u64,
    /// Payload bytes client→backend and backend→client (tcp and udp), as in
    /// `l4lb_bytes_total`.
    pub bytes_upstream: u64,
    pub bytes_downstream: u64,
    /// Passive ejections so far, as in `l4lb_outlier_ejections_total`.
    pub ejections: u64,
    pub ejected: bool,
    /// Seconds until a passive ejection ends (it may end sooner: a passing
    /// active check ends it); `null` when not ejected.
    pub ejected_until: Option<f64>,
    /// Active-check record; `null` for services without `[service.health]`.
    pub health: Option<HealthStatus>,
}

#[derive(Debug, Serialize)]
pub struct HealthStatus {
    pub consecutive_successes: u32,
    pub consecutive_failures: u32,
    /// `null` before the first probe has finished.
    pub last_check_ms_ago: Option<u64>,
    pub last_result: Option<&'static str>,
    /// Why the last probe failed, e.g. `postgres: 57P03 the database system is
    /// shutting down`; `null` when it passed.
    pub last_error: Option<String>,
    /// Percent of its weight an agent check last asked for (100 without one).
    pub agent_weight: u32,
    pub checks_passed: u64,
    pub checks_failed: u64,
    pub checks_timed_out: u64,
    pub times_marked_up: u64,
    pub times_marked_down: u64,
}

impl Status {
    /// The status of `services` right now.
    pub fn now(
        services: &[ServiceView],
        retired: &[(String, Arc<Backend>)],
        uptime: Duration,
        generation: u64,
        draining: bool,
        upgrade: UpgradeStatus,
    ) -> Status {
        let now = Instant::now();
        let retired = by_service(retired);
        Status {
            version: env!("CARGO_PKG_VERSION"),
            uptime_seconds: uptime.as_secs_f64(),
            config_generation: generation,
            draining,
            services: services
                .iter()
                .map(|v| {
                    let draining = retired.get(v.service.name()).map_or(&[][..], Vec::as_slice);
                    service_status(v, draining, now)
                })
                .collect(),
            upgrade,
            workers: Vec::new(),
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}

/// `retired` backends grouped by service name.
fn by_service(retired: &[(String, Arc<Backend>)]) -> HashMap<&str, Vec<&Backend>> {
    let mut grouped: HashMap<&str, Vec<&Backend>> = HashMap::new();
    for (name, backend) in retired {
        grouped.entry(name.as_str()).or_default().push(backend);
    }
    grouped
}

/// The status of one service: its backends, then those of its `retired` ones
/// still draining.
fn service_status(view: &ServiceView, retired: &[&Backend], now: Instant) -> ServiceStatus {
    let service = &view.service;
    let config = service.config();
    let checked = config.health.is_some();
    let draining = retired
        .iter()
        .map(|b| backend_status(b, checked, None, now));
    let routed = !config.routes.is_empty();
    let own = service
        .backends()
        .iter()
        .zip(&config.backends)
        .map(|(b, c)| {
            let route = routed.then(|| config.route_name(c.route).to_string());
            backend_status(b, config.health_of(c).is_some(), route, now)
        });
    ServiceStatus {
        name: config.name.clone(),
        protocol: config.protocol.as_str(),
        listen: view.listen.iter().map(SocketAddr::to_string).collect(),
        strategy: config.strategy.kind.as_str(),
        active_connections: service.active_connections(),
        udp_flows: service.udp_flows(),
        backends: own.chain(draining).collect(),
        routes: if routed {
            route_statuses(service)
        } else {
            Vec::new()
        },
        discovery: view.discovery.iter().map(|g| g.status(now)).collect(),
    }
}

fn route_statuses(service: &Service) -> Vec<RouteStatus> {
    let config = service.config();
    service
        .pools()
        .iter()
        .enumerate()
        .map(|(i, pool)| {
            let route = i.checked_sub(1).and_then(|i| config.routes.get(i));
            RouteStatus {
                name: pool.name().to_string(),
                sni: route.map_or_else(Vec::new, |r| r.sni.iter().map(|p| p.to_string()).collect()),
                alpn: route.map_or_else(Vec::new, |r| r.alpn.clone()),
                strategy: route
                    .map_or(config.strategy.kind, |r| r.strategy.kind)
                    .as_str(),
                routed_connections: pool.routed(),
            }
        })
        .collect()
}

fn backend_status(
    backend: &Backend,
    checked: bool,
    route: Option<String>,
    now: Instant,
) -> BackendStatus {
    let health = checked.then(|| {
        let h = backend.health_snapshot(now);
        HealthStatus {
            consecutive_successes: h.consecutive_successes,
            consecutive_failures: h.consecutive_failures,
            last_check_ms_ago: h.last_check_ago.map(|d| d.as_millis() as u64),
            last_result: h.last_result.map(|r| r.as_str()),
            last_error: h.last_error,
            agent_weight: backend.agent_weight(),
            checks_passed: h.passed,
            checks_failed: h.failed,
            checks_timed_out: h.timed_out,
            times_marked_up: h.marked_up,
            times_marked_down: h.marked_down,
        }
    });
    let (bytes_upstream, bytes_downstream) = backend.bytes();
    BackendStatus {
        address: backend.address().to_string(),
        state: backend.state_name(now),
        weight: backend.weight(),
        backup: backend.is_backup(),
        route,
        active_connections: backend.active(),
        total_connections: backend.total_connections(),
        connect_failures: backend.connect_failures(),
        bytes_upstream,
        bytes_downstream,
        ejections: backend.ejections(),
        ejected: backend.is_ejected(now),
        ejected_until: backend
            .ejected_for(now)
            .map(|left| (left.as_secs_f64() * 1000.0).round() / 1000.0),
        health,
    }
}

/// What the metrics collector reads at each scrape; `retired` backends are
/// reported under their service until their last session ends.
pub fn metrics_sample(services: &[ServiceView], retired: &[(String, Arc<Backend>)]) -> ProxySample {
    let now = Instant::now();
    let mut sample = ProxySample {
        services: services
            .iter()
            .map(|v| service_sample(&v.service, now))
            .collect(),
        ..ProxySample::default()
    };
    let retired = by_service(retired);
    for service in &mut sample.services {
        let udp = service.udp.is_some();
        for backend in retired.get(service.name.as_str()).into_iter().flatten() {
            service
                .backends
                .push(backend_sample(backend, false, udp, now));
        }
    }
    sample
}

fn service_sample(service: &Service, now: Instant) -> ServiceSample {
    let config = service.config();
    let udp = service.config().protocol == Protocol::Udp;
    let rejected = RejectReason::ALL
        .iter()
        .map(|&r| (r.as_str(), service.rejections(r)))
        .collect();
    let dropped = DropReason::ALL
        .iter()
        .map(|&r| (r.as_str(), service.drops(r)))
        .collect();
    ServiceSample {
        name: service.name().to_string(),
        rejected: (!udp).then_some(rejected),
        accept_errors: service.accept_errors(),
        udp: udp.then(|| UdpSample {
            flows: service.udp_flows() as u64,
            dropped,
        }),
        backends: service
            .backends()
            .iter()
            .zip(&config.backends)
            .map(|(b, c)| backend_sample(b, config.health_of(c).is_some(), udp, now))
            .collect(),
        routes: if config.routes.is_empty() {
            Vec::new()
        } else {
            let pools = service.pools().iter();
            pools.map(|p| (p.name().to_string(), p.routed())).collect()
        },
    }
}

fn backend_sample(backend: &Backend, checked: bool, udp: bool, now: Instant) -> BackendSample {
    let (bytes_up, bytes_down) = backend.bytes();
    BackendSample {
        address: backend.address().to_string(),
        up: backend.is_available(now),
        active: backend.active() as u64,
        connections: backend.total_connections(),
        connect_failures: backend.connect_failures(),
        ejections: backend.ejections(),
        bytes_up,
        bytes_down,
        datagrams: udp.then(|| backend.datagrams()),
        checks: checked.then(|| {
            let h = backend.health_snapshot(now);
            (h.passed, h.failed, h.timed_out)
        }),
    }
}
