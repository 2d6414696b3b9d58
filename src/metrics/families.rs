//! The counter and gauge families of one scrape, built straight from a
//! `ProxySample`: one series per (service, backend) and metric, label pairs in
//! name order, series in label order. No per-scrape hash map, lock or second
//! copy of the series is involved, and since every family arrives already
//! sorted the registry's sort of it is a single pass — a scrape of 100,000
//! backends is linear work.

use std::collections::HashMap;

use prometheus::core::Desc;
use prometheus::proto::{Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType};

use super::{BackendSample, ProxySample, ServiceSample, WorkerSample};

/// One family: name, help, type and label names (in alphabetical order, as the
/// text format lists them).
struct Spec {
    name: &'static str,
    help: &'static str,
    kind: MetricType,
    labels: &'static [&'static str],
}

const fn spec(
    name: &'static str,
    help: &'static str,
    kind: MetricType,
    labels: &'static [&'static str],
) -> Spec {
    Spec {
        name,
        help,
        kind,
        labels,
    }
}

use MetricType::{COUNTER, GAUGE};

const BS: &[&str] = &["backend", "service"];
const BDS: &[&str] = &["backend", "direction", "service"];

const BUILD_INFO: Spec = spec(
    "l4lb_build_info",
    "Always 1; labelled with the l4lb version.",
    GAUGE,
    &["version"],
);
const CONNECTIONS: Spec = spec(
    "l4lb_connections_total",
    "TCP connections forwarded to a backend.",
    COUNTER,
    BS,
);
const ACTIVE: Spec = spec(
    "l4lb_active_connections",
    "TCP connections open to a backend (including connects in progress).",
    GAUGE,
    BS,
);
const REJECTED: Spec = spec(
    "l4lb_rejected_connections_total",
    "Clients turned away, by reason.",
    COUNTER,
    &["reason", "service"],
);
const CONNECT_FAILURES: Spec = spec(
    "l4lb_backend_connect_failures_total",
    "Failed connect attempts to a backend (refused or timed out).",
    COUNTER,
    BS,
);
const BYTES: Spec = spec(
    "l4lb_bytes_total",
    "Bytes relayed; upstream is client to backend.",
    COUNTER,
    BDS,
);
const BACKEND_UP: Spec = spec(
    "l4lb_backend_up",
    "1 while a backend is offered to new clients (healthy and not ejected), else 0.",
    GAUGE,
    BS,
);
const HEALTH_CHECKS: Spec = spec(
    "l4lb_health_checks_total",
    "Active health check results.",
    COUNTER,
    &["backend", "result", "service"],
);
const EJECTIONS: Spec = spec(
    "l4lb_outlier_ejections_total",
    "Times passive checks ejected a backend.",
    COUNTER,
    BS,
);
const ACCEPT_ERRORS: Spec = spec(
    "l4lb_accept_errors_total",
    "Failed accept() calls (e.g. out of file descriptors).",
    COUNTER,
    &["service"],
);
const UDP_FLOWS: Spec = spec("l4lb_udp_flows", "Live UDP flows.", GAUGE, &["service"]);
const UDP_DATAGRAMS: Spec = spec(
    "l4lb_udp_datagrams_total",
    "UDP datagrams relayed; upstream is client to backend.",
    COUNTER,
    BDS,
);
const UDP_DROPPED: Spec = spec(
    "l4lb_udp_dropped_datagrams_total",
    "UDP datagrams dropped, by reason.",
    COUNTER,
    &["reason", "service"],
);
const ROUTE_CONNECTIONS: Spec = spec(
    "l4lb_route_connections_total",
    "TCP clients given to a route by their TLS server name (route=\"default\": the service's own backends).",
    COUNTER,
    &["route", "service"],
);
const RELOADS: Spec = spec(
    "l4lb_config_reloads_total",
    "Configuration reloads (SIGHUP), by result.",
    COUNTER,
    &["result"],
);

const UPGRADE_SOCKETS: Spec = spec(
    "l4lb_upgrade_sockets_handed_over_total",
    "Listening sockets the previous process handed over to this one in a binary upgrade.",
    COUNTER,
    &[],
);
const UPGRADE_FLOWS: Spec = spec(
    "l4lb_upgrade_flows_handed_over_total",
    "UDP flows the previous process handed over to this one in a binary upgrade.",
    COUNTER,
    &[],
);
const UPGRADE_FAILURES: Spec = spec(
    "l4lb_upgrade_failures_total",
    "Binary upgrades from this process that failed before the new one was ready.",
    COUNTER,
    &[],
);

