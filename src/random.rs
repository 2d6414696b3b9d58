//! Fast per-thread pseudo-random numbers for load balancing decisions (splitmix64,
//! seeded from the OS-keyed std hasher). Not for anything secret.

use std::cell::Cell;
use std::hash::{BuildHasher, RandomState};

thread_local! {
    static STATE: Cell<u64> = Cell::new(RandomState::new().hash_one(0u64) | 1);
}

/// The next pseudo-random number of this thread.
pub fn next_u64() -> u64 {
    STATE.with(|state| {
        let next = state.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
        state.set(next);
        let mut z = next;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    })
}

/// `base` stretched or shrunk by up to ±`spread` (0.0..1.0), at random.
pub fn jitter(base: std::time::Duration, spread: f64) -> std::time::Duration {
    jitter_with(base, spread, next_u64())
}

/// `jitter` with the random number `draw` given: the pure core.
pub fn jitter_with(base: std::time::Duration, spread: f64, draw: u64) -> std::time::Duration {
    let unit = draw as f64 / u64::MAX as f64; // 0.0..=1.0
    let seconds = base.as_secs_f64() * (1.0 + spread * (2.0 * unit - 1.0));
    std::time::Duration::try_from_secs_f64(seconds).unwrap_or(std::time::Duration::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn numbers_differ_from_call_to_call() {
        let draws: std::collections::HashSet<u64> = (0..1000).map(|_| next_u64()).collect();
        assert_eq!(draws.len(), 1000);
    }

    #[test]
    fn jitter_of_the_longest_duration_does_not_overflow() {
        for _ in 0..100 {
            assert!(jitter(Duration::MAX, 0.1) >= Duration::MAX / 10 * 8);
        }
    }

    #[test]
    fn jitter_stays_within_its_spread() {
        let base = Duration::from_millis(1000);
        for _ in 0..1000 {
            let d = jitter(base, 0.1);
            assert!(
                d >= Duration::from_millis(900) && d <= Duration::from_millis(1100),
                "{d:?}"
            );
        }
    }
}
