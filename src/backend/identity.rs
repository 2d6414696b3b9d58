//! What belongs to a backend's identity — its service and its `address` as
//! configured — rather than to one configuration of it: the live and lifetime
//! counters, the connect-time histogram, the active-check record, the
//! passive-check state and the handle that closes its open sessions.
//!
//! A reload that changes a backend's settings (weight, limits, outlier settings…)
//! builds a new `Backend` around the same `Identity`, so both copies count into
//! the same place: gauges sum the sessions of both, counters carry on and never go
//! down, and the health history survives. Only a backend whose address leaves the
//! service gets a new identity when it comes back.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::lifecycle::CloseSignal;
use arc_swap::ArcSwap;
use prometheus::Histogram;

use super::health::HealthRecord;
use super::outlier::OutlierState;

/// Marks "no connect time measured yet" in the EWMA cell.
pub(super) const NO_SAMPLE: u64 = u64::MAX;

#[derive(Debug)]
pub struct Identity {
    /// The address as configured: the backend's name in logs, metrics and status.
    pub(super) address: String,
    /// Connections open (or being opened) through any copy.
    pub(super) active: AtomicUsize,
    pub(super) total_connections: AtomicU64,
    pub(super) connect_failures: AtomicU64,
    /// f64 seconds as bits, or `NO_SAMPLE`.
    pub(super) connect_time_ewma: AtomicU64,
    /// Bytes relayed client to backend, and back.
    pub(super) bytes_up: AtomicU64,
    pub(super) bytes_down: AtomicU64,
    /// UDP datagrams relayed client to backend, and back.
    pub(super) datagrams_up: AtomicU64,
    pub(super) datagrams_down: AtomicU64,
    pub(super) connect_histogram: Option<Histogram>,
    /// The active-check verdict, mirrored from `health` for lock-free reads.
    pub(super) healthy: AtomicBool,
    health: Mutex<HealthRecord>,
    pub outlier: OutlierState,
    /// Percent of its weight an agent check last reported (100 without one).
    pub(super) agent_weight: AtomicU32,
    /// Closed (and replaced) to close the sessions open on this backend.
    pub(super) session_closer: ArcSwap<CloseSignal>,
}

impl Identity {
    /// A fresh identity named `address`, observing connect times in `histogram`.
    pub fn new(address: impl Into<String>, histogram: Option<Histogram>) -> Arc<Identity> {
        Arc::new(Identity {
            address: address.into(),
            active: AtomicUsize::new(0),
            total_connections: AtomicU64::new(0),
            connect_failures: AtomicU64::new(0),
            connect_time_ewma: AtomicU64::new(NO_SAMPLE),
            bytes_up: AtomicU64::new(0),
            bytes_down: AtomicU64::new(0),
            datagrams_up: AtomicU64::new(0),
            datagrams_down: AtomicU64::new(0),
            connect_histogram: histogram,
            healthy: AtomicBool::new(true),
            health: Mutex::new(HealthRecord::default()),
            outlier: OutlierState::default(),
            agent_weight: AtomicU32::new(100),
            session_closer: ArcSwap::from_pointee(CloseSignal::default()),
        })
    }

    pub fn address(&self) -> &str {
        &self.address
    }

    /// Forgets the active-check verdict (checks were turned off): up again.
    pub fn reset_health(&self) {
        *self.health_record() = HealthRecord::default();
        self.healthy.store(true, Ordering::Release);
        self.agent_weight.store(100, Ordering::Relaxed);
    }

    pub(super) fn health_record(&self) -> MutexGuard<'_, HealthRecord> {
        // The record is plain data, always consistent between statements: a panic
        // elsewhere while holding the lock cannot leave it half-written.
        self.health
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
