//! One backend server of one service: its settings, its identity (the counters,
//! health and passive-check state that every configuration of it shares across
//! reloads, see `identity`) and whether it may be offered to new clients.
//!
//! A `Backend` is shared (`Arc`) between the strategy that picks it, the connection
//! tasks that use it, the health checker that judges it and the status readers.
//! What the hot path reads is atomic, so it never takes a lock. `ConnectionGuard`
//! is the only way to count an active connection, so the count goes back down on
//! every path, however a session ends. This module does no I/O: probes live in
//! `crate::health`, and it only records their results.

pub mod admin_state;
pub mod health;
pub mod identity;
pub mod outlier;
pub mod slow_start;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::lifecycle::CloseSignal;

use admin_state::{AdminCell, AdminState};
use health::{CheckResult, HealthSnapshot, Transition};
use identity::{Identity, NO_SAMPLE};
use outlier::OutlierSettings;
use slow_start::SlowStart;

/// Weight given to the newest sample in the connect-time moving average.
pub const CONNECT_TIME_EWMA_ALPHA: f64 = 0.3;

/// One configuration of a backend: its settings, around the identity (counters,
/// health, passive-check state) that every configuration of it shares.
#[derive(Debug)]
pub struct Backend {
    identity: Arc<Identity>,
    addr: SocketAddr,
    weight: u32,
    max_connections: usize,
    backup: bool,
    outlier: Option<OutlierSettings>,
    slow_start: Option<SlowStart>,
    admin: AdminCell,
}

/// What one active-check result changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CheckEffect {
    /// The active-check verdict flipped.
    pub transition: Option<Transition>,
    /// The check passed after a passive ejection began, which ended it.
    pub ejection_ended: bool,
}

impl Backend {
    /// A backend named `address` (as configured) that connects to `addr`, with a
    /// fresh identity.
    pub fn new(address: impl Into<String>, addr: SocketAddr, weight: u32) -> Backend {
        Backend::with_identity(Identity::new(address, None), addr, weight)
    }

    /// A configuration of the backend `identity` names, connecting to `addr`.
    pub fn with_identity(identity: Arc<Identity>, addr: SocketAddr, weight: u32) -> Backend {
        Backend {
            identity,
            addr,
            weight: weight.max(1),
            max_connections: 0,
            backup: false,
            outlier: None,
            slow_start: None,
            admin: AdminCell::default(),
        }
    }

    /// Marks the backend as a backup: used only while no primary is available.
    pub fn with_backup(mut self, backup: bool) -> Backend {
        self.backup = backup;
        self
    }

    /// Ejects the backend after `threshold` connect failures in a row, for `ejection_time`.
    pub fn with_outlier_detection(mut self, threshold: u32, ejection_time: Duration) -> Backend {
        self.outlier = Some(OutlierSettings {
            threshold,
            ejection_time,
        });
        self
    }

    /// Ramps the backend's share up over `window` each time it comes back up.
    /// Starts the slow-start ramp at `now` (a backend that joins a running
    /// service); nothing without `slow_start`.
    pub fn begin_slow_start(&self, now: Instant) {
        if let Some(slow_start) = &self.slow_start {
            slow_start.begin(now);
        }
    }

    pub fn with_slow_start(mut self, window: Duration) -> Backend {
        self.slow_start = (!window.is_zero()).then(|| SlowStart::new(window));
        self
    }

    /// Caps concurrent connections; 0 means unlimited.
    pub fn with_max_connections(mut self, max: usize) -> Backend {
        self.max_connections = max;
        self
    }

    /// The identity this configuration belongs to (shared across reloads).
    pub fn identity(&self) -> &Arc<Identity> {
        &self.identity
    }

    /// The address as configured: the backend's name in logs, metrics and status.
    pub fn address(&self) -> &str {
        &self.identity.address
    }

    /// The socket address connections go to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Configured weight, 1..=1000.
    pub fn weight(&self) -> u32 {
        self.weight
    }

    pub fn max_connections(&self) -> usize {
        self.max_connections
    }

