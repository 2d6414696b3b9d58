//! The UDP flow table: which client is talking to which backend, and since when.
//!
//! Pure: no sockets, no clock, no randomness. Time is a caller-chosen tick count
//! (`now` passed in), and each entry's last activity is an atomic so that the task
//! relaying a flow's replies can mark it active without touching the table. The
//! table is bounded (`max_flows`): a new flow over the bound is refused, existing
//! ones are untouched. Expiry is incremental: `expire` looks at no more than its
//! budget of entries per call, continuing where the previous call stopped, so a
//! table of 100k flows is never scanned in one go on the datagram path.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// One flow's value and its last activity (in ticks).
#[derive(Debug)]
pub struct FlowEntry<V> {
    value: V,
    last_seen: AtomicU64,
}

impl<V> FlowEntry<V> {
    pub fn value(&self) -> &V {
        &self.value
    }

    /// Marks the flow active at `now` (never moves its time backwards).
    pub fn touch(&self, now: u64) {
        self.last_seen.fetch_max(now, Ordering::Relaxed);
    }

    pub fn last_seen(&self) -> u64 {
        self.last_seen.load(Ordering::Relaxed)
    }

    fn is_idle(&self, now: u64, idle_timeout: u64) -> bool {
        now.saturating_sub(self.last_seen()) >= idle_timeout
    }
}

/// A new flow's entry, and the entry it replaced (same key), if any.
pub type Inserted<V> = (Arc<FlowEntry<V>>, Option<Arc<FlowEntry<V>>>);

/// The table is full: the new flow was not added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableFull;

/// Flows keyed by `K` (the client's address), bounded and expiring.
#[derive(Debug)]
pub struct FlowTable<K, V> {
    idle_timeout: u64,
    max_flows: usize,
    /// Position of each key in `slots`.
    index: HashMap<K, usize>,
    /// Every flow, in no particular order; swept round-robin from `cursor`.
    slots: Vec<(K, Arc<FlowEntry<V>>)>,
    cursor: usize,
}

impl<K: Hash + Eq + Clone, V> FlowTable<K, V> {
    /// Flows idle for `idle_timeout` ticks expire; at most `max_flows` at once.
    pub fn new(idle_timeout: u64, max_flows: usize) -> FlowTable<K, V> {
        FlowTable {
            idle_timeout,
            max_flows,
            index: HashMap::new(),
            slots: Vec::new(),
            cursor: 0,
        }
    }

