//! Keeps a repeating warning (a flood of rejected clients, a backend refusing every
//! connect) from flooding the log: at most one line per interval, and that line
//! says how many were held back since the last one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct LogThrottle {
    start: Instant,
    interval: Duration,
    /// Milliseconds since `start` of the next allowed line.
    next_allowed_ms: AtomicU64,
    suppressed: AtomicU64,
}

impl LogThrottle {
    pub fn new(interval: Duration) -> LogThrottle {
        LogThrottle {
            start: Instant::now(),
            interval,
            next_allowed_ms: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(held_back)` when a line may be written now (with the number of lines
    /// held back since the last one), `None` when this one should be held back.
    pub fn permit(&self) -> Option<u64> {
        let now_ms = self.start.elapsed().as_millis() as u64;
        let next = self.next_allowed_ms.load(Ordering::Relaxed);
        let later = now_ms + self.interval.as_millis() as u64;
        let won = now_ms >= next
            && self
                .next_allowed_ms
                .compare_exchange(next, later, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok();
        if won {
            Some(self.suppressed.swap(0, Ordering::Relaxed))
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_line_passes_then_repeats_are_counted() {
        let throttle = LogThrottle::new(Duration::from_secs(3600));
        assert_eq!(throttle.permit(), Some(0));
        assert_eq!(throttle.permit(), None);
        assert_eq!(throttle.permit(), None);
        assert_eq!(throttle.suppressed.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn a_zero_interval_lets_every_line_through() {
        let throttle = LogThrottle::new(Duration::ZERO);
        assert_eq!(throttle.permit(), Some(0));
        assert_eq!(throttle.permit(), Some(0));
    }
}
