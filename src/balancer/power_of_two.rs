//! `power_of_two`: power of two choices. Two candidates are drawn by weight from the
//! caller's random number (two splitmix64 steps from `ctx.random`), and the one with
//! fewer active connections per unit of weight wins (the first drawn on a tie).
//!
//! An ineligible candidate is dropped; when both are, the pick falls back to the
//! `least_connections` scan over the eligible backends, starting at a position
//! derived from the same random number.

use std::sync::Arc;

use super::least_connections::{Load, least_loaded};
use super::random::WeightedDraw;
use super::{PickContext, Strategy, is_usable, splitmix64};
use crate::backend::Backend;

#[derive(Debug)]
pub struct PowerOfTwo {
    draw: WeightedDraw,
}

impl PowerOfTwo {
    pub fn new(backends: &[Arc<Backend>]) -> PowerOfTwo {
        PowerOfTwo {
            draw: WeightedDraw::new(backends),
        }
    }
}

impl Strategy for PowerOfTwo {
    fn pick(
        &self,
        backends: &[Arc<Backend>],
        ctx: &PickContext,
        eligible: &dyn Fn(usize) -> bool,
    ) -> Option<usize> {
        let mut state = ctx.random;
        let first = self.draw.draw(splitmix64(&mut state))?;
        let second = self.draw.draw(splitmix64(&mut state))?;
        let usable = |i| is_usable(backends, eligible, i);
        match (usable(first), usable(second)) {
            (true, true) => Some(lighter_of(backends, first, second)),
            (true, false) => Some(first),
            (false, true) => Some(second),
            (false, false) => least_loaded(backends, eligible, splitmix64(&mut state) as usize),
        }
    }
}

/// `second` if it is strictly less loaded than `first`, else `first`.
fn lighter_of(backends: &[Arc<Backend>], first: usize, second: usize) -> usize {
    let first_load = Load::of(&backends[first]);
    let second_load = Load::of(&backends[second]);
    if second_load.is_lighter_than(first_load) {
        second
    } else {
        first
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    #[test]
    fn idle_shares_follow_weights() {
        let weights = [1, 2, 3, 4];
        let backends = backends(&weights);
        let counts = pick_counts(&PowerOfTwo::new(&backends), &backends, 40_000, &all);
        assert_shares(&counts, &weights, 0.015);
    }

    #[test]
    fn prefers_the_less_loaded_candidate() {
        let backends = backends(&[1, 1]);
        let _busy: Vec<_> = (0..5).map(|_| backends[0].try_acquire().unwrap()).collect();
        let counts = pick_counts(&PowerOfTwo::new(&backends), &backends, 40_000, &all);
        // The busy backend wins only when both draws land on it: 1 in 4.
        let busy_share = counts[0] as f64 / 40_000.0;
        assert!((busy_share - 0.25).abs() < 0.015, "{counts:?}");
    }

    #[test]
    fn load_is_compared_per_unit_of_weight() {
        let backends = backends(&[10, 1]);
        // 5 of 10 against 1 of 1: the heavy backend is lighter.
        let _heavy: Vec<_> = (0..5).map(|_| backends[0].try_acquire().unwrap()).collect();
        let _light = backends[1].try_acquire().unwrap();
        let counts = pick_counts(&PowerOfTwo::new(&backends), &backends, 20_000, &all);
        // Backend 1 wins only when drawn twice: (1/11)^2.
        assert!(counts[1] < 200, "{counts:?}");
    }

    #[test]
    fn falls_back_to_the_eligible_ones_when_both_candidates_are_not() {
        let backends = backends(&[1000, 1000, 1, 1]);
        let strategy = PowerOfTwo::new(&backends);
        let _busy = backends[2].try_acquire().unwrap();
        let counts = pick_counts(&strategy, &backends, 5_000, &|i| i >= 2);
        assert_eq!(counts[..2], [0, 0]);
        // Backend 2 only when drawn itself (about 1 in 1000); else the idle one.
        assert!(counts[3] >= 4_950, "{counts:?}");
    }

    #[test]
    fn returns_none_when_nothing_is_eligible() {
        let backends = backends(&[1, 2, 3]);
        let strategy = PowerOfTwo::new(&backends);
        for random in 0..100 {
            assert_eq!(
                strategy.pick(&backends, &ctx(client(0), random), &none),
                None
            );
        }
    }
}
