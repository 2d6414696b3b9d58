//! Passive (outlier) ejection from real traffic: a backend whose connects fail
//! `consecutive_failures` times in a row is ejected for `ejection_time`, then
//! offered again. A successful connect resets the count.
//!
//! Pure and lock-free: times are passed in and kept as atomics, because every
//! connect result on the hot path updates this state.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Marks "not ejected" in `ejected_until`.
const NOT_EJECTED: u64 = 0;

#[derive(Debug)]
pub struct OutlierDetector {
    threshold: u32,
    ejection_time: Duration,
    base: Instant,
    consecutive_failures: AtomicU32,
    /// Nanoseconds after `base` (plus one) until which the backend is ejected.
    ejected_until: AtomicU64,
    ejections: AtomicU64,
}

impl OutlierDetector {
    pub fn new(threshold: u32, ejection_time: Duration) -> OutlierDetector {
        OutlierDetector {
            threshold: threshold.max(1),
            ejection_time,
            base: Instant::now(),
            consecutive_failures: AtomicU32::new(0),
            ejected_until: AtomicU64::new(NOT_EJECTED),
            ejections: AtomicU64::new(0),
        }
    }

    /// Counts a failed connect; `true` when this failure ejects the backend.
    pub fn record_failure(&self, now: Instant) -> bool {
        let failures = self.consecutive_failures.fetch_add(1, Ordering::AcqRel) + 1;
        if failures < self.threshold || self.is_ejected(now) {
            return false;
        }
        self.consecutive_failures.store(0, Ordering::Release);
        let ejection = u64::try_from(self.ejection_time.as_nanos()).unwrap_or(u64::MAX);
        let until = self
            .nanos_since_base(now)
            .saturating_add(ejection)
            .saturating_add(1);
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

    /// Whether the backend is out at `now`.
    pub fn is_ejected(&self, now: Instant) -> bool {
        let until = self.ejected_until.load(Ordering::Acquire);
        until != NOT_EJECTED && self.nanos_since_base(now) < until - 1
    }

    /// Ejections so far.
    pub fn ejections(&self) -> u64 {
        self.ejections.load(Ordering::Relaxed)
    }

    fn nanos_since_base(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.base).as_nanos() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ejects_after_threshold_failures_in_a_row_and_returns_after_ejection_time() {
        let detector = OutlierDetector::new(3, Duration::from_secs(30));
        let now = Instant::now();
        assert!(!detector.record_failure(now));
        assert!(!detector.record_failure(now));
        assert!(detector.record_failure(now));
        assert!(detector.is_ejected(now + Duration::from_secs(29)));
        assert!(!detector.is_ejected(now + Duration::from_secs(31)));
        assert_eq!(detector.ejections(), 1);
    }

    #[test]
    fn an_ejection_time_past_the_clock_range_ejects_without_overflow() {
        let detector = OutlierDetector::new(1, Duration::MAX);
        let now = Instant::now();
        assert!(detector.record_failure(now));
        assert!(detector.is_ejected(now + Duration::from_secs(3600 * 24 * 365)));
    }

    #[test]
    fn a_success_resets_the_streak() {
        let detector = OutlierDetector::new(2, Duration::from_secs(30));
        let now = Instant::now();
        assert!(!detector.record_failure(now));
        detector.record_success();
        assert!(!detector.record_failure(now));
        assert!(!detector.is_ejected(now));
        assert!(detector.record_failure(now));
    }

    #[test]
    fn after_ejection_a_new_streak_is_needed() {
        let detector = OutlierDetector::new(2, Duration::from_millis(10));
        let now = Instant::now();
        detector.record_failure(now);
        assert!(detector.record_failure(now));
        let later = now + Duration::from_millis(20);
        assert!(!detector.is_ejected(later));
        assert!(!detector.record_failure(later));
        assert!(detector.record_failure(later));
        assert_eq!(detector.ejections(), 2);
    }
}
