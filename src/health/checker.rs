//! The probe loop of one backend: probe every `interval` (with ±10% jitter so the
//! probes of many backends do not fire in lockstep), record each result, log and
//! act on each up/down transition. Every wait races the stop token, so the loop
//! ends promptly on shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::backend::Backend;
use crate::backend::health::Transition;
use crate::config::HealthConfig;
use crate::health::probe::{ProbeOutcome, probe};
use crate::random;

/// Spread of the probe interval: each wait is `interval` ± this fraction.
pub const INTERVAL_JITTER: f64 = 0.1;

#[derive(Debug, Clone)]
pub struct HealthChecker {
    pub service: String,
    pub backend: Arc<Backend>,
    pub config: HealthConfig,
    /// Close the backend's open sessions when it is marked down.
    pub close_on_down: bool,
}

impl HealthChecker {
    /// The address probes go to: the backend's, or its IP with the configured port.
    pub fn target(&self) -> SocketAddr {
        let addr = self.backend.addr();
        self.config
            .port
            .map_or(addr, |port| SocketAddr::new(addr.ip(), port))
    }

    /// Probes until `stop` is cancelled.
    pub async fn run(self, stop: CancellationToken) {
        let target = self.target();
        // The first probe lands anywhere in the first interval, spreading backends out.
        let mut wait = self
            .config
            .interval
            .mul_f64(random::next_u64() as f64 / u64::MAX as f64);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
            let started = Instant::now();
            let outcome = tokio::select! {
                () = stop.cancelled() => return,
                outcome = probe(&self.config.check, target, self.config.timeout) => outcome,
            };
            self.record(&outcome, started);
            wait = random::jitter(self.config.interval, INTERVAL_JITTER);
        }
    }

    /// Records the outcome of a probe that started at `started`, and logs every
    /// change of availability it caused.
    fn record(&self, outcome: &ProbeOutcome, started: Instant) {
        let (rise, fall) = (self.config.rise, self.config.fall);
        let now = Instant::now();
        let error = outcome.detail.as_deref();
        let effect = self
            .backend
            .record_check(outcome.result, error, started, now, (rise, fall));
        if let Some(percent) = outcome.weight {
            self.backend.set_agent_weight(percent);
        }
        if effect.ejection_ended {
            info!(service = %self.service, backend = self.backend.address(),
                healthy = self.backend.is_healthy(),
                "backend ejection ended: a health check passed after the ejection");
        }
        match effect.transition {
            Some(Transition::Down) => self.on_down(outcome),
            Some(Transition::Up) => self.on_up(now),
            None => {}
        }
    }

    fn on_up(&self, now: Instant) {
        let reason = format!("{} consecutive successful checks", self.config.rise);
        match self.backend.ejected_for(now) {
            None => info!(service = %self.service, backend = self.backend.address(),
                reason = %reason, "backend up"),
            Some(left) => info!(service = %self.service, backend = self.backend.address(),
                reason = %reason, ejected_for_ms = left.as_millis() as u64,
                "backend healthy, but still ejected by passive checks"),
        }
    }

    fn on_down(&self, outcome: &ProbeOutcome) {
        let open = self.backend.active();
        warn!(service = %self.service, backend = self.backend.address(),
            reason = %format!("{} consecutive failed checks", self.config.fall),
            last = outcome.result.as_str(), error = outcome.detail.as_deref().unwrap_or(""),
            open_sessions = open, closing_sessions = self.close_on_down, "backend down");
        if self.close_on_down {
            self.backend.close_sessions();
        }
    }
}

/// How long detecting a dead backend takes at worst: `fall` probes, each up to an
/// interval (plus jitter) and a timeout apart.
pub fn worst_detection_time(config: &HealthConfig) -> Duration {
    let longest_wait = config.interval.as_secs_f64() * (1.0 + INTERVAL_JITTER);
    let jittered = Duration::try_from_secs_f64(longest_wait).unwrap_or(Duration::MAX);
    let per_probe = jittered.saturating_add(config.timeout);
    per_probe.saturating_mul(config.fall)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Check, TcpCheck};

    fn health(interval: Duration, timeout: Duration, fall: u32) -> HealthConfig {
        HealthConfig {
            check: Check::Tcp(TcpCheck::default()),
            interval,
            timeout,
            rise: 2,
            fall,
            port: None,
        }
    }

    #[test]
    fn worst_detection_time_is_fall_probes_of_a_jittered_interval_and_a_timeout() {
        let config = health(Duration::from_secs(2), Duration::from_secs(1), 3);
        assert_eq!(worst_detection_time(&config), Duration::from_millis(9600));
    }

    #[test]
    fn worst_detection_time_saturates_instead_of_overflowing() {
        let config = health(Duration::MAX, Duration::MAX, 100);
        assert_eq!(worst_detection_time(&config), Duration::MAX);
    }
}