const WORKER_SESSIONS: Spec = spec(
    "l4lb_worker_sessions",
    "TCP sessions each worker thread serves now.",
    GAUGE,
    &["worker"],
);
const WORKER_BUSY: Spec = spec(
    "l4lb_worker_busy_seconds_total",
    "Time each worker thread's event loop spent running tasks rather than waiting for events.",
    COUNTER,
    &["worker"],
);
const WORKER_HANDOFFS: Spec = spec(
    "l4lb_worker_handoffs_total",
    "TCP clients another worker accepted and handed to this one (worker_dispatch = least_sessions).",
    COUNTER,
    &["worker"],
);

const ALL: [&Spec; 20] = [
    &BUILD_INFO,
    &CONNECTIONS,
    &ACTIVE,
    &REJECTED,
    &CONNECT_FAILURES,
    &BYTES,
    &BACKEND_UP,
    &HEALTH_CHECKS,
    &EJECTIONS,
    &ACCEPT_ERRORS,
    &UDP_FLOWS,
    &UDP_DATAGRAMS,
    &UDP_DROPPED,
    &RELOADS,
    &UPGRADE_SOCKETS,
    &UPGRADE_FLOWS,
    &UPGRADE_FAILURES,
    &WORKER_SESSIONS,
    &WORKER_BUSY,
    &WORKER_HANDOFFS,
];

/// The descriptions of every family, for registering the collector.
pub fn descs() -> prometheus::Result<Vec<Desc>> {
    ALL.iter()
        .map(|s| {
            let labels = s.labels.iter().map(|l| l.to_string()).collect();
            Desc::new(s.name.into(), s.help.into(), labels, HashMap::new())
        })
        .collect()
}

/// The series of one family, being filled.
struct Series {
    spec: &'static Spec,
    metrics: Vec<Metric>,
}

impl Series {
    /// One series with `values` for the spec's labels, in the same order.
    fn push(&mut self, values: &[&str], value: f64) {
        let labels = self
            .spec
            .labels
            .iter()
            .zip(values)
            .map(|(name, value)| {
                let mut pair = LabelPair::default();
                pair.set_name(name.to_string());
                pair.set_value(value.to_string());
                pair
            })
            .collect();
        let mut metric = Metric::from_label(labels);
        if self.spec.kind == COUNTER {
            let mut counter = Counter::default();
            counter.set_value(value);
            metric.set_counter(counter);
        } else {
            let mut gauge = Gauge::default();
            gauge.set_value(value);
            metric.set_gauge(gauge);
        }
        self.metrics.push(metric);
    }

    fn family(self) -> MetricFamily {
        let mut family = MetricFamily::default();
        family.set_name(self.spec.name.into());
        family.set_help(self.spec.help.into());
        family.set_field_type(self.spec.kind);
        family.set_metric(self.metrics);
        family
    }
}

/// Every family filled from `sample` (empty ones included; the registry drops them).
pub fn families(sample: &ProxySample) -> Vec<MetricFamily> {
    let mut f = Families::new();
    f.build_info.push(&[env!("CARGO_PKG_VERSION")], 1.0);
    let (succeeded, failed) = sample.reloads;
    f.reloads.push(&["failure"], failed as f64);
    f.reloads.push(&["success"], succeeded as f64);
    let upgrade = &sample.upgrade;
    f.upgrade_sockets
        .push(&[], upgrade.sockets_handed_over as f64);
    f.upgrade_flows.push(&[], upgrade.flows_handed_over as f64);
    f.upgrade_failures.push(&[], upgrade.failed_attempts as f64);
    f.workers(sample);
    let mut services: Vec<&ServiceSample> = sample.services.iter().collect();
    services.sort_by(|a, b| a.name.cmp(&b.name));
    f.services(&services);
    let mut backends: Vec<(&str, &BackendSample)> = sample
        .services
        .iter()
        .flat_map(|s| s.backends.iter().map(move |b| (s.name.as_str(), b)))
        .collect();
    backends.sort_by(|(s1, b1), (s2, b2)| (&b1.address, s1).cmp(&(&b2.address, s2)));
    for same_address in backends.chunk_by(|(_, a), (_, b)| a.address == b.address) {
        f.backends(same_address);
    }
    f.into_vec()
}

