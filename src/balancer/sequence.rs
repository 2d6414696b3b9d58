//! A cyclic sequence of backend indices (the round-robin cycle, the owners of a
//! hash ring's points, a maglev lookup table) and the bounded search for the first
//! entry, from a given position onwards, whose backend may be chosen.
//!
//! The search scans at most `SCAN_LIMIT` entries; past that it asks every backend
//! once for the position of its next entry (a binary search in that backend's sorted
//! positions) and takes the nearest. The answer is the same as a full scan would
//! give, in O(`SCAN_LIMIT` + N log L) instead of O(L).

use std::fmt;

use super::table_index;

/// Entries scanned one by one before switching to the per-backend search.
const SCAN_LIMIT: usize = 64;

/// Where the search found a usable backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Found {
    /// The backend's index.
    pub backend: usize,
    /// Entries between the start position and the found one (0: the start itself).
    pub distance: usize,
}

pub(super) struct CyclicSequence {
    /// The backend index of every entry, in sequence order. Entries naming no
    /// backend (`>= backend_count`) are never chosen.
    owners: Vec<u32>,
    /// Every entry's position, grouped by backend, ascending within each group.
    positions: Vec<u32>,
    /// Backend `b`'s positions are `positions[group_starts[b]..group_starts[b + 1]]`.
    group_starts: Vec<usize>,
}

impl CyclicSequence {
    /// Indexes `owners` for backends `0..backend_count`.
    ///
    /// `owners.len()` must fit in `u32`; every caller caps its table well below.
    pub fn new(owners: Vec<u32>, backend_count: usize) -> CyclicSequence {
        let group_starts = group_starts(&owners, backend_count);
        let positions = positions_by_backend(&owners, &group_starts);
        CyclicSequence {
            owners,
            positions,
            group_starts,
        }
    }

    pub fn len(&self) -> usize {
        self.owners.len()
    }

    /// The backend index of every entry, in order.
    #[cfg(test)]
    pub fn owners(&self) -> &[u32] {
        &self.owners
    }

    /// The first entry at or after `start` (wrapping around) whose backend is
    /// `usable`, or `None` when no entry is. `start` is taken modulo the length.
    ///
    /// Inlined so that the common case (a `start` within the sequence whose own
    /// entry is usable) costs one load and one `usable` call, with no division.
    #[inline]
    pub fn first_usable_from(&self, start: usize, usable: impl Fn(usize) -> bool) -> Option<Found> {
        if let Some(&owner) = self.owners.get(start) {
            let backend = owner as usize;
            if backend < self.backend_count() && usable(backend) {
                return Some(Found {
                    backend,
                    distance: 0,
                });
            }
        }
        self.search_from(start, &usable)
    }

    /// `first_usable_from` without the fast path.
    fn search_from(&self, start: usize, usable: &dyn Fn(usize) -> bool) -> Option<Found> {
        let len = self.owners.len();
        if len == 0 {
            return None;
        }
        let start = start % len;
        let (before, from_start) = self.owners.split_at(start);
        let scanned = from_start.iter().chain(before).take(SCAN_LIMIT);
        for (distance, &owner) in scanned.enumerate() {
            let backend = owner as usize;
            if backend < self.backend_count() && usable(backend) {
                return Some(Found { backend, distance });
            }
        }
        if len <= SCAN_LIMIT {
            return None;
        }
        self.nearest_usable(start, usable)
    }

    #[inline]
    fn backend_count(&self) -> usize {
        self.group_starts.len() - 1
    }

    /// The usable backend whose next entry at or after `start` comes first.
    fn nearest_usable(&self, start: usize, usable: &dyn Fn(usize) -> bool) -> Option<Found> {
        (0..self.backend_count())
            .filter(|&backend| usable(backend))
            .filter_map(|backend| {
                let distance = self.distance_to_next(backend, start)?;
                Some(Found { backend, distance })
            })
            .min_by_key(|found| found.distance)
    }

    /// Entries from `start` to `backend`'s next entry, or `None` if it has none.
    fn distance_to_next(&self, backend: usize, start: usize) -> Option<usize> {
        let group = &self.positions[self.group_starts[backend]..self.group_starts[backend + 1]];
        let after = group.partition_point(|&position| (position as usize) < start);
        let next = group.get(after).or(group.first())?;
        let len = self.owners.len();
        Some((*next as usize + len - start) % len)
    }
}

/// Prefix sums of each backend's entry count: where its group of positions starts.
fn group_starts(owners: &[u32], backend_count: usize) -> Vec<usize> {
    let mut starts = vec![0; backend_count + 1];
    for &owner in owners {
        let owner = owner as usize;
        if owner < backend_count {
            starts[owner + 1] += 1;
        }
    }
    for i in 1..starts.len() {
        starts[i] += starts[i - 1];
    }
    starts
}

/// Every entry's position, grouped by backend as `group_starts` lays out.
fn positions_by_backend(owners: &[u32], group_starts: &[usize]) -> Vec<u32> {
    let backend_count = group_starts.len() - 1;
    let mut next_slot = group_starts[..backend_count].to_vec();
    let mut positions = vec![0; group_starts[backend_count]];
    for (position, &owner) in owners.iter().enumerate() {
        if let Some(slot) = next_slot.get_mut(owner as usize) {
            positions[*slot] = table_index(position);
            *slot += 1;
        }
    }
    positions
}

impl fmt::Debug for CyclicSequence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CyclicSequence")
            .field("len", &self.owners.len())
            .field("backends", &self.backend_count())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a plain scan of the whole sequence would find.
    fn full_scan(owners: &[u32], start: usize, usable: &dyn Fn(usize) -> bool) -> Option<Found> {
        let len = owners.len();
        (0..len)
            .map(|distance| (distance, owners[(start + distance) % len] as usize))
            .find(|&(_, backend)| usable(backend))
            .map(|(distance, backend)| Found { backend, distance })
    }

    #[test]
    fn empty_sequence_finds_nothing() {
        let sequence = CyclicSequence::new(Vec::new(), 3);
        assert_eq!(sequence.first_usable_from(5, |_| true), None);
    }

    #[test]
    fn long_search_agrees_with_a_full_scan() {
        // Backend 0 fills most of the sequence, so the scan limit is always hit.
        let owners: Vec<u32> = (0..1000u32)
            .map(|i| match i % 97 {
                3 => 1,
                50 => 2,
                _ => 0,
            })
            .collect();
        let sequence = CyclicSequence::new(owners.clone(), 3);
        let masks: [&dyn Fn(usize) -> bool; 4] =
            [&|b| b != 0, &|b| b == 2, &|b| b == 1, &|_| false];
        for usable in masks {
            for start in 0..1100 {
                assert_eq!(
                    sequence.first_usable_from(start, usable),
                    full_scan(&owners, start % 1000, usable),
                    "start {start}"
                );
            }
        }
    }

    #[test]
    fn entries_naming_no_backend_are_skipped() {
        let sequence = CyclicSequence::new(vec![u32::MAX, 7, 1, u32::MAX], 2);
        let found = sequence.first_usable_from(3, |_| true);
        assert_eq!(
            found,
            Some(Found {
                backend: 1,
                distance: 3
            })
        );
    }
}
