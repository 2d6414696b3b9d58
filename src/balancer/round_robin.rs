//! `round_robin`: nginx's smooth weighted round robin, lock-free.
//!
//! One full cycle of the smooth sequence (length: sum of weights / gcd of weights)
//! is computed at build time; `pick` takes the next entry from an atomic cursor. An
//! ineligible entry is skipped in sequence order and the cursor is moved past the
//! entry chosen, so the remaining backends keep their relative shares.
//!
//! Limits: the cycle holds at most `MAX_CYCLE_LEN` entries (4 MiB of `u32`), and
//! computing it takes cycle length × distinct weights steps, at most
//! `MAX_BUILD_STEPS` (well under 100 ms). Every set of at most 1000 backends with
//! weights up to 1000 and at most 64 distinct weights fits and is exact. Weights
//! that do not fit (hundreds of different, coprime weights) are scaled down
//! proportionally, every backend keeping a weight of at least 1; their shares are
//! then approximate.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::sequence::CyclicSequence;
use super::{PickContext, Strategy, is_usable, table_index};
use crate::backend::Backend;

/// Most entries one cycle may hold.
const MAX_CYCLE_LEN: u64 = 1 << 20;

/// Most (entry × distinct weight) steps computing one cycle may take.
const MAX_BUILD_STEPS: u64 = 1 << 26;

pub struct RoundRobin {
    cycle: CyclicSequence,
    /// Position in `cycle` of the next pick (taken modulo the cycle length).
    cursor: AtomicUsize,
}

impl RoundRobin {
    pub fn new(backends: &[Arc<Backend>]) -> RoundRobin {
        let weights: Vec<u32> = backends.iter().map(|b| b.weight()).collect();
        let cycle = smooth_cycle(&fit_weights(&weights));
        RoundRobin {
            cycle: CyclicSequence::new(cycle, backends.len()),
            cursor: AtomicUsize::new(0),
        }
    }
}

impl Strategy for RoundRobin {
    fn pick(
        &self,
        backends: &[Arc<Backend>],
        _ctx: &PickContext,
        eligible: &dyn Fn(usize) -> bool,
    ) -> Option<usize> {
        let len = self.cycle.len();
        if len == 0 {
            return None;
        }
        let start = self.cursor.fetch_add(1, Ordering::Relaxed) % len;
        let usable = |i| is_usable(backends, eligible, i);
        let found = self.cycle.first_usable_from(start, usable)?;
        if found.distance > 0 {
            self.cursor.fetch_add(found.distance, Ordering::Relaxed);
        }
        Some(found.backend)
    }
}

impl fmt::Debug for RoundRobin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RoundRobin")
            .field("cycle_len", &self.cycle.len())
            .field("cursor", &self.cursor.load(Ordering::Relaxed))
            .finish()
    }
}

/// The weights the cycle is built from: divided by their gcd, then scaled down
/// until the cycle fits `MAX_CYCLE_LEN` and `MAX_BUILD_STEPS` (or all are 1).
fn fit_weights(weights: &[u32]) -> Vec<u32> {
    let mut fitted = reduce_by_gcd(weights);
    loop {
        let len = cycle_len(&fitted);
        let steps = len.saturating_mul(distinct_count(&fitted));
        if (len <= MAX_CYCLE_LEN && steps <= MAX_BUILD_STEPS) || fitted.iter().all(|&w| w == 1) {
            return fitted;
        }
        let factor = f64::min(
            MAX_CYCLE_LEN as f64 / len as f64,
            MAX_BUILD_STEPS as f64 / steps as f64,
        );
        let scaled = scale(&fitted, factor, f64::round);
        // factor < 1, so flooring shrinks every weight above 1: the loop ends.
        let scaled = if scaled == fitted {
            scale(&fitted, factor, f64::floor)
        } else {
            scaled
        };
        fitted = reduce_by_gcd(&scaled);
    }
}

/// Each weight times `factor`, rounded by `round`, kept within `1..=weight`.
fn scale(weights: &[u32], factor: f64, round: fn(f64) -> f64) -> Vec<u32> {
    weights
        .iter()
        .map(|&w| (round(f64::from(w) * factor) as u32).clamp(1, w))
        .collect()
}

fn reduce_by_gcd(weights: &[u32]) -> Vec<u32> {
    let divisor = weights.iter().fold(0, |acc, &w| gcd(acc, w)).max(1);
    weights.iter().map(|&w| w / divisor).collect()
}

fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

fn cycle_len(weights: &[u32]) -> u64 {
    weights.iter().map(|&w| u64::from(w)).sum()
}

