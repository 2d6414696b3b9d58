//! `random`: a weighted random backend, drawn from the caller's random number.
//!
//! The draw is a binary search in the prefix sums of the weights. When the drawn
//! backend is ineligible, one weighted draw among the eligible backends replaces it
//! (a single O(N) pass that asks `eligible` once per backend). Same `ctx.random`,
//! same eligibility: same pick. Also owns `WeightedDraw`, which `power_of_two`
//! uses for its candidates.

use std::fmt;
use std::sync::Arc;

use super::{PickContext, Strategy, is_usable, scale_to, splitmix64};
use crate::backend::Backend;

#[derive(Debug)]
pub struct Random {
    draw: WeightedDraw,
}

impl Random {
    pub fn new(backends: &[Arc<Backend>]) -> Random {
        Random {
            draw: WeightedDraw::new(backends),
        }
    }
}

impl Strategy for Random {
    fn pick(
        &self,
        backends: &[Arc<Backend>],
        ctx: &PickContext,
        eligible: &dyn Fn(usize) -> bool,
    ) -> Option<usize> {
        let mut state = ctx.random;
        let drawn = self.draw.draw(splitmix64(&mut state))?;
        if is_usable(backends, eligible, drawn) {
            return Some(drawn);
        }
        weighted_among_eligible(backends, eligible, state)
    }
}

/// Weighted draws over the backends a strategy was built for.
pub(super) struct WeightedDraw {
    /// `cumulative[i]`: sum of the weights of backends `0..=i`.
    cumulative: Vec<u64>,
}

impl WeightedDraw {
    pub fn new(backends: &[Arc<Backend>]) -> WeightedDraw {
        let cumulative = backends
            .iter()
            .scan(0u64, |sum, backend| {
                *sum += u64::from(backend.weight());
                Some(*sum)
            })
            .collect();
        WeightedDraw { cumulative }
    }

    /// The backend a uniform 64-bit `value` falls on, each with probability
    /// weight / total; `None` when there are no backends.
    pub fn draw(&self, value: u64) -> Option<usize> {
        let total = *self.cumulative.last()?;
        let target = scale_to(value, total);
        Some(self.cumulative.partition_point(|&sum| sum <= target))
    }
}

impl fmt::Debug for WeightedDraw {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WeightedDraw")
            .field("backends", &self.cumulative.len())
            .field(
                "total_weight",
                &self.cumulative.last().copied().unwrap_or(0),
            )
            .finish()
    }
}

/// One weighted draw among the eligible backends, in a single pass: each eligible
/// backend replaces the choice so far with probability weight / weight seen so far
/// (which leaves each with probability weight / eligible total). `seed` drives the
/// draw deterministically.
fn weighted_among_eligible(
    backends: &[Arc<Backend>],
    eligible: &dyn Fn(usize) -> bool,
    seed: u64,
) -> Option<usize> {
    let mut state = seed;
    let mut weight_seen = 0u64;
    let mut chosen = None;
    for (index, backend) in backends.iter().enumerate() {
        if !eligible(index) {
            continue;
        }
        let weight = u64::from(backend.weight());
        weight_seen += weight;
        if scale_to(splitmix64(&mut state), weight_seen) < weight {
            chosen = Some(index);
        }
    }
    chosen
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    #[test]
    fn shares_follow_weights() {
        let weights = [1, 2, 3, 4];
        let backends = backends(&weights);
        let counts = pick_counts(&Random::new(&backends), &backends, 40_000, &all);
        assert_shares(&counts, &weights, 0.015);
    }

    #[test]
    fn heavy_weight_dominates() {
        let weights = [1000, 1, 1];
        let backends = backends(&weights);
        let counts = pick_counts(&Random::new(&backends), &backends, 20_000, &all);
        assert_shares(&counts, &weights, 0.005);
    }

    #[test]
    fn ineligible_draws_are_redrawn_by_weight_among_the_rest() {
        let backends = backends(&[4, 1, 3]);
        let eligible = |i| i != 0;
        let counts = pick_counts(&Random::new(&backends), &backends, 40_000, &eligible);
        assert_eq!(counts[0], 0);
        assert_shares(&counts[1..], &[1, 3], 0.015);
    }

    #[test]
    fn same_random_same_pick() {
        let backends = backends(&[3, 5, 7, 9]);
        let a = Random::new(&backends);
        let b = Random::new(&backends);
        let eligible = |i| i != 1;
        let mut rng = SplitMix(9);
        for _ in 0..1000 {
            let ctx = ctx(client(0), rng.next());
            assert_eq!(
                a.pick(&backends, &ctx, &eligible),
                b.pick(&backends, &ctx, &eligible)
            );
        }
    }

    #[test]
    fn returns_none_when_nothing_is_eligible() {
        let backends = backends(&[1, 2]);
        let strategy = Random::new(&backends);
        for random in 0..100 {
            assert_eq!(
                strategy.pick(&backends, &ctx(client(0), random), &none),
                None
            );
        }
    }
}