    pub fn is_backup(&self) -> bool {
        self.backup
    }

    /// The active checks' verdict (true when there are none).
    pub fn is_healthy(&self) -> bool {
        self.identity.healthy.load(Ordering::Acquire)
    }

    /// Whether passive checks have ejected the backend at `now`.
    pub fn is_ejected(&self, now: Instant) -> bool {
        self.ejected_for(now).is_some()
    }

    /// How much longer passive checks keep the backend out, if they do at `now`.
    pub fn ejected_for(&self, now: Instant) -> Option<Duration> {
        self.outlier?;
        self.identity.outlier.ejected_for(now)
    }

    /// The passive-check settings this configuration applies, if any.
    pub fn outlier_settings(&self) -> Option<OutlierSettings> {
        self.outlier
    }

    /// Whether new clients may be sent here at `now`: in rotation, healthy and
    /// not ejected.
    pub fn is_available(&self, now: Instant) -> bool {
        self.admin_state() == AdminState::Ready && self.is_healthy() && !self.is_ejected(now)
    }

    /// The operator's state for this backend.
    pub fn admin_state(&self) -> AdminState {
        self.admin.get()
    }

    /// Sets the operator's state; `Maint` also closes the backend's open sessions.
    pub fn set_admin_state(&self, state: AdminState) -> AdminState {
        let previous = self.admin.set(state);
        if state == AdminState::Maint {
            self.close_sessions();
        }
        previous
    }