fn distinct_count(weights: &[u32]) -> u64 {
    let mut sorted = weights.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    sorted.len() as u64
}

/// The smooth round robin's state, one entry per distinct weight (a class).
///
/// Backends of one weight take turns in index order, so a class needs only the
/// current weight of its next member (its leader): it drops by the total weight
/// once every member has had its turn; until then the next member, still at the
/// old value, leads. Kept as parallel vectors so the per-step loops vectorize.
struct SmoothState {
    total: i64,
    /// Each class's weight, ascending.
    weights: Vec<i64>,
    /// nginx's `current_weight` of each class's leader.
    currents: Vec<i64>,
    /// Each class's backend indices, ascending.
    members: Vec<Vec<u32>>,
    /// Entries each class has had so far.
    turns: Vec<usize>,
}

impl SmoothState {
    fn new(weights: &[u32]) -> SmoothState {
        let mut by_weight: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
        for (index, &weight) in weights.iter().enumerate() {
            by_weight
                .entry(weight)
                .or_default()
                .push(table_index(index));
        }
        let class_count = by_weight.len();
        let (class_weights, members) = by_weight
            .into_iter()
            .map(|(weight, members)| (i64::from(weight), members))
            .unzip();
        SmoothState {
            total: weights.iter().map(|&w| i64::from(w)).sum(),
            weights: class_weights,
            currents: vec![0; class_count],
            members,
            turns: vec![0; class_count],
        }
    }

    fn leader(&self, class: usize) -> u32 {
        let members = &self.members[class];
        members[self.turns[class] % members.len()]
    }

    /// One step: every current weight grows by its weight; the highest (lowest
    /// backend index on ties) is chosen.
    fn step(&mut self) -> Option<u32> {
        let mut top = i64::MIN;
        for (current, weight) in self.currents.iter_mut().zip(&self.weights) {
            *current += weight;
            top = top.max(*current);
        }
        let mut at_top = self.currents.iter().enumerate().filter(|&(_, &c)| c == top);
        let (first, _) = at_top.next()?;
        let class = at_top.fold(first, |best, (class, _)| {
            if self.leader(class) < self.leader(best) {
                class
            } else {
                best
            }
        });
        Some(self.take_turn(class))
    }

    fn take_turn(&mut self, class: usize) -> u32 {
        let leader = self.leader(class);
        self.turns[class] += 1;
        if self.turns[class].is_multiple_of(self.members[class].len()) {
            self.currents[class] -= self.total;
        }
        leader
    }
}

