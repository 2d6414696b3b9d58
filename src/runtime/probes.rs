//! The running health-probe tasks, one per (service, backend) with active checks,
//! kept in step with the configuration: a reload starts probes for new backends,
//! stops those of removed backends (or of services whose checks changed), and
//! leaves the others running with their rise/fall history intact.

use std::collections::HashMap;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::info;

use crate::backend::Backend;
use crate::config::HealthConfig;
use crate::health::HealthChecker;
use crate::health::checker::worst_detection_time;
use crate::service::Service;

#[derive(Debug)]
struct RunningProbe {
    backend: Arc<Backend>,
    health: HealthConfig,
    close_on_down: bool,
    stop: CancellationToken,
}

impl RunningProbe {
    fn matches(&self, wanted: &HealthChecker) -> bool {
        Arc::ptr_eq(&self.backend, &wanted.backend)
            && self.health == wanted.config
            && self.close_on_down == wanted.close_on_down
    }
}

/// A view of the running probe tasks.
#[derive(Debug, Clone)]
pub struct ProbeTasks(TaskTracker);

impl ProbeTasks {
    pub fn running(&self) -> usize {
        self.0.len()
    }
}

/// Every running probe.
#[derive(Debug)]
pub struct ProbeSet {
    running: HashMap<(String, String), RunningProbe>,
    tracker: TaskTracker,
    /// Cancelled when the process stops accepting.
    stop_all: CancellationToken,
}

impl ProbeSet {
    pub fn new(stop_all: CancellationToken) -> ProbeSet {
        ProbeSet {
            running: HashMap::new(),
            tracker: TaskTracker::new(),
            stop_all,
        }
    }

    pub fn tasks(&self) -> ProbeTasks {
        ProbeTasks(self.tracker.clone())
    }

    /// Makes the running probes exactly those `services` ask for.
    pub fn sync<'a>(&mut self, services: impl IntoIterator<Item = &'a Service>) {
        let wanted: HashMap<(String, String), HealthChecker> = services
            .into_iter()
            .flat_map(checkers)
            .map(|c| ((c.service.clone(), c.backend.address().to_string()), c))
            .collect();
        self.running.retain(|key, probe| {
            let keep = wanted.get(key).is_some_and(|w| probe.matches(w));
            if !keep {
                probe.stop.cancel();
            }
            keep
        });
        let mut started: HashMap<String, (HealthConfig, usize)> = HashMap::new();
        for (key, checker) in wanted {
            if self.running.contains_key(&key) {
                continue;
            }
            started
                .entry(checker.service.clone())
                .or_insert_with(|| (checker.config.clone(), 0))
                .1 += 1;
            let stop = self.stop_all.child_token();
            let probe = RunningProbe {
                backend: Arc::clone(&checker.backend),
                health: checker.config.clone(),
                close_on_down: checker.close_on_down,
                stop: stop.clone(),
            };
            self.tracker.spawn(checker.run(stop));
            self.running.insert(key, probe);
        }
        for (service, (health, count)) in started {
            log_started(&service, &health, count);
        }
    }

    /// Waits for every probe task to end (after `stop_all`).
    pub async fn wait(&self) {
        self.tracker.close();
        self.tracker.wait().await;
    }
}

fn log_started(service: &str, health: &HealthConfig, probes: usize) {
    info!(service, probes,
        interval = %humantime::format_duration(health.interval),
        rise = health.rise, fall = health.fall,
        worst_detection = %humantime::format_duration(worst_detection_time(health)),
        "health probes started");
}

/// One checker per backend of `service` that has active checks (the service's,
/// its route's or its own), each with its route's and its own overrides.
fn checkers(service: &Service) -> Vec<HealthChecker> {
    let configs = service.config().backends.iter();
    service
        .backends()
        .iter()
        .zip(configs)
        .filter_map(|(backend, config)| {
            Some(HealthChecker {
                service: service.name().to_string(),
                backend: Arc::clone(backend),
                config: service.config().health_of(config)?.clone(),
                close_on_down: service.config().close_on_down,
            })
        })
        .collect()
}