/// Picks one count out of `(success, failure, timeout)` check counts.
type CountOf = fn((u64, u64, u64)) -> u64;

/// Every family of one scrape, being filled.
struct Families {
    build_info: Series,
    connections: Series,
    active: Series,
    rejected: Series,
    connect_failures: Series,
    bytes: Series,
    backend_up: Series,
    health_checks: Series,
    ejections: Series,
    accept_errors: Series,
    udp_flows: Series,
    udp_datagrams: Series,
    udp_dropped: Series,
    route_connections: Series,
    reloads: Series,
    upgrade_sockets: Series,
    upgrade_flows: Series,
    upgrade_failures: Series,
    worker_sessions: Series,
    worker_busy: Series,
    worker_handoffs: Series,
}

impl Families {
    fn new() -> Families {
        let series = |spec| Series {
            spec,
            metrics: Vec::new(),
        };
        Families {
            build_info: series(&BUILD_INFO),
            connections: series(&CONNECTIONS),
            active: series(&ACTIVE),
            rejected: series(&REJECTED),
            connect_failures: series(&CONNECT_FAILURES),
            bytes: series(&BYTES),
            backend_up: series(&BACKEND_UP),
            health_checks: series(&HEALTH_CHECKS),
            ejections: series(&EJECTIONS),
            accept_errors: series(&ACCEPT_ERRORS),
            udp_flows: series(&UDP_FLOWS),
            udp_datagrams: series(&UDP_DATAGRAMS),
            udp_dropped: series(&UDP_DROPPED),
            route_connections: series(&ROUTE_CONNECTIONS),
            reloads: series(&RELOADS),
            upgrade_sockets: series(&UPGRADE_SOCKETS),
            upgrade_flows: series(&UPGRADE_FLOWS),
            upgrade_failures: series(&UPGRADE_FAILURES),
            worker_sessions: series(&WORKER_SESSIONS),
            worker_busy: series(&WORKER_BUSY),
            worker_handoffs: series(&WORKER_HANDOFFS),
        }
    }

    /// One series per worker of each worker family (labels sort as text, so
    /// worker 10 comes before worker 2: the registry keeps that order).
    fn workers(&mut self, sample: &ProxySample) {
        let mut workers: Vec<(String, &WorkerSample)> = sample
            .workers
            .iter()
            .map(|w| (w.worker.to_string(), w))
            .collect();
        workers.sort_by(|a, b| a.0.cmp(&b.0));
        for (label, w) in &workers {
            self.worker_sessions.push(&[label], w.sessions as f64);
            self.worker_busy.push(&[label], w.busy_seconds);
            self.worker_handoffs.push(&[label], w.handed_in as f64);
        }
    }

    /// The per-service series of `services` (sorted by name).
    fn services(&mut self, services: &[&ServiceSample]) {
        // (reason, service, count, udp): sorted, as the families list them.
        let mut by_reason: Vec<(&str, &str, u64, bool)> = Vec::new();
        let mut by_route: Vec<(&str, &str, u64)> = Vec::new();
        for service in services {
            let name = service.name.as_str();
            for (route, count) in &service.routes {
                by_route.push((route, name, *count));
            }
            self.accept_errors
                .push(&[name], service.accept_errors as f64);
            for (reason, count) in service.rejected.iter().flatten() {
                by_reason.push((reason, name, *count, false));
            }
            if let Some(udp) = &service.udp {
                self.udp_flows.push(&[name], udp.flows as f64);
                for (reason, count) in &udp.dropped {
                    by_reason.push((reason, name, *count, true));
                }
            }
        }
        by_reason.sort_unstable();
        for (reason, name, count, udp) in by_reason {
            let family = if udp {
                &mut self.udp_dropped
            } else {
                &mut self.rejected
            };
            family.push(&[reason, name], count as f64);
        }
        by_route.sort_unstable();
        for (route, name, count) in by_route {
            self.route_connections.push(&[route, name], count as f64);
        }
    }