    /// What `/status` calls the backend's state: `maint`, `draining`, `down` or `up`.
    pub fn state_name(&self, now: Instant) -> &'static str {
        match self.admin_state() {
            AdminState::Maint => "maint",
            AdminState::Drain => "draining",
            AdminState::Ready if self.is_available(now) => "up",
            AdminState::Ready => "down",
        }
    }

    /// Admission for one pick: true with probability `weight_share` (always
    /// when not ramping and at full agent weight).
    pub fn admits(&self, now: Instant, random: u64) -> bool {
        let share = self.weight_share(now);
        share >= 1.0 || (random as f64 / u64::MAX as f64) < share
    }

    /// The fraction of its weight the backend gets now: below 1 while
    /// slow-starting, or while an agent check reports less than 100%.
    pub fn weight_share(&self, now: Instant) -> f64 {
        let ramp = self.slow_start.as_ref().map_or(1.0, |s| s.share(now));
        ramp * f64::from(self.agent_weight()) / 100.0
    }

    /// Sets the percent of its weight an agent check reports (capped at 100).
    pub fn set_agent_weight(&self, percent: u32) {
        let percent = percent.min(100);
        self.identity.agent_weight.store(percent, Ordering::Relaxed);
    }

    /// The percent of its weight the agent check last reported (100 without one).
    pub fn agent_weight(&self) -> u32 {
        self.identity.agent_weight.load(Ordering::Relaxed)
    }

    /// Records one active-check result (with the error behind a failure), of a
    /// probe that started at `started`; returns what it changed. A pass of a
    /// probe that started after a passive ejection began ends that ejection.
    pub fn record_check(
        &self,
        result: CheckResult,
        error: Option<&str>,
        started: Instant,
        now: Instant,
        (rise, fall): (u32, u32),
    ) -> CheckEffect {
        let mut record = self.identity.health_record();
        let transition = record.record(result, error, now, rise, fall);
        self.identity
            .healthy
            .store(record.is_up(), Ordering::Release);
        drop(record);
        if let (Some(Transition::Up), Some(slow_start)) = (transition, &self.slow_start) {
            slow_start.begin(now);
        }
        let ejection_ended = result == CheckResult::Success
            && self.outlier.is_some()
            && self.identity.outlier.record_passing_check(started, now);
        CheckEffect {
            transition,
            ejection_ended,
        }
    }

    /// A copy of the health record as of `now`.
    pub fn health_snapshot(&self, now: Instant) -> HealthSnapshot {
        self.identity.health_record().snapshot(now)
    }

    /// Passive ejections so far.
    pub fn ejections(&self) -> u64 {
        self.identity.outlier.ejections()
    }

    /// A signal closed when this backend's open sessions must close.
    pub fn session_closer(&self) -> Arc<CloseSignal> {
        self.identity.session_closer.load_full()
    }

    /// Closes every session currently open on this backend (through any copy).
    pub fn close_sessions(&self) {
        let fresh = Arc::new(CloseSignal::default());
        self.identity.session_closer.swap(fresh).close();
    }

    /// Connections currently open (or being opened) to this backend, through any
    /// copy of it.
    pub fn active(&self) -> usize {
        self.identity.active.load(Ordering::Relaxed)
    }

    /// The relayed-bytes counters, client to backend and backend to client.
    pub fn byte_counters(&self) -> (&AtomicU64, &AtomicU64) {
        (&self.identity.bytes_up, &self.identity.bytes_down)
    }

    /// Bytes relayed so far, `(client to backend, backend to client)`.
    pub fn bytes(&self) -> (u64, u64) {
        (
            self.identity.bytes_up.load(Ordering::Relaxed),
            self.identity.bytes_down.load(Ordering::Relaxed),
        )
    }

    /// Counts one datagram of `len` bytes relayed client to backend.
    pub fn count_datagram_up(&self, len: usize) {
        self.identity.datagrams_up.fetch_add(1, Ordering::Relaxed);
        self.identity
            .bytes_up
            .fetch_add(len as u64, Ordering::Relaxed);
    }

    /// Counts one datagram of `len` bytes relayed backend to client.
    pub fn count_datagram_down(&self, len: usize) {
        self.identity.datagrams_down.fetch_add(1, Ordering::Relaxed);
        self.identity
            .bytes_down
            .fetch_add(len as u64, Ordering::Relaxed);
    }

    /// UDP datagrams relayed so far, `(client to backend, backend to client)`.
    pub fn datagrams(&self) -> (u64, u64) {
        (
            self.identity.datagrams_up.load(Ordering::Relaxed),
            self.identity.datagrams_down.load(Ordering::Relaxed),
        )
    }

    /// Connections ever established to this backend (successful connects).
    pub fn total_connections(&self) -> u64 {
        self.identity.total_connections.load(Ordering::Relaxed)
    }

    /// Failed connect attempts (refused or timed out).
    pub fn connect_failures(&self) -> u64 {
        self.identity.connect_failures.load(Ordering::Relaxed)
    }

    /// Whether one more connection fits under `max_connections`.
    pub fn has_capacity(&self) -> bool {
        self.max_connections == 0 || self.active() < self.max_connections
    }

    /// Counts a connection as active until the returned guard is dropped.
    ///
    /// Returns `None` when the backend is full. The check and the increment are one
    /// atomic step, so concurrent callers can never push it over its limit.
    pub fn try_acquire(self: &Arc<Self>) -> Option<ConnectionGuard> {
        let max = self.max_connections;
        let acquired =
            self.identity
                .active
                .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| {
                    (max == 0 || n < max).then_some(n + 1)
                });
        acquired.ok().map(|_| ConnectionGuard {
            backend: Arc::clone(self),
        })
    }

    /// Records one failed connect attempt; `true` when it ejected the backend.
    pub fn record_connect_failure(&self, now: Instant) -> bool {
        self.identity
            .connect_failures
            .fetch_add(1, Ordering::Relaxed);
        self.outlier
            .as_ref()
            .is_some_and(|o| self.identity.outlier.record_failure(now, o))
    }

    /// Records one successful connect and folds its time into the moving average.
    pub fn record_connect_success(&self, took: Duration) {
        let identity = &self.identity;
        identity.total_connections.fetch_add(1, Ordering::Relaxed);
        if self.outlier.is_some() {
            identity.outlier.record_success();
        }
        if let Some(histogram) = &identity.connect_histogram {
            histogram.observe(took.as_secs_f64());
        }
        let sample = took.as_secs_f64();
        let _ =
            identity
                .connect_time_ewma
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                    let next = if bits == NO_SAMPLE {
                        sample
                    } else {
                        let old = f64::from_bits(bits);
                        old + CONNECT_TIME_EWMA_ALPHA * (sample - old)
                    };
                    Some(next.to_bits())
                });
    }

    /// Moving average of connect time in seconds; `None` before the first connect.
    pub fn connect_time_ewma(&self) -> Option<f64> {
        let bits = self.identity.connect_time_ewma.load(Ordering::Relaxed);
        (bits != NO_SAMPLE).then(|| f64::from_bits(bits))
    }
}

