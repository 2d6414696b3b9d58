//! One rank of a service's backends (primaries or backups) and the strategy that
//! picks among them.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use crate::backend::Backend;
use crate::balancer::{self, PickContext, Strategy};
use crate::config::StrategyConfig;

/// Backends of one rank (primaries or backups) and the strategy that picks among them.
#[derive(Debug)]
pub struct Tier {
    /// Index of each member in the service's backend list.
    pub members: Vec<usize>,
    backends: Vec<Arc<Backend>>,
    strategy: Box<dyn Strategy>,
    /// The member `any_available` last found available: asked first next time,
    /// so the answer usually costs one check rather than a scan.
    last_available: AtomicUsize,
}

impl Tier {
    /// The tier of `all`'s backends at `members` (indices into `all`).
    pub fn new(strategy: &StrategyConfig, all: &[Arc<Backend>], members: Vec<usize>) -> Tier {
        let backends: Vec<_> = members.iter().map(|&i| Arc::clone(&all[i])).collect();
        let strategy = balancer::build(strategy, &backends);
        Tier {
            members,
            backends,
            strategy,
            last_available: AtomicUsize::new(0),
        }
    }

    /// Whether any member is available at `now`.
    pub fn any_available(&self, now: Instant) -> bool {
        let hint = self.last_available.load(Ordering::Relaxed);
        if self.backends.get(hint).is_some_and(|b| b.is_available(now)) {
            return true;
        }
        match self.backends.iter().position(|b| b.is_available(now)) {
            Some(found) => {
                self.last_available.store(found, Ordering::Relaxed);
                true
            }
            None => false,
        }
    }

    /// A member for `ctx` among those `usable` says yes to, skipping `tried`
    /// (service indices); when that leaves none, any but the last one tried.
    pub fn pick(
        &self,
        ctx: &PickContext,
        usable: &dyn Fn(&Backend) -> bool,
        tried: &[usize],
    ) -> Option<usize> {
        let fresh = |i: usize| usable(&self.backends[i]) && !tried.contains(&self.members[i]);
        let local = self
            .strategy
            .pick(&self.backends, ctx, &fresh)
            .or_else(|| {
                let last = *tried.last()?;
                let not_last = |i: usize| usable(&self.backends[i]) && self.members[i] != last;
                self.strategy.pick(&self.backends, ctx, &not_last)
            })?;
        Some(self.members[local])
    }
}