    /// The series of one backend address in every service that has it (sorted
    /// by service). Label order is (backend, [direction | result,] service), so
    /// the series of one address go out together.
    fn backends(&mut self, same_address: &[(&str, &BackendSample)]) {
        for &(service, b) in same_address {
            let labels = [b.address.as_str(), service];
            if b.datagrams.is_none() {
                self.connections.push(&labels, b.connections as f64);
                self.active.push(&labels, b.active as f64);
            }
            self.connect_failures
                .push(&labels, b.connect_failures as f64);
            self.ejections.push(&labels, b.ejections as f64);
            self.backend_up.push(&labels, if b.up { 1.0 } else { 0.0 });
        }
        for (direction, downstream) in [("downstream", true), ("upstream", false)] {
            for &(service, b) in same_address {
                let labels = [b.address.as_str(), direction, service];
                let moved = if downstream { b.bytes_down } else { b.bytes_up };
                self.bytes.push(&labels, moved as f64);
                if let Some((up, down)) = b.datagrams {
                    let count = if downstream { down } else { up };
                    self.udp_datagrams.push(&labels, count as f64);
                }
            }
        }
        let results: [(&str, CountOf); 3] = [
            ("failure", |(_, failure, _)| failure),
            ("success", |(success, _, _)| success),
            ("timeout", |(_, _, timeout)| timeout),
        ];
        for (result, count_of) in results {
            for &(service, b) in same_address {
                if let Some(checks) = b.checks {
                    let labels = [b.address.as_str(), result, service];
                    self.health_checks.push(&labels, count_of(checks) as f64);
                }
            }
        }
    }

    fn into_vec(self) -> Vec<MetricFamily> {
        [
            self.build_info,
            self.connections,
            self.active,
            self.rejected,
            self.connect_failures,
            self.bytes,
            self.backend_up,
            self.health_checks,
            self.ejections,
            self.accept_errors,
            self.udp_flows,
            self.udp_datagrams,
            self.udp_dropped,
            self.route_connections,
            self.reloads,
            self.upgrade_sockets,
            self.upgrade_flows,
            self.upgrade_failures,
            self.worker_sessions,
            self.worker_busy,
            self.worker_handoffs,
        ]
        .into_iter()
        .map(Series::family)
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::UpgradeSample;

    fn backend(address: &str) -> BackendSample {
        BackendSample {
            address: address.into(),
            up: true,
            checks: Some((1, 0, 0)),
            ..BackendSample::default()
        }
    }

    fn service(name: &str, addresses: &[&str]) -> ServiceSample {
        ServiceSample {
            name: name.into(),
            rejected: Some(vec![("no_backend", 1), ("acl", 2)]),
            backends: addresses.iter().map(|a| backend(a)).collect(),
            ..ServiceSample::default()
        }
    }

    fn label_values(metric: &Metric) -> Vec<String> {
        metric
            .get_label()
            .iter()
            .map(|l| l.value().to_string())
            .collect()
    }

    #[test]
    fn every_family_comes_sorted_with_one_series_per_label_set() {
        let sample = ProxySample {
            services: vec![
                service("web", &["10.0.0.9:80", "10.0.0.1:80"]),
                service("api", &["10.0.0.5:80", "10.0.0.1:80"]),
            ],
            reloads: (3, 1),
            upgrade: UpgradeSample {
                sockets_handed_over: 4,
                flows_handed_over: 7,
                failed_attempts: 1,
            },
            workers: (0..12)
                .map(|worker| WorkerSample {
                    worker,
                    ..WorkerSample::default()
                })
                .collect(),
        };
        let families = families(&sample);
        for family in &families {
            let values: Vec<Vec<String>> = family.get_metric().iter().map(label_values).collect();
            let mut sorted = values.clone();
            sorted.sort();
            sorted.dedup();
            assert_eq!(values, sorted, "{}", family.name());
        }
        let count = |name: &str| {
            families
                .iter()
                .find(|f| f.name() == name)
                .map_or(0, |f| f.get_metric().len())
        };
        assert_eq!(count("l4lb_backend_up"), 4);
        assert_eq!(count("l4lb_bytes_total"), 8);
        assert_eq!(count("l4lb_health_checks_total"), 12);
        assert_eq!(count("l4lb_rejected_connections_total"), 4);
        assert_eq!(count("l4lb_udp_datagrams_total"), 0);
        assert_eq!(count("l4lb_config_reloads_total"), 2);
        assert_eq!(count("l4lb_upgrade_flows_handed_over_total"), 1);
    }
}
