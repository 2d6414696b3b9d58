//! Slow start: after a backend comes back up, its share of new clients ramps
//! linearly from `MIN_SHARE` to its full weight over the window, so a cold cache or
//! a freshly restarted database is not handed a flood at once.
//!
//! Applied as admission: while ramping, each pick may use the backend with
//! probability equal to the ramp fraction, which scales its effective weight by
//! that fraction for every non-hashing strategy. Pure: time and randomness are passed in.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Share of its weight a backend gets at the very start of its ramp.
pub const MIN_SHARE: f64 = 0.05;

/// Marks "not ramping".
const NOT_RAMPING: u64 = u64::MAX;

#[derive(Debug)]
pub struct SlowStart {
    window: Duration,
    base: Instant,
    /// Nanoseconds after `base` at which the current ramp began.
    ramp_start: AtomicU64,
}

impl SlowStart {
    pub fn new(window: Duration) -> SlowStart {
        SlowStart {
            window,
            base: Instant::now(),
            ramp_start: AtomicU64::new(NOT_RAMPING),
        }
    }

    /// Starts a ramp at `now` (the backend just came up).
    pub fn begin(&self, now: Instant) {
        let nanos = now.saturating_duration_since(self.base).as_nanos() as u64;
        self.ramp_start.store(nanos, Ordering::Release);
    }

    /// Fraction of its weight the backend gets at `now`, in `MIN_SHARE..=1.0`.
    pub fn share(&self, now: Instant) -> f64 {
        let start = self.ramp_start.load(Ordering::Acquire);
        if start == NOT_RAMPING || self.window.is_zero() {
            return 1.0;
        }
        let since_base = now.saturating_duration_since(self.base).as_nanos() as u64;
        let elapsed = since_base.saturating_sub(start) as f64;
        let fraction = elapsed / self.window.as_nanos() as f64;
        if fraction >= 1.0 {
            self.ramp_start.store(NOT_RAMPING, Ordering::Release);
            return 1.0;
        }
        fraction.max(MIN_SHARE)
    }

    /// Whether a pick with this `random` number may use the backend at `now`.
    pub fn admits(&self, now: Instant, random: u64) -> bool {
        let share = self.share(now);
        share >= 1.0 || (random as f64 / u64::MAX as f64) < share
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_share_until_a_ramp_begins() {
        let slow = SlowStart::new(Duration::from_secs(10));
        assert_eq!(slow.share(Instant::now()), 1.0);
    }

    #[test]
    fn share_ramps_linearly_over_the_window() {
        let slow = SlowStart::new(Duration::from_secs(10));
        let start = Instant::now();
        slow.begin(start);
        assert_eq!(slow.share(start), MIN_SHARE);
        let half = slow.share(start + Duration::from_secs(5));
        assert!((half - 0.5).abs() < 1e-9, "{half}");
        assert_eq!(slow.share(start + Duration::from_secs(11)), 1.0);
    }

    #[test]
    fn admission_rate_follows_the_share() {
        let slow = SlowStart::new(Duration::from_secs(10));
        let start = Instant::now();
        slow.begin(start);
        let at = start + Duration::from_secs(3);
        let step = u64::MAX / 10_000;
        let admitted = (0..10_000u64).filter(|i| slow.admits(at, i * step)).count();
        assert!((2_900..=3_100).contains(&admitted), "{admitted}");
    }
}
