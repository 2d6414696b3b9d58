//! Passive (outlier) ejection from real traffic: a backend whose connects fail
//! `consecutive_failures` times in a row is ejected for `ejection_time`, then
//! offered again. A successful connect resets the count, and with active checks a
//! check that passes having *started after* the ejection began ends it early (the
//! backend demonstrably answers again).
//!
//! The settings (`OutlierSettings`) belong to one configuration of a backend; the
//! state (`OutlierState`: streak, ejection, count of ejections) belongs to its
//! identity and carries across reloads. Pure and lock-free: times are passed in
//! and kept as atomics, because every connect result on the hot path updates it.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Marks "not ejected" in `ejected_until` / `ejected_at`.
const NOT_EJECTED: u64 = 0;

/// `[service.outlier]` as one backend applies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutlierSettings {
    /// Connect failures in a row that eject the backend (at least 1).
    pub threshold: u32,
    pub ejection_time: Duration,
}

#[derive(Debug)]
pub struct OutlierState {
    base: Instant,
    consecutive_failures: AtomicU32,
    /// Nanoseconds after `base` (plus one) when the current ejection began.
    ejected_at: AtomicU64,
    /// Nanoseconds after `base` (plus one) until which the backend is ejected.
    ejected_until: AtomicU64,
    ejections: AtomicU64,
}

impl Default for OutlierState {
    fn default() -> OutlierState {
        OutlierState {
            base: Instant::now(),
            consecutive_failures: AtomicU32::new(0),
            ejected_at: AtomicU64::new(NOT_EJECTED),
            ejected_until: AtomicU64::new(NOT_EJECTED),
            ejections: AtomicU64::new(0),
        }
    }
}

