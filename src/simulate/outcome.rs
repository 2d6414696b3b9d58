//! What one simulated run produced: per-backend figures, session-start
//! latencies, rejections, what each scripted event did, and concurrency
//! samples for the plot. Plain data; `report` turns it into text or JSON.

use std::time::Duration;

use super::server::Figures;
use crate::config::StrategyKind;
use crate::service::RejectReason;

/// Clients turned away, by the reason l4lb would count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rejections {
    pub no_backend: u64,
    pub max_connections: u64,
    pub backend_connect: u64,
}

impl Rejections {
    /// Counts one client turned away for `reason`.
    pub fn count(&mut self, reason: RejectReason) {
        match reason {
            RejectReason::NoBackend => self.no_backend += 1,
            RejectReason::MaxConnections => self.max_connections += 1,
            RejectReason::BackendConnect => self.backend_connect += 1,
            // Not simulated: every simulated client is allowed and sends no
            // header and no ClientHello.
            RejectReason::Acl
            | RejectReason::ProxyProtocol
            | RejectReason::TlsPreread
            | RejectReason::NoSni => {}
        }
    }

    pub fn total(&self) -> u64 {
        self.no_backend + self.max_connections + self.backend_connect
    }
}

/// What one scripted event did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventOutcome {
    /// Sessions it cut (kill, blackhole, maint).
    pub cut: u64,
    /// Client keys connected both before the event (since the previous one)
    /// and after it (until the next one).
    pub seen: usize,
    /// Of those, the ones whose latest backend after it is another than before.
    pub moved: usize,
    /// Of those seen, the ones that were on the backend the event took out.
    pub on_target: usize,
}

/// One run of one strategy.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    pub strategy: StrategyKind,
    /// Per backend, in configuration order.
    pub figures: Vec<Figures>,
    /// Session-start latencies (arrival to being served), sorted.
    pub latencies: Vec<Duration>,
    pub arrived: u64,
    pub served: u64,
    pub rejected: Rejections,
    pub events: Vec<EventOutcome>,
    /// Open sessions per backend at regular times of the arrival period.
    pub samples: Vec<(Duration, Vec<usize>)>,
    /// When the last session ended.
    pub finished_at: Duration,
}

impl RunOutcome {
    pub fn new(strategy: StrategyKind, backends: usize) -> RunOutcome {
        RunOutcome {
            strategy,
            figures: vec![Figures::default(); backends],
            latencies: Vec::new(),
            arrived: 0,
            served: 0,
            rejected: Rejections::default(),
            events: Vec::new(),
            samples: Vec::new(),
            finished_at: Duration::ZERO,
        }
    }

    /// The latency below which `quantile` (0..=1) of the sessions started.
    pub fn latency(&self, quantile: f64) -> Option<Duration> {
        let last = self.latencies.len().checked_sub(1)?;
        let rank = (quantile.clamp(0.0, 1.0) * last as f64).round() as usize;
        self.latencies.get(rank).copied()
    }

    /// The highest concurrency any backend reached.
    pub fn max_peak(&self) -> usize {
        self.figures.iter().map(|f| f.peak_open).max().unwrap_or(0)
    }
}