    /// Changes the idle timeout and the bound (existing flows stay, even over a
    /// lowered bound; only new ones are refused).
    pub fn set_limits(&mut self, idle_timeout: u64, max_flows: usize) {
        self.idle_timeout = idle_timeout;
        self.max_flows = max_flows;
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The flow of `key`, if any (expired or not: see `expire`).
    pub fn get(&self, key: &K) -> Option<&Arc<FlowEntry<V>>> {
        self.index.get(key).map(|&i| &self.slots[i].1)
    }

    /// Adds a flow active at `now`, or refuses it when the table is full. An
    /// existing flow of the same key is replaced (and returned for cleanup).
    pub fn insert(&mut self, key: K, value: V, now: u64) -> Result<Inserted<V>, TableFull> {
        let replaced = self.remove(&key);
        if self.slots.len() >= self.max_flows {
            return Err(TableFull);
        }
        let entry = Arc::new(FlowEntry {
            value,
            last_seen: AtomicU64::new(now),
        });
        self.index.insert(key.clone(), self.slots.len());
        self.slots.push((key, Arc::clone(&entry)));
        Ok((entry, replaced))
    }

    /// Removes the flow of `key`.
    pub fn remove(&mut self, key: &K) -> Option<Arc<FlowEntry<V>>> {
        let position = self.index.remove(key)?;
        Some(self.take_slot(position).1)
    }

    /// Removes and returns expired flows, examining at most `budget` entries,
    /// starting where the previous call stopped.
    pub fn expire(&mut self, now: u64, budget: usize) -> Vec<(K, Arc<FlowEntry<V>>)> {
        let mut expired = Vec::new();
        let mut examined = 0;
        let limit = budget.min(self.slots.len());
        while examined < limit && !self.slots.is_empty() {
            if self.cursor >= self.slots.len() {
                self.cursor = 0;
            }
            examined += 1;
            if self.slots[self.cursor].1.is_idle(now, self.idle_timeout) {
                let (key, entry) = self.take_slot(self.cursor);
                self.index.remove(&key);
                expired.push((key, entry));
            } else {
                self.cursor += 1;
            }
        }
        expired
    }

    /// Removes every flow whose value `keep` rejects (e.g. flows of a removed backend).
    pub fn remove_where(
        &mut self,
        mut doomed: impl FnMut(&V) -> bool,
    ) -> Vec<(K, Arc<FlowEntry<V>>)> {
        let keys: Vec<K> = self
            .slots
            .iter()
            .filter(|(_, entry)| doomed(entry.value()))
            .map(|(key, _)| key.clone())
            .collect();
        keys.into_iter()
            .filter_map(|key| self.remove(&key).map(|entry| (key, entry)))
            .collect()
    }

    /// Takes the slot at `position` out, moving the last slot into its place.
    fn take_slot(&mut self, position: usize) -> (K, Arc<FlowEntry<V>>) {
        let taken = self.slots.swap_remove(position);
        if let Some((moved_key, _)) = self.slots.get(position) {
            self.index.insert(moved_key.clone(), position);
        }
        taken
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(idle: u64, max: usize) -> FlowTable<u32, &'static str> {
        FlowTable::new(idle, max)
    }

    #[test]
    fn insert_then_lookup() {
        let mut flows = table(10, 100);
        flows.insert(1, "a", 0).expect("room");
        flows.insert(2, "b", 0).expect("room");
        assert_eq!(flows.get(&1).map(|e| *e.value()), Some("a"));
        assert_eq!(flows.get(&2).map(|e| *e.value()), Some("b"));
        assert!(flows.get(&3).is_none());
        assert_eq!(flows.len(), 2);
    }

    #[test]
    fn bound_refuses_new_flows_and_keeps_existing_ones() {
        let mut flows = table(10, 2);
        flows.insert(1, "a", 0).expect("room");
        flows.insert(2, "b", 0).expect("room");
        assert_eq!(flows.insert(3, "c", 0).err(), Some(TableFull));
        assert_eq!(flows.len(), 2);
        assert!(flows.get(&1).is_some() && flows.get(&2).is_some());
        // Replacing an existing key is not a new flow.
        let (_, replaced) = flows.insert(2, "b2", 1).expect("replacement fits");
        assert_eq!(replaced.map(|e| *e.value()), Some("b"));
        assert_eq!(flows.get(&2).map(|e| *e.value()), Some("b2"));
    }

    #[test]
    fn idle_flows_expire_and_active_ones_stay() {
        let mut flows = table(10, 100);
        flows.insert(1, "idle", 0).expect("room");
        let busy = flows.insert(2, "busy", 0).expect("room").0;
        busy.touch(8);
        let expired = flows.expire(12, 100);
        assert_eq!(expired.iter().map(|(k, _)| *k).collect::<Vec<_>>(), [1]);
        assert!(flows.get(&2).is_some());
        assert!(flows.expire(17, 100).is_empty());
        assert_eq!(flows.expire(18, 100).len(), 1);
        assert!(flows.is_empty());
    }

    #[test]
    fn touch_never_moves_time_backwards() {
        let mut flows = table(10, 100);
        let entry = flows.insert(1, "a", 5).expect("room").0;
        entry.touch(3);
        assert_eq!(entry.last_seen(), 5);
    }

    #[test]
    fn expiry_examines_at_most_its_budget_and_resumes() {
        let mut flows: FlowTable<u32, ()> = FlowTable::new(10, 100_000);
        for key in 0..100_000 {
            flows.insert(key, (), 0).expect("room");
        }
        let first = flows.expire(100, 4096);
        assert_eq!(first.len(), 4096);
        let mut total = first.len();
        let mut calls = 1;
        while !flows.is_empty() {
            total += flows.expire(100, 4096).len();
            calls += 1;
            assert!(calls <= 25, "bounded slices must still finish");
        }
        assert_eq!(total, 100_000);
    }

    #[test]
    fn a_budgeted_sweep_reaches_every_entry_over_successive_calls() {
        let mut flows = table(10, 100);
        for key in 0..10 {
            let entry = flows.insert(key, "x", 0).expect("room").0;
            if key != 7 {
                entry.touch(50);
            }
        }
        let mut expired = Vec::new();
        for _ in 0..4 {
            expired.extend(flows.expire(55, 3).into_iter().map(|(k, _)| k));
        }
        assert_eq!(expired, [7]);
        assert_eq!(flows.len(), 9);
    }

    #[test]
    fn removal_keeps_the_index_consistent() {
        let mut flows = table(10, 100);
        for key in 0..5 {
            flows.insert(key, "x", 0).expect("room");
        }
        assert!(flows.remove(&0).is_some());
        assert!(flows.remove(&0).is_none());
        for key in 1..5 {
            assert!(flows.get(&key).is_some(), "{key} still there");
        }
        assert_eq!(flows.len(), 4);
    }

    #[test]
    fn flows_of_a_removed_backend_go_and_others_stay() {
        let mut flows = table(10, 100);
        flows.insert(1, "dead", 0).expect("room");
        flows.insert(2, "alive", 0).expect("room");
        flows.insert(3, "dead", 0).expect("room");
        let removed = flows.remove_where(|v| *v == "dead");
        let mut keys: Vec<u32> = removed.iter().map(|(k, _)| *k).collect();
        keys.sort_unstable();
        assert_eq!(keys, [1, 3]);
        assert_eq!(flows.get(&2).map(|e| *e.value()), Some("alive"));
        assert_eq!(flows.len(), 1);
    }
}
