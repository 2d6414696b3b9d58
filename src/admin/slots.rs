//! The admin server's connection slots: a bounded table of open connections
//! that makes room for a newcomer by evicting, rather than refusing it.
//!
//! A full table must not be an attack: clients that dribble header bytes, or
//! that stay connected between requests, would otherwise take every slot and
//! lock `/healthz` out. So when the table is full, a new connection evicts the
//! one that has waited longest without a response in flight (idle keep-alive
//! connections and connections still sending their request alike), or failing
//! that, the one whose response has been stuck longest beyond a grace period
//! (a client that does not read). Only when every slot is busy sending a
//! fresh response is the newcomer refused. Owns that bookkeeping; does no I/O
//! (the server closes an evicted connection when its token fires).

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

/// At most `capacity` connections, with eviction as described above.
#[derive(Debug)]
pub(crate) struct ConnectionSlots {
    capacity: usize,
    /// How long a response may be in flight before its connection may be evicted.
    busy_grace: Duration,
    table: Mutex<Table>,
}

#[derive(Debug, Default)]
struct Table {
    next_id: u64,
    /// Orders idle periods: a larger stamp went idle later.
    next_stamp: u64,
    entries: Vec<Entry>,
}

#[derive(Debug)]
struct Entry {
    id: u64,
    /// When the connection last went idle (admitted, or its last response sent).
    idle_stamp: u64,
    /// Responses in flight, and since when the first of them.
    busy: Option<(usize, Instant)>,
    evict: CancellationToken,
}

/// Why a connection was let in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admitted {
    /// A slot was free.
    Free,
    /// Another connection was evicted to make room.
    Evicted,
}

impl ConnectionSlots {
    pub(crate) fn new(capacity: usize, busy_grace: Duration) -> Arc<ConnectionSlots> {
        Arc::new(ConnectionSlots {
            capacity,
            busy_grace,
            table: Mutex::new(Table::default()),
        })
    }

    /// A slot for a new connection, evicting another one if the table is full;
    /// `None` when every connection is busy with a fresh response.
    pub(crate) fn admit(self: &Arc<Self>, now: Instant) -> Option<(Slot, Admitted)> {
        let mut table = self.lock();
        let mut admitted = Admitted::Free;
        if table.entries.len() >= self.capacity {
            let victim = table.eviction_candidate(now, self.busy_grace)?;
            table.entries.swap_remove(victim).evict.cancel();
            admitted = Admitted::Evicted;
        }
        let id = table.next_id;
        table.next_id += 1;
        let idle_stamp = table.stamp();
        let evict = CancellationToken::new();
        table.entries.push(Entry {
            id,
            idle_stamp,
            busy: None,
            evict: evict.clone(),
        });
        let slot = Slot {
            slots: Arc::clone(self),
            id,
            evict,
        };
        Some((slot, admitted))
    }

    /// Evicts every connection whose response has been in flight longer than
    /// the grace period (clients that do not read), so that what they hold is
    /// released; returns how many.
    pub(crate) fn evict_stalled(&self, now: Instant) -> usize {
        let mut table = self.lock();
        let before = table.entries.len();
        table.entries.retain(|entry| {
            let stalled = entry.stalled(now, self.busy_grace);
            if stalled {
                entry.evict.cancel();
            }
            !stalled
        });
        before - table.entries.len()
    }

    /// Open connections.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().entries.len()
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        // The table stays consistent at every step, so a panic elsewhere leaves it usable.
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn begin_response(&self, id: u64, now: Instant) {
        if let Some(entry) = self.lock().entry(id) {
            entry.busy = Some(match entry.busy {
                Some((count, since)) => (count + 1, since),
                None => (1, now),
            });
        }
    }

    fn end_response(&self, id: u64) {
        let mut table = self.lock();
        let stamp = table.stamp();
        if let Some(entry) = table.entry(id) {
            entry.busy = match entry.busy {
                Some((count, since)) if count > 1 => Some((count - 1, since)),
                _ => None,
            };
            if entry.busy.is_none() {
                entry.idle_stamp = stamp;
            }
        }
    }

    fn release(&self, id: u64) {
        let mut table = self.lock();
        if let Some(index) = table.entries.iter().position(|e| e.id == id) {
            table.entries.swap_remove(index);
        }
    }
}

impl Table {
    fn stamp(&mut self) -> u64 {
        self.next_stamp += 1;
        self.next_stamp
    }

    fn entry(&mut self, id: u64) -> Option<&mut Entry> {
        self.entries.iter_mut().find(|e| e.id == id)
    }

    /// The index of the connection to evict: the longest idle one, else the
    /// longest stalled one.
    fn eviction_candidate(&self, now: Instant, busy_grace: Duration) -> Option<usize> {
        let idle = self
            .entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.busy.is_none());
        if let Some((index, _)) = idle.min_by_key(|(_, e)| e.idle_stamp) {
            return Some(index);
        }
        self.entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.stalled(now, busy_grace))
            .min_by_key(|(_, e)| e.busy.map(|(_, since)| since))
            .map(|(index, _)| index)
    }
}

