//! `least_connections`: the eligible backend with the fewest active connections per
//! unit of weight.
//!
//! Loads are compared exactly, with integers: backend i is lighter than j when
//! `active_i × weight_j < active_j × weight_i`. Equally loaded backends take turns:
//! each pick starts its scan one backend further on, and the first of the lightest
//! wins. Also owns `Load` and `least_loaded`, which `power_of_two` and
//! `least_response_time` share.
//!
//! Cost: the counts live in the backends and change with every connection, so a
//! pick reads them all, O(N). The scan asks `eligible` only about a backend that
//! would become the lightest so far (the same answer as asking first), and stops at
//! the first eligible backend with no active connection, which nothing can beat.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::{PickContext, Strategy};
use crate::backend::Backend;

#[derive(Debug, Default)]
pub struct LeastConnections {
    /// Where the next scan starts (taken modulo the backend count).
    rotation: AtomicUsize,
}

impl LeastConnections {
    pub fn new() -> LeastConnections {
        LeastConnections::default()
    }
}

impl Strategy for LeastConnections {
    fn pick(
        &self,
        backends: &[Arc<Backend>],
        _ctx: &PickContext,
        eligible: &dyn Fn(usize) -> bool,
    ) -> Option<usize> {
        let start = self.rotation.fetch_add(1, Ordering::Relaxed);
        least_loaded(backends, eligible, start)
    }
}

/// A backend's active connections and weight, read once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Load {
    active: u64,
    weight: u64,
}

impl Load {
    #[inline]
    pub fn of(backend: &Backend) -> Load {
        Load {
            active: backend.active() as u64,
            weight: u64::from(backend.weight()),
        }
    }

    /// Active connections plus the one about to be opened, as a float.
    pub fn queued(self) -> f64 {
        self.active as f64 + 1.0
    }

    pub fn weight(self) -> f64 {
        self.weight as f64
    }

    /// Whether this backend carries fewer connections per unit of weight.
    #[inline]
    pub fn is_lighter_than(self, other: Load) -> bool {
        u128::from(self.active) * u128::from(other.weight)
            < u128::from(other.active) * u128::from(self.weight)
    }
}

/// The eligible backend with the lowest load, scanning from `start` (modulo the
/// count) so that the first of equally loaded backends varies with `start`.
pub(super) fn least_loaded(
    backends: &[Arc<Backend>],
    eligible: &dyn Fn(usize) -> bool,
    start: usize,
) -> Option<usize> {
    let count = backends.len();
    if count == 0 {
        return None;
    }
    let start = start % count;
    let mut best = None;
    let (before, from_start) = backends.split_at(start);
    if scan(from_start, start, eligible, &mut best) == Scan::Unbeatable {
        return best.map(|(index, _)| index);
    }
    scan(before, 0, eligible, &mut best);
    best.map(|(index, _)| index)
}

/// Whether a scan can stop early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scan {
    Unbeatable,
    Go,
}

/// Folds `backends` (the first being index `offset`) into `best`, the first
/// eligible backend of lowest load seen so far. Stops when `best` carries no
/// connections: no later backend can be strictly lighter.
fn scan(
    backends: &[Arc<Backend>],
    offset: usize,
    eligible: &dyn Fn(usize) -> bool,
    best: &mut Option<(usize, Load)>,
) -> Scan {
    for (i, backend) in backends.iter().enumerate() {
        let load = Load::of(backend);
        let lighter = best.is_none_or(|(_, lightest)| load.is_lighter_than(lightest));
        if lighter && eligible(offset + i) {
            *best = Some((offset + i, load));
            if load.active == 0 {
                return Scan::Unbeatable;
            }
        }
    }
    Scan::Go
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;
    use crate::backend::ConnectionGuard;

    fn hold(backend: &Arc<Backend>, count: usize) -> Vec<ConnectionGuard> {
        (0..count).map(|_| backend.try_acquire().unwrap()).collect()
    }

    fn pick(strategy: &LeastConnections, backends: &[Arc<Backend>]) -> Option<usize> {
        strategy.pick(backends, &ctx(client(0), 0), &all)
    }

    #[test]
    fn follows_active_counts() {
        let backends = backends(&[1, 1, 1]);
        let strategy = LeastConnections::new();
        let _a = hold(&backends[0], 2);
        let _b = hold(&backends[1], 1);
        for _ in 0..5 {
            assert_eq!(pick(&strategy, &backends), Some(2));
        }
        let _c = hold(&backends[2], 3);
        assert_eq!(pick(&strategy, &backends), Some(1));
    }

    #[test]
    fn respects_weights() {
        let backends = backends(&[3, 1]);
        let strategy = LeastConnections::new();
        // 2 of 3 against 1 of 1: the heavier backend is less loaded.
        let _a = hold(&backends[0], 2);
        let _b = hold(&backends[1], 1);
        assert_eq!(pick(&strategy, &backends), Some(0));
        // 4 of 3 against 1 of 1.
        let _more = hold(&backends[0], 2);
        assert_eq!(pick(&strategy, &backends), Some(1));
    }

    #[test]
    fn ties_rotate() {
        let backends = backends(&[2, 2, 2]);
        let strategy = LeastConnections::new();
        let picked: Vec<_> = (0..6).filter_map(|_| pick(&strategy, &backends)).collect();
        assert_eq!(picked, [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn weighted_load_fills_backends_in_proportion() {
        let backends = backends(&[1, 3]);
        let strategy = LeastConnections::new();
        let mut guards = Vec::new();
        for _ in 0..40 {
            let i = pick(&strategy, &backends).unwrap();
            guards.push(backends[i].try_acquire().unwrap());
        }
        assert_eq!(backends[0].active(), 10);
        assert_eq!(backends[1].active(), 30);
    }

    #[test]
    fn skips_ineligible_and_returns_none_when_nothing_is_eligible() {
        let backends = backends(&[1, 1, 1]);
        let strategy = LeastConnections::new();
        let _busy = hold(&backends[0], 1);
        let ctx = ctx(client(0), 0);
        assert_eq!(strategy.pick(&backends, &ctx, &|i| i == 0), Some(0));
        assert_eq!(strategy.pick(&backends, &ctx, &none), None);
        assert_eq!(strategy.pick(&[], &ctx, &all), None);
    }
}