/// One full cycle of nginx's smooth weighted round robin: each step every backend's
/// current weight grows by its weight, the highest (lowest index on ties) is chosen
/// and loses the total weight.
fn smooth_cycle(weights: &[u32]) -> Vec<u32> {
    let mut state = SmoothState::new(weights);
    let len = usize::try_from(state.total).unwrap_or(0);
    (0..len).map_while(|_| state.step()).collect()
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    fn picks(weights: &[u32], count: usize, eligible: &dyn Fn(usize) -> bool) -> Vec<usize> {
        let backends = backends(weights);
        let strategy = RoundRobin::new(&backends);
        let ctx = ctx(client(0), 0);
        (0..count)
            .filter_map(|_| strategy.pick(&backends, &ctx, eligible))
            .collect()
    }

    /// nginx's original O(N)-per-step algorithm, as the reference.
    fn nginx_reference(weights: &[u32], steps: usize) -> Vec<u32> {
        let total: i64 = weights.iter().map(|&w| i64::from(w)).sum();
        let mut current = vec![0i64; weights.len()];
        let mut sequence = Vec::new();
        for _ in 0..steps {
            let mut best = 0;
            for i in 0..weights.len() {
                current[i] += i64::from(weights[i]);
                if current[i] > current[best] {
                    best = i;
                }
            }
            current[best] -= total;
            sequence.push(best as u32);
        }
        sequence
    }

    #[test]
    fn weights_5_1_1_give_the_nginx_sequence() {
        assert_eq!(picks(&[5, 1, 1], 7, &all), [0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn matches_the_nginx_algorithm() {
        let cases: [&[u32]; 5] = [
            &[5, 1, 1],
            &[3, 7, 3, 7, 1],
            &[1, 1, 1, 1],
            &[10, 9, 8, 9, 10, 1],
            &[1000, 999, 1, 500, 999],
        ];
        for weights in cases {
            let len = cycle_len(&reduce_by_gcd(weights)) as usize;
            assert_eq!(
                smooth_cycle(&fit_weights(weights)),
                nginx_reference(weights, len),
                "{weights:?}"
            );
        }
    }

    #[test]
    fn full_cycles_give_exact_weighted_shares() {
        let weights = [3, 1, 2, 4, 4];
        let cycles = 5;
        let picked = picks(&weights, 14 * cycles, &all);
        for (i, &weight) in weights.iter().enumerate() {
            let count = picked.iter().filter(|&&p| p == i).count();
            assert_eq!(count, weight as usize * cycles, "backend {i}");
        }
    }

    #[test]
    fn concurrent_picks_keep_exact_shares() {
        let backends = backends(&[5, 1, 1]);
        let strategy = RoundRobin::new(&backends);
        let counts: Vec<[usize; 3]> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..4)
                .map(|_| {
                    scope.spawn(|| {
                        let mut counts = [0; 3];
                        for _ in 0..7_000 {
                            let i = strategy.pick(&backends, &ctx(client(0), 0), &all).unwrap();
                            counts[i] += 1;
                        }
                        counts
                    })
                })
                .collect();
            workers.into_iter().map(|w| w.join().unwrap()).collect()
        });
        let total = counts.iter().fold([0; 3], |sum, c| {
            [sum[0] + c[0], sum[1] + c[1], sum[2] + c[2]]
        });
        assert_eq!(total, [20_000, 4_000, 4_000]);
    }

    #[test]
    fn cycle_length_is_sum_over_gcd() {
        let cycle_of = |weights: &[u32]| RoundRobin::new(&backends(weights)).cycle.len();
        assert_eq!(cycle_of(&[2, 4, 6]), 6);
        assert_eq!(cycle_of(&[1000; 40]), 40);
        assert_eq!(cycle_of(&[5, 1, 1]), 7);
    }

    #[test]
    fn skips_ineligible_backends_and_shares_among_the_rest() {
        let picked = picks(&[5, 1, 1], 100, &|i| i != 0);
        assert_eq!(picked.len(), 100);
        assert!(picked.iter().all(|&i| i != 0));
        let to_b = picked.iter().filter(|&&i| i == 1).count();
        assert_eq!(to_b, 50);
    }

    #[test]
    fn returns_none_when_nothing_is_eligible() {
        assert!(picks(&[5, 1, 1], 10, &none).is_empty());
        assert!(picks(&[], 10, &all).is_empty());
    }

    #[test]
    fn sixty_four_distinct_weights_of_a_thousand_backends_stay_exact() {
        let weights: Vec<u32> = (0..1000).map(|i| 1000 - (i % 64)).collect();
        assert_eq!(fit_weights(&weights), weights);
    }

    #[test]
    fn many_distinct_weights_are_scaled_to_fit_and_keep_every_backend() {
        for weights in [(1..=1000).collect::<Vec<u32>>(), (1..=5000).collect()] {
            let fitted = fit_weights(&weights);
            let len = cycle_len(&fitted);
            assert!(len <= MAX_CYCLE_LEN);
            assert!(len * distinct_count(&fitted) <= MAX_BUILD_STEPS);
            assert!(fitted.iter().all(|&w| w >= 1));
            assert!(fitted.windows(2).all(|pair| pair[0] <= pair[1]));
        }
    }

    #[test]
    fn scaled_weights_keep_heavy_shares_close() {
        let weights: Vec<u32> = (1..=1000).collect();
        let fitted = fit_weights(&weights);
        let (len, ideal_len) = (cycle_len(&fitted), cycle_len(&weights));
        for i in [99, 499, 999] {
            let share = f64::from(fitted[i]) / len as f64;
            let ideal = f64::from(weights[i]) / ideal_len as f64;
            assert!(
                (share / ideal - 1.0).abs() < 0.05,
                "{i}: {share} vs {ideal}"
            );
        }
    }

    #[test]
    fn more_backends_than_the_cycle_cap_get_one_entry_each() {
        let weights = vec![3; MAX_CYCLE_LEN as usize + 10];
        assert_eq!(fit_weights(&weights), vec![1; weights.len()]);
        let mixed: Vec<u32> = (0..MAX_CYCLE_LEN as u32 + 10).map(|i| 1 + i % 2).collect();
        assert!(fit_weights(&mixed).iter().all(|&w| w == 1));
    }

    #[test]
    fn a_thousand_equal_backends_build_one_entry_each() {
        let weights = vec![1000; 1000];
        let strategy = RoundRobin::new(&backends(&weights));
        assert_eq!(strategy.cycle.len(), 1000);
    }
}
