//! Connection caps: a counted limit (process-wide or per service) and a per-source-IP limit.
//!
//! Both hand out RAII permits, so a slot taken when a client is admitted is given
//! back on every path that ends its session. A limit of 0 means unlimited, but the
//! count is still kept (it is the "active connections" figure operators read).
//! This file does no I/O and knows nothing of services or backends.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use dashmap::DashMap;

/// A counter of active connections with an optional cap.
#[derive(Debug, Default)]
pub struct ConnectionLimit {
    max: AtomicUsize,
    active: AtomicUsize,
}

impl ConnectionLimit {
    /// A limit of `max` concurrent connections; 0 means unlimited.
    pub fn new(max: usize) -> ConnectionLimit {
        ConnectionLimit {
            max: AtomicUsize::new(max),
            active: AtomicUsize::new(0),
        }
    }

    pub fn max(&self) -> usize {
        self.max.load(Ordering::Relaxed)
    }

    /// Changes the cap (a reload); slots already taken stay taken.
    pub fn set_max(&self, max: usize) {
        self.max.store(max, Ordering::Relaxed);
    }

    pub fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    /// Takes a slot, or `None` when the limit is reached.
    pub fn try_acquire(self: &Arc<Self>) -> Option<LimitPermit> {
        let max = self.max();
        self.active
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| {
                (max == 0 || n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| LimitPermit {
                limit: Arc::clone(self),
            })
    }
}

/// One slot of a `ConnectionLimit`; dropping it frees the slot.
#[derive(Debug)]
pub struct LimitPermit {
    limit: Arc<ConnectionLimit>,
}

impl Drop for LimitPermit {
    fn drop(&mut self) {
        self.limit.active.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Caps concurrent connections per client IP address.
#[derive(Debug)]
pub struct SourceLimit {
    max: AtomicUsize,
    per_source: DashMap<IpAddr, usize>,
}

impl SourceLimit {
    /// At most `max` (>= 1) concurrent connections from one IP address.
    pub fn new(max: usize) -> SourceLimit {
        SourceLimit {
            max: AtomicUsize::new(max.max(1)),
            per_source: DashMap::new(),
        }
    }

    /// Changes the cap (a reload); slots already taken stay taken.
    pub fn set_max(&self, max: usize) {
        self.max.store(max.max(1), Ordering::Relaxed);
    }

    /// Takes a slot for `source`, or `None` when that address is at its limit.
    pub fn try_acquire(self: &Arc<Self>, source: IpAddr) -> Option<SourcePermit> {
        let max = self.max.load(Ordering::Relaxed);
        let mut count = self.per_source.entry(source).or_insert(0);
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(SourcePermit {
            limit: Arc::clone(self),
            source,
        })
    }

    /// Addresses that currently hold at least one slot.
    pub fn tracked_sources(&self) -> usize {
        self.per_source.len()
    }
}

/// One slot of a `SourceLimit`; dropping it frees the slot (and forgets the address
/// when it was its last).
#[derive(Debug)]
pub struct SourcePermit {
    limit: Arc<SourceLimit>,
    source: IpAddr,
}

impl Drop for SourcePermit {
    fn drop(&mut self) {
        self.limit
            .per_source
            .remove_if_mut(&self.source, |_, count| {
                *count -= 1;
                *count == 0
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_means_unlimited_but_counts() {
        let limit = Arc::new(ConnectionLimit::new(0));
        let permits: Vec<_> = (0..100).filter_map(|_| limit.try_acquire()).collect();
        assert_eq!(permits.len(), 100);
        assert_eq!(limit.active(), 100);
        drop(permits);
        assert_eq!(limit.active(), 0);
    }

    #[test]
    fn cap_refuses_then_frees() {
        let limit = Arc::new(ConnectionLimit::new(2));
        let a = limit.try_acquire();
        let b = limit.try_acquire();
        assert!(a.is_some() && b.is_some());
        assert!(limit.try_acquire().is_none());
        drop(a);
        assert!(limit.try_acquire().is_some());
    }

    #[test]
    fn per_source_cap_is_per_address_and_forgets_released_ones() {
        let limit = Arc::new(SourceLimit::new(1));
        let one: IpAddr = [127, 0, 0, 1].into();
        let two: IpAddr = [127, 0, 0, 2].into();
        let first = limit.try_acquire(one);
        assert!(first.is_some());
        assert!(limit.try_acquire(one).is_none());
        let other = limit.try_acquire(two);
        assert!(other.is_some());
        assert_eq!(limit.tracked_sources(), 2);
        drop(first);
        drop(other);
        assert_eq!(limit.tracked_sources(), 0);
        assert!(limit.try_acquire(one).is_some());
    }
}
