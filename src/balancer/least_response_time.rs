//! `least_response_time`: the eligible backend with the lowest expected wait,
//! `connect_time_ewma × (active + 1) / weight`.
//!
//! A backend with no connect time measured yet scores 0, so new backends are tried
//! first. Equal scores (all unmeasured backends, for one) go to the one with fewer
//! active connections per unit of weight; backends equal on both take turns, since
//! each pick starts its scan one backend further on.
//!
//! Cost: O(N), one read of every backend's counters per pick (they change with
//! every connection). `eligible` is asked only about a backend that would become
//! the best so far, which gives the same answer as asking about every one.

use std::cmp::Ordering as Order;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::least_connections::Load;
use super::{PickContext, Strategy};
use crate::backend::Backend;

#[derive(Debug, Default)]
pub struct LeastResponseTime {
    /// Where the next scan starts (taken modulo the backend count).
    rotation: AtomicUsize,
}

impl LeastResponseTime {
    pub fn new() -> LeastResponseTime {
        LeastResponseTime::default()
    }
}

impl Strategy for LeastResponseTime {
    fn pick(
        &self,
        backends: &[Arc<Backend>],
        _ctx: &PickContext,
        eligible: &dyn Fn(usize) -> bool,
    ) -> Option<usize> {
        let count = backends.len();
        if count == 0 {
            return None;
        }
        let start = self.rotation.fetch_add(1, Ordering::Relaxed) % count;
        let mut best = None;
        let (before, from_start) = backends.split_at(start);
        scan(from_start, start, eligible, &mut best);
        scan(before, 0, eligible, &mut best);
        best.map(|(index, _)| index)
    }
}

/// Folds `backends` (the first being index `offset`) into `best`, the first
/// eligible backend of best rank seen so far.
fn scan(
    backends: &[Arc<Backend>],
    offset: usize,
    eligible: &dyn Fn(usize) -> bool,
    best: &mut Option<(usize, Rank)>,
) {
    for (i, backend) in backends.iter().enumerate() {
        let rank = Rank::of(backend);
        let better = best.is_none_or(|(_, fastest)| rank.is_better_than(fastest));
        if better && eligible(offset + i) {
            *best = Some((offset + i, rank));
        }
    }
}

/// What the strategy compares backends by, read once per pick.
#[derive(Debug, Clone, Copy)]
struct Rank {
    /// Expected seconds until a new connection is up.
    score: f64,
    load: Load,
}

impl Rank {
    #[inline]
    fn of(backend: &Backend) -> Rank {
        let ewma = backend.connect_time_ewma().unwrap_or(0.0);
        let load = Load::of(backend);
        Rank {
            score: ewma * load.queued() / load.weight(),
            load,
        }
    }

    fn is_better_than(self, other: Rank) -> bool {
        match self.score.total_cmp(&other.score) {
            Order::Less => true,
            Order::Greater => false,
            Order::Equal => self.load.is_lighter_than(other.load),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;
    use std::time::Duration;

    fn pick(strategy: &LeastResponseTime, backends: &[Arc<Backend>]) -> Option<usize> {
        strategy.pick(backends, &ctx(client(0), 0), &all)
    }

    fn measured(weights: &[u32], millis: &[u64]) -> Vec<Arc<Backend>> {
        let backends = backends(weights);
        for (backend, &ms) in backends.iter().zip(millis) {
            backend.record_connect_success(Duration::from_millis(ms));
        }
        backends
    }

    #[test]
    fn prefers_lower_connect_time() {
        let backends = measured(&[1, 1, 1], &[100, 10, 50]);
        let strategy = LeastResponseTime::new();
        for _ in 0..5 {
            assert_eq!(pick(&strategy, &backends), Some(1));
        }
    }

    #[test]
    fn accounts_active_connections() {
        let backends = measured(&[1, 1], &[100, 10]);
        let strategy = LeastResponseTime::new();
        // 10 ms × 21 queued beats 100 ms × 1 no more.
        let _busy: Vec<_> = (0..20)
            .map(|_| backends[1].try_acquire().unwrap())
            .collect();
        assert_eq!(pick(&strategy, &backends), Some(0));
    }

    #[test]
    fn divides_by_weight() {
        let backends = measured(&[10, 1], &[50, 10]);
        let strategy = LeastResponseTime::new();
        assert_eq!(pick(&strategy, &backends), Some(0));
    }

    #[test]
    fn unmeasured_backends_are_tried_first() {
        let backends = measured(&[1, 1, 1], &[1, 1]);
        let strategy = LeastResponseTime::new();
        assert_eq!(pick(&strategy, &backends), Some(2));
    }

    #[test]
    fn ties_go_to_the_lighter_then_rotate() {
        let backends = backends(&[1, 1, 1]);
        let strategy = LeastResponseTime::new();
        let picked: Vec<_> = (0..6).filter_map(|_| pick(&strategy, &backends)).collect();
        assert_eq!(picked, [0, 1, 2, 0, 1, 2]);
        let _busy = backends[0].try_acquire().unwrap();
        let picked: Vec<_> = (0..6).filter_map(|_| pick(&strategy, &backends)).collect();
        assert!(!picked.contains(&0), "{picked:?}");
        assert!(picked.contains(&1) && picked.contains(&2), "{picked:?}");
    }

    #[test]
    fn skips_ineligible_and_returns_none_when_nothing_is_eligible() {
        let backends = measured(&[1, 1], &[100, 10]);
        let strategy = LeastResponseTime::new();
        let ctx = ctx(client(0), 0);
        assert_eq!(strategy.pick(&backends, &ctx, &|i| i == 0), Some(0));
        assert_eq!(strategy.pick(&backends, &ctx, &none), None);
        assert_eq!(strategy.pick(&[], &ctx, &all), None);
    }
}
