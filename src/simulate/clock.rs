//! Virtual time: the clock the production modules are handed, and the agenda of
//! what happens next.
//!
//! The backend and service code takes `Instant`s. The simulator passes
//! `origin + t` for virtual time `t`, with `origin` ten days after the real
//! start: every `Instant` those modules take from the real clock themselves
//! (the bases of slow-start ramps and ejection records, taken when a backend
//! is built or reloaded) is then earlier than every virtual one, so the
//! differences they compute are exact and the run does not depend on how fast
//! the machine simulates.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

/// How far ahead of the real clock virtual time starts.
const HEADROOM: Duration = Duration::from_secs(10 * 24 * 3600);

/// Maps virtual time to the `Instant`s the production modules take.
#[derive(Debug, Clone, Copy)]
pub struct VirtualClock {
    origin: Instant,
}

impl VirtualClock {
    pub fn new(real_now: Instant) -> VirtualClock {
        VirtualClock {
            origin: real_now.checked_add(HEADROOM).unwrap_or(real_now),
        }
    }

    /// The instant of virtual time `t`.
    pub fn at(&self, t: Duration) -> Instant {
        self.origin.checked_add(t).unwrap_or(self.origin)
    }
}

/// One scheduled happening, ordered by time, then by when it was scheduled.
#[derive(Debug)]
struct Entry<T> {
    at: Duration,
    seq: u64,
    what: T,
}

impl<T> PartialEq for Entry<T> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl<T> Eq for Entry<T> {}

impl<T> PartialOrd for Entry<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<T> Ord for Entry<T> {
    /// Reversed: the heap's top is the earliest.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// What is scheduled, earliest first; equal times in the order scheduled.
#[derive(Debug)]
pub struct Agenda<T> {
    heap: BinaryHeap<Entry<T>>,
    next_seq: u64,
}

impl<T> Default for Agenda<T> {
    fn default() -> Self {
        Agenda {
            heap: BinaryHeap::new(),
            next_seq: 0,
        }
    }
}

impl<T> Agenda<T> {
    pub fn schedule(&mut self, at: Duration, what: T) {
        self.heap.push(Entry {
            at,
            seq: self.next_seq,
            what,
        });
        self.next_seq += 1;
    }

    /// The time of the earliest entry.
    pub fn next_time(&self) -> Option<Duration> {
        self.heap.peek().map(|e| e.at)
    }

    pub fn pop(&mut self) -> Option<(Duration, T)> {
        self.heap.pop().map(|e| (e.at, e.what))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earliest_first_and_ties_in_order() {
        let mut agenda = Agenda::default();
        agenda.schedule(Duration::from_secs(2), "late");
        agenda.schedule(Duration::from_secs(1), "first");
        agenda.schedule(Duration::from_secs(1), "second");
        assert_eq!(agenda.next_time(), Some(Duration::from_secs(1)));
        let order: Vec<_> = std::iter::from_fn(|| agenda.pop().map(|(_, w)| w)).collect();
        assert_eq!(order, ["first", "second", "late"]);
    }

    #[test]
    fn virtual_instants_are_after_the_real_clock() {
        let real = Instant::now();
        let clock = VirtualClock::new(real);
        assert!(clock.at(Duration::ZERO) > Instant::now());
        assert_eq!(
            clock.at(Duration::from_secs(5)) - clock.at(Duration::ZERO),
            Duration::from_secs(5)
        );
    }
}
