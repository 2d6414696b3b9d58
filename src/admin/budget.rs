//! The memory budget for rendered documents (`/metrics`, `/status`) that the
//! admin server holds at once.
//!
//! A rendered body stays in memory until its client has read it, so clients
//! that ask and never read would otherwise make the process hold one body each
//! (hundreds of MiB with many backends). Each body takes its size from the
//! budget, counted in KiB, until its last byte has been handed to the kernel.
//! One body larger than the whole budget takes all of it, so any document can
//! be served, one at a time. Owns the accounting and each document's last size
//! (the estimate taken before rendering); does not render or send anything.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The documents whose bodies are budgeted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Document {
    Metrics,
    Status,
}

/// Bytes of rendered bodies held at once, shared by every admin connection.
#[derive(Debug)]
pub(crate) struct BodyBudget {
    permits: Arc<Semaphore>,
    total_kib: usize,
    /// The length of the last rendered body of each document.
    last_len: [AtomicUsize; 2],
}

/// A share of the budget, given back when dropped.
pub(crate) type BudgetShare = OwnedSemaphorePermit;

impl BodyBudget {
    pub(crate) fn new(bytes: usize) -> BodyBudget {
        let total_kib = (bytes / 1024).clamp(1, Semaphore::MAX_PERMITS);
        BodyBudget {
            permits: Arc::new(Semaphore::new(total_kib)),
            total_kib,
            last_len: [AtomicUsize::new(0), AtomicUsize::new(0)],
        }
    }

    /// What a body of `document` is expected to need: its last length.
    pub(crate) fn estimate(&self, document: Document) -> usize {
        self.last_len[document as usize].load(Ordering::Relaxed)
    }

    /// Remembers the length of a body of `document` just rendered.
    pub(crate) fn record(&self, document: Document, len: usize) {
        self.last_len[document as usize].store(len, Ordering::Relaxed);
    }

    /// A share for `len` bytes at once, if the budget has room.
    pub(crate) fn try_take(&self, len: usize) -> Option<BudgetShare> {
        let kib = self.kib(len);
        Arc::clone(&self.permits).try_acquire_many_owned(kib).ok()
    }

    /// A share for `len` bytes, waiting up to `wait` for others to give theirs
    /// back (first come, first served).
    pub(crate) async fn take(&self, len: usize, wait: Duration) -> Option<BudgetShare> {
        let kib = self.kib(len);
        let acquire = Arc::clone(&self.permits).acquire_many_owned(kib);
        tokio::time::timeout(wait, acquire).await.ok()?.ok()
    }

    /// Makes `share` cover `len` bytes: gives back what it holds beyond that, or
    /// takes the difference if the budget has room at once; `None` (the share
    /// is given back) when it has not.
    pub(crate) fn resize(&self, mut share: BudgetShare, len: usize) -> Option<BudgetShare> {
        let wanted = self.kib(len) as usize;
        let held = share.num_permits();
        if held > wanted {
            drop(share.split(held - wanted));
        } else if held < wanted {
            let more = u32::try_from(wanted - held).ok()?;
            share.merge(
                Arc::clone(&self.permits)
                    .try_acquire_many_owned(more)
                    .ok()?,
            );
        }
        Some(share)
    }

    /// KiB of the budget that are not held.
    #[cfg(test)]
    pub(crate) fn available_kib(&self) -> usize {
        self.permits.available_permits()
    }

    /// `len` bytes in whole KiB, at least 1 and at most the whole budget.
    fn kib(&self, len: usize) -> u32 {
        let kib = len.div_ceil(1024).clamp(1, self.total_kib);
        u32::try_from(kib).unwrap_or(u32::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KIB: usize = 1024;

    #[test]
    fn shares_are_counted_in_kib_and_given_back_when_dropped() {
        let budget = BodyBudget::new(10 * KIB);
        let a = budget.try_take(4 * KIB).expect("room");
        let b = budget.try_take(4 * KIB + 1).expect("room");
        assert_eq!(budget.available_kib(), 1);
        assert!(budget.try_take(2 * KIB).is_none());
        drop(a);
        assert!(budget.try_take(2 * KIB).is_some());
        drop(b);
        assert_eq!(budget.available_kib(), 10);
    }

    #[test]
    fn a_body_larger_than_the_budget_takes_all_of_it() {
        let budget = BodyBudget::new(10 * KIB);
        let huge = budget.try_take(1000 * KIB).expect("alone, it fits");
        assert_eq!(budget.available_kib(), 0);
        assert!(budget.try_take(1).is_none());
        drop(huge);
        assert_eq!(budget.available_kib(), 10);
    }

    #[test]
    fn resize_gives_back_the_excess_or_takes_the_difference_if_there_is_room() {
        let budget = BodyBudget::new(10 * KIB);
        let share = budget.try_take(6 * KIB).expect("room");
        let share = budget.resize(share, 2 * KIB).expect("smaller");
        assert_eq!(budget.available_kib(), 8);
        let share = budget.resize(share, 9 * KIB).expect("room for more");
        assert_eq!(budget.available_kib(), 1);
        let other = budget.try_take(KIB).expect("the last KiB");
        assert!(
            budget.resize(share, 10 * KIB).is_none(),
            "no room: given back"
        );
        assert_eq!(budget.available_kib(), 9);
        drop(other);
    }

    #[test]
    fn estimates_are_the_last_recorded_length_per_document() {
        let budget = BodyBudget::new(KIB);
        assert_eq!(budget.estimate(Document::Metrics), 0);
        budget.record(Document::Metrics, 123);
        budget.record(Document::Status, 7);
        assert_eq!(budget.estimate(Document::Metrics), 123);
        assert_eq!(budget.estimate(Document::Status), 7);
    }

    #[tokio::test]
    async fn take_waits_for_a_share_to_come_back_but_not_forever() {
        let budget = Arc::new(BodyBudget::new(4 * KIB));
        let held = budget.try_take(4 * KIB).expect("room");
        let short = Duration::from_millis(50);
        assert!(budget.take(KIB, short).await.is_none(), "times out");
        let waiter = {
            let budget = Arc::clone(&budget);
            tokio::spawn(async move { budget.take(KIB, Duration::from_secs(10)).await.is_some() })
        };
        drop(held);
        assert!(waiter.await.expect("waiter"));
    }
}
