//! The Prometheus exporter: one `Metrics` owning a `Registry`.
//!
//! Counters and gauges are not kept twice: the proxy already counts everything in
//! atomics on its services and backends, so at scrape time a collector asks a
//! `SampleSource` for a snapshot of those and turns it into metric families
//! (`families`, in linear time). Only histograms, which need an observation per
//! event, are live prometheus objects; their label handles are resolved once per
//! backend or service, never per connection. This module imports nothing else of l4lb: the sample types below
//! are its whole interface.

use std::sync::Arc;

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry,
    TextEncoder,
};
use serde::Serialize;

mod families;

/// Connect-time buckets, 100µs to 5s.
const CONNECT_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Session-duration buckets, 1ms to 1h.
const SESSION_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0, 1800.0, 3600.0,
];

/// A snapshot of everything counted, taken at scrape time.
#[derive(Debug, Clone, Default)]
pub struct ProxySample {
    pub services: Vec<ServiceSample>,
    /// `(succeeded, failed)` configuration reloads.
    pub reloads: (u64, u64),
    pub upgrade: UpgradeSample,
    /// Each worker's sessions, busy time and hand-offs, in worker order.
    pub workers: Vec<WorkerSample>,
}

/// What operators see of one worker (`/status` and `/metrics`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct WorkerSample {
    pub worker: usize,
    /// TCP sessions the worker serves now.
    pub sessions: usize,
    /// Time the worker's event loop has spent running tasks rather than
    /// waiting for events, since it started.
    pub busy_seconds: f64,
    /// Clients another worker accepted and handed to this one.
    pub handed_in: u64,
}

/// What a predecessor handed over to this process, and upgrades that failed.
#[derive(Debug, Clone, Default)]
pub struct UpgradeSample {
    pub sockets_handed_over: u64,
    pub flows_handed_over: u64,
    /// Attempts to upgrade from this process that failed before READY.
    pub failed_attempts: u64,
}

#[derive(Debug, Clone, Default)]
pub struct ServiceSample {
    pub name: String,
    /// tcp: `(reason, count)` for every rejection reason; `None` for udp services.
    pub rejected: Option<Vec<(&'static str, u64)>>,
    pub accept_errors: u64,
    /// udp: live flows and `(reason, count)` of dropped datagrams; `None` for tcp.
    pub udp: Option<UdpSample>,
    pub backends: Vec<BackendSample>,
    /// Services routed by TLS server name: `(route, clients given to it)`.
    pub routes: Vec<(String, u64)>,
}

#[derive(Debug, Clone, Default)]
pub struct UdpSample {
    pub flows: u64,
    pub dropped: Vec<(&'static str, u64)>,
}

#[derive(Debug, Clone, Default)]
pub struct BackendSample {
    pub address: String,
    pub up: bool,
    pub active: u64,
    pub connections: u64,
    pub connect_failures: u64,
    pub ejections: u64,
    pub bytes_up: u64,
    pub bytes_down: u64,
    /// udp: `(client to backend, backend to client)` datagrams; `None` for tcp.
    pub datagrams: Option<(u64, u64)>,
    /// `(success, failure, timeout)` active-check counts; `None` without active checks.
    pub checks: Option<(u64, u64, u64)>,
}

/// Where the collector gets its snapshot.
pub trait SampleSource: Send + Sync {
    fn sample(&self) -> ProxySample;
}

/// The registry and the histogram families.
pub struct Metrics {
    registry: Registry,
    connect_duration: HistogramVec,
    session_duration: HistogramVec,
    discovery_errors: IntCounterVec,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    /// A registry with the histograms and the process collector (on Linux).
    pub fn new() -> prometheus::Result<Metrics> {
        let registry = Registry::new();
        let connect_duration = HistogramVec::new(
            HistogramOpts::new(
                "l4lb_connect_duration_seconds",
                "Time to establish a TCP connection to a backend.",
            )
            .buckets(CONNECT_BUCKETS.to_vec()),
            &["service", "backend"],
        )?;
        let session_duration = HistogramVec::new(
            HistogramOpts::new(
                "l4lb_session_duration_seconds",
                "Duration of proxied TCP sessions, from accept to close.",
            )
            .buckets(SESSION_BUCKETS.to_vec()),
            &["service"],
        )?;
        registry.register(Box::new(connect_duration.clone()))?;
        registry.register(Box::new(session_duration.clone()))?;
        let discovery_errors = IntCounterVec::new(
            Opts::new(
                "l4lb_discovery_errors_total",
                "DNS discovery lookups that failed or timed out (the last known set was kept).",
            ),
            &["service"],
        )?;
        registry.register(Box::new(discovery_errors.clone()))?;
        #[cfg(target_os = "linux")]
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        Ok(Metrics {
            registry,
            connect_duration,
            session_duration,
            discovery_errors,
        })
    }

    /// Adds the counters and gauges read from `source` at each scrape.
    pub fn register_source(&self, source: Arc<dyn SampleSource>) -> prometheus::Result<()> {
        self.registry
            .register(Box::new(LiveCollector::new(source)?))
    }

    /// The connect-time histogram of one backend (resolve once, keep it).
    pub fn connect_histogram(&self, service: &str, backend: &str) -> Histogram {
        self.connect_duration.with_label_values(&[service, backend])
    }