impl Entry {
    fn stalled(&self, now: Instant, busy_grace: Duration) -> bool {
        self.busy
            .is_some_and(|(_, since)| now.saturating_duration_since(since) > busy_grace)
    }
}

/// One admitted connection's place in the table; dropping it frees the place.
#[derive(Debug)]
pub(crate) struct Slot {
    slots: Arc<ConnectionSlots>,
    id: u64,
    evict: CancellationToken,
}

impl Slot {
    /// Fires when the connection has been evicted and must close.
    pub(crate) fn eviction(&self) -> CancellationToken {
        self.evict.clone()
    }

    /// A handle that marks responses of this connection in flight.
    pub(crate) fn tracker(&self) -> ResponseTracker {
        ResponseTracker {
            slots: Arc::clone(&self.slots),
            id: self.id,
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots.release(self.id);
    }
}

/// Marks responses of one connection as in flight (see [`InFlight`]).
#[derive(Debug, Clone)]
pub(crate) struct ResponseTracker {
    slots: Arc<ConnectionSlots>,
    id: u64,
}

impl ResponseTracker {
    /// The connection has a response in flight until the guard is dropped.
    pub(crate) fn begin(&self, now: Instant) -> InFlight {
        self.slots.begin_response(self.id, now);
        InFlight {
            tracker: self.clone(),
        }
    }
}

/// A response in flight: its connection is not evicted as idle meanwhile.
#[derive(Debug)]
pub(crate) struct InFlight {
    tracker: ResponseTracker,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.tracker.slots.end_response(self.tracker.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRACE: Duration = Duration::from_secs(10);

    fn admit(slots: &Arc<ConnectionSlots>, now: Instant) -> (Slot, Admitted) {
        slots.admit(now).expect("admitted")
    }

    #[test]
    fn free_slots_are_taken_then_the_longest_idle_connection_is_evicted() {
        let slots = ConnectionSlots::new(2, GRACE);
        let now = Instant::now();
        let (first, how) = admit(&slots, now);
        assert_eq!(how, Admitted::Free);
        let (second, _) = admit(&slots, now);
        let (_third, how) = admit(&slots, now);
        assert_eq!(how, Admitted::Evicted);
        assert!(first.eviction().is_cancelled(), "the oldest idle one goes");
        assert!(!second.eviction().is_cancelled());
        assert_eq!(slots.len(), 2);
        drop(first);
        assert_eq!(slots.len(), 2, "an evicted slot was already given up");
    }

    #[test]
    fn a_connection_that_just_finished_a_response_counts_as_recently_active() {
        let slots = ConnectionSlots::new(2, GRACE);
        let now = Instant::now();
        let (first, _) = admit(&slots, now);
        let (second, _) = admit(&slots, now);
        drop(first.tracker().begin(now));
        admit(&slots, now);
        assert!(second.eviction().is_cancelled());
        assert!(!first.eviction().is_cancelled());
    }

    #[test]
    fn a_fresh_response_in_flight_is_never_evicted() {
        let slots = ConnectionSlots::new(1, GRACE);
        let now = Instant::now();
        let (busy, _) = admit(&slots, now);
        let in_flight = busy.tracker().begin(now);
        assert!(slots.admit(now + GRACE).is_none(), "refused while fresh");
        assert!(!busy.eviction().is_cancelled());
        drop(in_flight);
        assert!(slots.admit(now + GRACE).is_some());
        assert!(busy.eviction().is_cancelled());
    }

    #[test]
    fn a_response_stuck_beyond_the_grace_period_is_evicted() {
        let slots = ConnectionSlots::new(2, GRACE);
        let now = Instant::now();
        let (old, _) = admit(&slots, now);
        let (young, _) = admit(&slots, now);
        let _old_response = old.tracker().begin(now);
        let _young_response = young.tracker().begin(now + Duration::from_secs(5));
        let later = now + GRACE + Duration::from_secs(1);
        assert_eq!(admit(&slots, later).1, Admitted::Evicted);
        assert!(old.eviction().is_cancelled(), "stuck the longest");
        assert!(!young.eviction().is_cancelled());
    }

    #[test]
    fn evict_stalled_releases_every_stuck_response_and_nothing_else() {
        let slots = ConnectionSlots::new(4, GRACE);
        let now = Instant::now();
        let (stuck, _) = admit(&slots, now);
        let (idle, _) = admit(&slots, now);
        let _response = stuck.tracker().begin(now);
        assert_eq!(slots.evict_stalled(now + GRACE), 0);
        assert_eq!(slots.evict_stalled(now + GRACE * 2), 1);
        assert!(stuck.eviction().is_cancelled());
        assert!(!idle.eviction().is_cancelled());
        assert_eq!(slots.len(), 1);
    }
}