/// One active connection to a backend; dropping it releases the slot.
#[derive(Debug)]
pub struct ConnectionGuard {
    backend: Arc<Backend>,
}

impl ConnectionGuard {
    pub fn backend(&self) -> &Arc<Backend> {
        &self.backend
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.backend.identity.active.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(max: usize) -> Arc<Backend> {
        let addr: SocketAddr = "127.0.0.1:1".parse().expect("literal address");
        Arc::new(Backend::new("b", addr, 1).with_max_connections(max))
    }

    #[test]
    fn guard_counts_and_releases() {
        let b = backend(0);
        let g1 = b.try_acquire().expect("unlimited");
        let g2 = b.try_acquire().expect("unlimited");
        assert_eq!(b.active(), 2);
        drop(g1);
        assert_eq!(b.active(), 1);
        drop(g2);
        assert_eq!(b.active(), 0);
        assert_eq!(b.total_connections(), 0, "only successful connects count");
    }

    #[test]
    fn full_backend_refuses_until_a_slot_frees() {
        let b = backend(2);
        let g1 = b.try_acquire().expect("first fits");
        let _g2 = b.try_acquire().expect("second fits");
        assert!(b.try_acquire().is_none());
        assert!(!b.has_capacity());
        drop(g1);
        assert!(b.try_acquire().is_some());
    }

    #[test]
    fn copies_of_one_identity_count_into_the_same_place() {
        let old = backend(0);
        let addr = old.addr();
        let new = Arc::new(Backend::with_identity(Arc::clone(old.identity()), addr, 5));
        let _on_old = old.try_acquire().expect("unlimited");
        let _on_new = new.try_acquire().expect("unlimited");
        old.record_connect_success(Duration::from_millis(1));
        new.record_connect_success(Duration::from_millis(1));
        assert_eq!((old.active(), new.active()), (2, 2));
        assert_eq!(new.total_connections(), 2);
        assert_eq!(new.weight(), 5);
        let closing = old.session_closer();
        new.close_sessions();
        assert!(closing.is_closed(), "closing through one copy closes all");
    }

    #[test]
    fn a_passing_check_that_started_after_an_ejection_ends_it() {
        let addr: SocketAddr = "127.0.0.1:1".parse().expect("literal address");
        let b = Backend::new("b", addr, 1).with_outlier_detection(1, Duration::from_secs(60));
        let before = Instant::now();
        let ejected_at = before + Duration::from_millis(1);
        assert!(b.record_connect_failure(ejected_at));
        let done = ejected_at + Duration::from_millis(2);
        let effect = b.record_check(CheckResult::Success, None, before, done, (2, 3));
        assert!(!effect.ejection_ended && b.is_ejected(done));
        let effect = b.record_check(CheckResult::Success, None, ejected_at, done, (2, 3));
        assert!(effect.ejection_ended && !b.is_ejected(done));
        assert_eq!(b.ejections(), 1);
    }

    #[test]
    fn ewma_starts_at_first_sample_then_moves_by_alpha() {
        let b = backend(0);
        assert_eq!(b.connect_time_ewma(), None);
        b.record_connect_success(Duration::from_millis(100));
        let first = b.connect_time_ewma().expect("one sample");
        assert!((first - 0.1).abs() < 1e-12);
        b.record_connect_success(Duration::from_millis(200));
        let second = b.connect_time_ewma().expect("two samples");
        assert!((second - (0.1 + 0.3 * 0.1)).abs() < 1e-12);
    }
}