    /// The session-duration histogram of one service (resolve once, keep it).
    pub fn session_histogram(&self, service: &str) -> Histogram {
        self.session_duration.with_label_values(&[service])
    }

    /// Drops the histogram series of a backend that no longer exists.
    pub fn forget_backend(&self, service: &str, backend: &str) {
        let _ = self
            .connect_duration
            .remove_label_values(&[service, backend]);
    }

    /// The discovery error counter of one service (its series starts at 0).
    pub fn discovery_errors(&self, service: &str) -> IntCounter {
        self.discovery_errors.with_label_values(&[service])
    }

    /// Drops the discovery error series of a service that discovers no more.
    pub fn forget_discovery(&self, service: &str) {
        let _ = self.discovery_errors.remove_label_values(&[service]);
    }

    /// Drops the histogram series of a service that no longer exists.
    pub fn forget_service(&self, service: &str) {
        let _ = self.session_duration.remove_label_values(&[service]);
        self.forget_discovery(service);
    }

    /// Everything, in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for I/O reasons; a malformed family is
        // skipped by the encoder's error, which we surface as an empty scrape line.
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            return format!("# error encoding metrics: {e}\n");
        }
        // The encoder writes UTF-8; taking the buffer as is avoids copying a
        // scrape that runs to hundreds of MiB with 100,000 backends.
        String::from_utf8(out)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
    }
}

/// Turns a `ProxySample` into metric families at scrape time.
struct LiveCollector {
    source: Arc<dyn SampleSource>,
    descs: Vec<Desc>,
}

impl LiveCollector {
    fn new(source: Arc<dyn SampleSource>) -> prometheus::Result<LiveCollector> {
        Ok(LiveCollector {
            source,
            descs: families::descs()?,
        })
    }
}

impl Collector for LiveCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        families::families(&self.source.sample())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(ProxySample);

    impl SampleSource for Fixed {
        fn sample(&self) -> ProxySample {
            self.0.clone()
        }
    }

    fn sample() -> ProxySample {
        ProxySample {
            services: vec![ServiceSample {
                name: "pg".into(),
                rejected: Some(vec![("no_backend", 2), ("max_connections", 0)]),
                accept_errors: 0,
                udp: None,
                backends: vec![BackendSample {
                    address: "10.0.0.1:5432".into(),
                    up: true,
                    active: 3,
                    connections: 10,
                    connect_failures: 1,
                    ejections: 0,
                    bytes_up: 100,
                    bytes_down: 2000,
                    datagrams: None,
                    checks: Some((5, 1, 0)),
                }],
                routes: vec![("default".into(), 4), ("db1".into(), 6)],
            }],
            reloads: (2, 1),
            upgrade: UpgradeSample::default(),
            workers: vec![WorkerSample {
                worker: 1,
                sessions: 7,
                busy_seconds: 2.5,
                handed_in: 3,
            }],
        }
    }

    fn rendered() -> String {
        let metrics = Metrics::new().expect("registry");
        metrics
            .register_source(Arc::new(Fixed(sample())))
            .expect("register");
        metrics
            .connect_histogram("pg", "10.0.0.1:5432")
            .observe(0.002);
        metrics.session_histogram("pg").observe(1.5);
        metrics.render()
    }

    #[test]
    fn sample_values_appear_with_their_labels() {
        let text = rendered();
        for line in [
            "l4lb_connections_total{backend=\"10.0.0.1:5432\",service=\"pg\"} 10",
            "l4lb_active_connections{backend=\"10.0.0.1:5432\",service=\"pg\"} 3",
            "l4lb_rejected_connections_total{reason=\"no_backend\",service=\"pg\"} 2",
            "l4lb_bytes_total{backend=\"10.0.0.1:5432\",direction=\"downstream\",service=\"pg\"} 2000",
            "l4lb_backend_up{backend=\"10.0.0.1:5432\",service=\"pg\"} 1",
            "l4lb_health_checks_total{backend=\"10.0.0.1:5432\",result=\"failure\",service=\"pg\"} 1",
            "l4lb_connect_duration_seconds_count{backend=\"10.0.0.1:5432\",service=\"pg\"} 1",
            "l4lb_session_duration_seconds_count{service=\"pg\"} 1",
            "l4lb_config_reloads_total{result=\"success\"} 2",
            "l4lb_config_reloads_total{result=\"failure\"} 1",
            "l4lb_worker_sessions{worker=\"1\"} 7",
            "l4lb_worker_busy_seconds_total{worker=\"1\"} 2.5",
            "l4lb_worker_handoffs_total{worker=\"1\"} 3",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line} in:\n{text}"
            );
        }
        assert!(text.contains("# TYPE l4lb_connections_total counter"));
        assert!(text.contains("l4lb_build_info{version=\""));
    }

    #[test]
    fn forgotten_series_disappear() {
        let metrics = Metrics::new().expect("registry");
        metrics.connect_histogram("pg", "a:1").observe(0.1);
        metrics.session_histogram("pg").observe(0.1);
        metrics.forget_backend("pg", "a:1");
        metrics.forget_service("pg");
        let text = metrics.render();
        assert!(
            !text.contains("l4lb_connect_duration_seconds_count"),
            "{text}"
        );
        assert!(
            !text.contains("l4lb_session_duration_seconds_count"),
            "{text}"
        );
    }
}
