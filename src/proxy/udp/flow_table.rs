//! The UDP flow table: flows by client address, plain data.
//!
//! Pure: no sockets, no clock, no randomness, no bound of its own (the one bound
//! on flows is the service's `max_flows`, taken by the flow core when it opens a
//! flow). Expiry is incremental: `expire` looks at no more than its budget of
//! entries per call, continuing where the previous call stopped, so a table of
//! 100k flows is never scanned in one go on the datagram path.

use std::collections::HashMap;
use std::hash::Hash;

/// Flows keyed by `K` (the client's address).
#[derive(Debug)]
pub struct FlowTable<K, V> {
    /// Position of each key in `slots`.
    index: HashMap<K, usize>,
    /// Every flow, in no particular order; swept round-robin from `cursor`.
    slots: Vec<(K, V)>,
    cursor: usize,
}

impl<K: Hash + Eq + Clone, V> Default for FlowTable<K, V> {
    fn default() -> Self {
        FlowTable {
            index: HashMap::new(),
            slots: Vec::new(),
            cursor: 0,
        }
    }
}

impl<K: Hash + Eq + Clone, V> FlowTable<K, V> {
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub fn get(&self, key: &K) -> Option<&V> {
        self.index.get(key).map(|&i| &self.slots[i].1)
    }

    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        self.index.get(key).map(|&i| &mut self.slots[i].1)
    }

    /// Adds a flow; an existing flow of the same key is handed back.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        let replaced = self.remove(&key);
        self.index.insert(key.clone(), self.slots.len());
        self.slots.push((key, value));
        replaced
    }

    /// Removes the flow of `key`.
    pub fn remove(&mut self, key: &K) -> Option<V> {
        let position = self.index.remove(key)?;
        Some(self.take_slot(position).1)
    }

    /// Removes and returns the flows `expired` says are over, examining at most
    /// `budget` entries, starting where the previous call stopped.
    pub fn expire(&mut self, budget: usize, mut expired: impl FnMut(&V) -> bool) -> Vec<(K, V)> {
        let mut gone = Vec::new();
        let limit = budget.min(self.slots.len());
        for _ in 0..limit {
            if self.cursor >= self.slots.len() {
                self.cursor = 0;
            }
            if expired(&self.slots[self.cursor].1) {
                let (key, value) = self.take_slot(self.cursor);
                self.index.remove(&key);
                gone.push((key, value));
            } else {
                self.cursor += 1;
            }
        }
        gone
    }

    /// Every flow, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.slots.iter().map(|(k, v)| (k, v))
    }

    /// Every flow, mutably, in no particular order.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&K, &mut V)> {
        self.slots.iter_mut().map(|(k, v)| (&*k, v))
    }

    /// Removes every flow.
    pub fn drain(&mut self) -> Vec<(K, V)> {
        self.index.clear();
        self.cursor = 0;
        std::mem::take(&mut self.slots)
    }

    /// Takes the slot at `position` out, moving the last slot into its place.
    fn take_slot(&mut self, position: usize) -> (K, V) {
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

    #[test]
    fn insert_then_lookup_and_replace() {
        let mut flows = FlowTable::default();
        assert!(flows.insert(1, "a").is_none());
        assert!(flows.insert(2, "b").is_none());
        assert_eq!(flows.get(&1), Some(&"a"));
        assert!(flows.get(&3).is_none());
        assert_eq!(flows.insert(2, "b2"), Some("b"));
        assert_eq!(flows.get(&2), Some(&"b2"));
        assert_eq!(flows.len(), 2);
    }

    #[test]
    fn expiry_examines_at_most_its_budget_and_resumes() {
        let mut flows: FlowTable<u32, u64> = FlowTable::default();
        for key in 0..100_000 {
            flows.insert(key, 0);
        }
        let first = flows.expire(4096, |_| true);
        assert_eq!(first.len(), 4096);
        let mut total = first.len();
        let mut calls = 1;
        while !flows.is_empty() {
            total += flows.expire(4096, |_| true).len();
            calls += 1;
            assert!(calls <= 25, "bounded slices must still finish");
        }
        assert_eq!(total, 100_000);
    }

    #[test]
    fn a_budgeted_sweep_reaches_every_entry_over_successive_calls() {
        let mut flows = FlowTable::default();
        for key in 0..10u32 {
            flows.insert(key, if key == 7 { 0 } else { 50 });
        }
        let mut expired = Vec::new();
        for _ in 0..4 {
            expired.extend(
                flows
                    .expire(3, |seen| *seen < 10)
                    .into_iter()
                    .map(|(k, _)| k),
            );
        }
        assert_eq!(expired, [7]);
        assert_eq!(flows.len(), 9);
    }

    #[test]
    fn removal_keeps_the_index_consistent() {
        let mut flows = FlowTable::default();
        for key in 0..5 {
            flows.insert(key, key * 10);
        }
        assert_eq!(flows.remove(&0), Some(0));
        assert!(flows.remove(&0).is_none());
        for key in 1..5 {
            assert_eq!(flows.get(&key), Some(&(key * 10)), "{key} still there");
        }
        if let Some(v) = flows.get_mut(&3) {
            *v = 99;
        }
        assert_eq!(flows.get(&3), Some(&99));
        assert_eq!(flows.drain().len(), 4);
        assert!(flows.is_empty() && flows.get(&1).is_none());
    }
}