impl OutlierState {
    /// Counts a failed connect; `true` when this failure ejects the backend.
    pub fn record_failure(&self, now: Instant, settings: &OutlierSettings) -> bool {
        let failures = self.consecutive_failures.fetch_add(1, Ordering::AcqRel) + 1;
        if failures < settings.threshold.max(1) || self.is_ejected(now) {
            return false;
        }
        self.consecutive_failures.store(0, Ordering::Release);
        // Saturating: an ejection time past the clock's range ejects for good.
        let ejection = u64::try_from(settings.ejection_time.as_nanos()).unwrap_or(u64::MAX);
        let until = self.stamp(now).saturating_add(ejection);
        self.ejected_at.store(self.stamp(now), Ordering::Release);
        self.ejected_until.store(until, Ordering::Release);
        self.ejections.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Counts a successful connect: the failure streak is over.
    pub fn record_success(&self) {
        if self.consecutive_failures.load(Ordering::Relaxed) != 0 {
            self.consecutive_failures.store(0, Ordering::Release);
        }
    }

    /// A health check that started at `started` passed: ends an ejection that
    /// began before it. `true` when this ended an ejection.
    pub fn record_passing_check(&self, started: Instant, now: Instant) -> bool {
        let at = self.ejected_at.load(Ordering::Acquire);
        if at == NOT_EJECTED || !self.is_ejected(now) || self.stamp(started) < at {
            return false;
        }
        self.clear_ejection();
        true
    }

    /// Whether the backend is out at `now`.
    pub fn is_ejected(&self, now: Instant) -> bool {
        self.ejected_for(now).is_some()
    }

    /// How much longer the current ejection lasts, if the backend is out at `now`.
    pub fn ejected_for(&self, now: Instant) -> Option<Duration> {
        let until = self.ejected_until.load(Ordering::Acquire);
        let now = self.stamp(now);
        (until != NOT_EJECTED && now < until).then(|| Duration::from_nanos(until - now))
    }

    /// The current ejection (an opaque mark that changes with each ejection), if
    /// one is in force at `now`.
    pub fn current_ejection(&self, now: Instant) -> Option<u64> {
        self.is_ejected(now)
            .then(|| self.ejected_until.load(Ordering::Acquire))
    }

    /// Whether the ejection `mark` (from `current_ejection`) ran its full time:
    /// it was neither ended early nor followed by another.
    pub fn ran_out(&self, mark: u64, now: Instant) -> bool {
        self.ejected_until.load(Ordering::Acquire) == mark && !self.is_ejected(now)
    }

    /// Forgets any ejection and streak (passive checks were turned off).
    pub fn reset(&self) {
        self.consecutive_failures.store(0, Ordering::Release);
        self.clear_ejection();
    }

    /// Ejections so far.
    pub fn ejections(&self) -> u64 {
        self.ejections.load(Ordering::Relaxed)
    }

    fn clear_ejection(&self) {
        self.ejected_until.store(NOT_EJECTED, Ordering::Release);
        self.ejected_at.store(NOT_EJECTED, Ordering::Release);
    }

    /// `t` as nanoseconds after `base`, plus one (so that 0 means "never").
    fn stamp(&self, t: Instant) -> u64 {
        let nanos = u64::try_from(t.saturating_duration_since(self.base).as_nanos());
        nanos.unwrap_or(u64::MAX - 1).saturating_add(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(threshold: u32, ejection_time: Duration) -> OutlierSettings {
        OutlierSettings {
            threshold,
            ejection_time,
        }
    }

    #[test]
    fn ejects_after_threshold_failures_in_a_row_and_returns_after_ejection_time() {
        let state = OutlierState::default();
        let s = settings(3, Duration::from_secs(30));
        let now = Instant::now();
        assert!(!state.record_failure(now, &s));
        assert!(!state.record_failure(now, &s));
        assert!(state.record_failure(now, &s));
        assert!(state.is_ejected(now + Duration::from_secs(29)));
        assert!(!state.is_ejected(now + Duration::from_secs(31)));
        assert_eq!(state.ejected_for(now), Some(Duration::from_secs(30)));
        assert_eq!(state.ejections(), 1);
    }

    #[test]
    fn an_ejection_time_past_the_clock_range_ejects_without_overflow() {
        let state = OutlierState::default();
        let now = Instant::now();
        assert!(state.record_failure(now, &settings(1, Duration::MAX)));
        assert!(state.is_ejected(now + Duration::from_secs(3600 * 24 * 365)));
    }

    #[test]
    fn a_success_resets_the_streak() {
        let state = OutlierState::default();
        let s = settings(2, Duration::from_secs(30));
        let now = Instant::now();
        assert!(!state.record_failure(now, &s));
        state.record_success();
        assert!(!state.record_failure(now, &s));
        assert!(!state.is_ejected(now));
        assert!(state.record_failure(now, &s));
    }

    #[test]
    fn after_ejection_a_new_streak_is_needed() {
        let state = OutlierState::default();
        let s = settings(2, Duration::from_millis(10));
        let now = Instant::now();
        state.record_failure(now, &s);
        assert!(state.record_failure(now, &s));
        let later = now + Duration::from_millis(20);
        assert!(!state.is_ejected(later));
        assert!(!state.record_failure(later, &s));
        assert!(state.record_failure(later, &s));
        assert_eq!(state.ejections(), 2);
    }

    #[test]
    fn only_a_check_started_after_the_ejection_ends_it() {
        let state = OutlierState::default();
        let s = settings(1, Duration::from_secs(3600));
        let started_before = Instant::now();
        let ejected = started_before + Duration::from_millis(5);
        assert!(state.record_failure(ejected, &s));
        let done = ejected + Duration::from_millis(5);
        assert!(!state.record_passing_check(started_before, done));
        assert!(state.is_ejected(done));
        let started_after = ejected + Duration::from_millis(1);
        assert!(state.record_passing_check(started_after, done));
        assert!(!state.is_ejected(done));
        assert!(!state.record_passing_check(started_after, done));
        assert_eq!(state.ejections(), 1, "the count stays");
    }
}
