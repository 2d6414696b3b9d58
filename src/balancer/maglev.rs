//! `maglev`: Google's Maglev lookup table, weighted.
//!
//! Each backend walks its own permutation of the table's slots (offset =
//! h1(address) mod M, skip = h2(address) mod (M − 1) + 1) and the backends take
//! turns claiming the next free slot of their permutation until the table is full.
//! Weights work by credit: every round each backend earns `weight / max_weight` and
//! claims a slot only when its credit reaches 1. Credits start at
//! `1 − weight / max_weight`, so every backend claims a slot in the first round and
//! is in the table however small its weight. Entries are stored as `u32`.
//!
//! Lookup: `table[⌊key_hash × M / 2^64⌋]` (a multiply-high, which spreads the
//! 64-bit hash evenly over the slots without a division). When that backend is ineligible, the following
//! entries are probed in table order (wrapping around) until one names an eligible
//! backend; the search is bounded (see `CyclicSequence`). Clients whose slot names
//! an eligible backend never move, and because the table interleaves all the
//! permutations, a failed backend's clients spread over the others roughly by
//! weight. Should no eligible backend hold any slot (only when the table is smaller
//! than the backend count), the first eligible backend at or after `key mod N` is
//! taken.
//!
//! Limits: M is the configured `table_size` (validated to be prime), defensively
//! clamped to 2..=`MAX_TABLE_SIZE` and raised to the next prime, so the table always
//! fills. Building costs O(M log M) on average and M × 4 bytes twice (entries and
//! their per-backend index).

use std::fmt;
use std::sync::Arc;

use super::sequence::CyclicSequence;
use super::{PickContext, Strategy, backend_point_hash, is_usable, scale_to, table_index};
use crate::backend::Backend;
use crate::config::HashKey;

/// Largest table: the largest prime below 2^24.
const MAX_TABLE_SIZE: usize = 16_777_213;

/// Marks a slot no backend has claimed yet.
const EMPTY: u32 = u32::MAX;

/// Point numbers whose `backend_point_hash` give a backend's offset and skip.
const OFFSET_POINT: u64 = u64::from_be_bytes(*b"mgoffset");
const SKIP_POINT: u64 = u64::from_be_bytes(*b"mglvskip");

pub struct Maglev {
    hash_key: HashKey,
    table: CyclicSequence,
}

impl Maglev {
    pub fn new(backends: &[Arc<Backend>], hash_key: HashKey, table_size: usize) -> Maglev {
        let table = populate(backends, effective_table_size(table_size));
        Maglev {
            hash_key,
            table: CyclicSequence::new(table, backends.len()),
        }
    }
}

impl Strategy for Maglev {
    fn pick(
        &self,
        backends: &[Arc<Backend>],
        ctx: &PickContext,
        eligible: &dyn Fn(usize) -> bool,
    ) -> Option<usize> {
        let size = self.table.len() as u64;
        if size == 0 {
            return None;
        }
        let key = ctx.key_hash(self.hash_key);
        let slot = scale_to(key, size) as usize;
        let usable = |i| is_usable(backends, eligible, i);
        match self.table.first_usable_from(slot, usable) {
            Some(found) => Some(found.backend),
            None => first_eligible_from(backends, eligible, key),
        }
    }
}

impl fmt::Debug for Maglev {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Maglev")
            .field("hash_key", &self.hash_key)
            .field("table_size", &self.table.len())
            .finish()
    }
}

/// The first eligible backend at or after `key mod N`, for when no eligible backend
/// holds a slot.
fn first_eligible_from(
    backends: &[Arc<Backend>],
    eligible: &dyn Fn(usize) -> bool,
    key: u64,
) -> Option<usize> {
    let count = backends.len();
    let start = (key % count.max(1) as u64) as usize;
    (start..count).chain(0..start).find(|&i| eligible(i))
}

/// The table size used for a configured one: clamped to 2..=`MAX_TABLE_SIZE`, then
/// the next prime (a prime size makes every permutation visit every slot).
fn effective_table_size(configured: usize) -> usize {
    let mut size = configured.clamp(2, MAX_TABLE_SIZE);
    while !is_prime(size) {
        size += 1;
    }
    size
}

fn is_prime(n: usize) -> bool {
    n >= 2
        && (2..)
            .take_while(|d| d * d <= n)
            .all(|d| !n.is_multiple_of(d))
}

/// One backend's walk through its permutation of the slots, and its credit.
struct Claimant {
    next_slot: u64,
    skip: u64,
    size: u64,
    weight: u64,
    credit: u64,
}

impl Claimant {
    fn new(backend: &Backend, size: usize, max_weight: u64) -> Claimant {
        let size = size as u64;
        let weight = u64::from(backend.weight());
        Claimant {
            next_slot: backend_point_hash(backend.address(), OFFSET_POINT) % size,
            skip: backend_point_hash(backend.address(), SKIP_POINT) % (size - 1) + 1,
            size,
            weight,
            credit: max_weight - weight,
        }
    }

    /// Adds this round's credit; spends a whole unit if there is one.
    fn earns_slot(&mut self, max_weight: u64) -> bool {
        self.credit += self.weight;
        if self.credit < max_weight {
            return false;
        }
        self.credit -= max_weight;
        true
    }

    /// The next slot of the permutation that is still free, or `None` if the whole
    /// permutation is taken.
    fn next_free(&mut self, table: &[u32]) -> Option<usize> {
        for _ in 0..self.size {
            let slot = self.next_slot as usize;
            self.next_slot = (self.next_slot + self.skip) % self.size;
            if table[slot] == EMPTY {
                return Some(slot);
            }
        }
        None
    }
}

/// Fills a table of `size` slots (a prime of at least 2) round by round.
fn populate(backends: &[Arc<Backend>], size: usize) -> Vec<u32> {
    let Some(max_weight) = backends.iter().map(|b| u64::from(b.weight())).max() else {
        return Vec::new();
    };
    let mut claimants: Vec<Claimant> = backends
        .iter()
        .map(|backend| Claimant::new(backend, size, max_weight))
        .collect();
    let mut table = vec![EMPTY; size];
    let mut free = size;
    while free > 0 {
        let claimed = claim_round(&mut claimants, max_weight, &mut table, free);
        if claimed == 0 {
            break;
        }
        free -= claimed;
    }
    table
}

/// One round: each backend with a unit of credit claims one slot. Returns how
/// many were claimed (at most `free`). The heaviest backend claims every round, so
/// a round claims nothing only if no permutation has a free slot left.
fn claim_round(
    claimants: &mut [Claimant],
    max_weight: u64,
    table: &mut [u32],
    free: usize,
) -> usize {
    let mut claimed = 0;
    for (index, claimant) in claimants.iter_mut().enumerate() {
        if claimed == free {
            break;
        }
        if !claimant.earns_slot(max_weight) {
            continue;
        }
        if let Some(slot) = claimant.next_free(table) {
            table[slot] = table_index(index);
            claimed += 1;
        }
    }
    claimed
}

#[cfg(test)]
mod tests {
    use super::super::hashing_checks::*;
    use super::super::testing::*;
    use super::*;
    use crate::config::StrategyKind;

    const KIND: StrategyKind = StrategyKind::Maglev;

    fn entry_counts(weights: &[u32], size: usize) -> Vec<usize> {
        let maglev = Maglev::new(&backends(weights), HashKey::SourceIp, size);
        let mut counts = vec![0; weights.len()];
        for &owner in maglev.table.owners() {
            counts[owner as usize] += 1;
        }
        counts
    }

    #[test]
    fn independent_instances_choose_alike() {
        check_deterministic(KIND);
    }

    #[test]
    fn removing_one_of_five_moves_little_more_than_its_keys() {
        for removed in 0..5 {
            let movement = removal_movement(KIND, &[1, 1, 1, 1, 1], removed);
            let moved = movement.on_removed + movement.moved_from_others;
            let ideal = movement.clients as f64 / 5.0;
            assert!(
                moved as f64 <= 1.5 * ideal,
                "moved {moved} of {}",
                movement.clients
            );
            assert!(movement.on_removed > 0);
        }
    }

    #[test]
    fn equal_weights_share_the_table_within_one_percent() {
        let counts = entry_counts(&[1; 10], 65537);
        let ideal = 65537.0 / 10.0;
        for count in counts {
            assert!((count as f64 - ideal).abs() <= ideal * 0.01, "{count}");
        }
    }

    #[test]
    fn weighted_shares_are_proportional() {
        let weights = [1, 2, 3, 4];
        let counts = entry_counts(&weights, 65537);
        let ideal_per_weight = 65537.0 / 10.0;
        for (count, weight) in counts.iter().zip(weights) {
            let ideal = ideal_per_weight * f64::from(weight);
            assert!((*count as f64 - ideal).abs() <= ideal * 0.01, "{counts:?}");
        }
    }

    #[test]
    fn the_lightest_backend_still_gets_a_slot() {
        let mut weights = vec![1000; 100];
        weights.push(1);
        let counts = entry_counts(&weights, 65537);
        assert_eq!(counts[100], 1);
        assert_eq!(counts.iter().sum::<usize>(), 65537);
    }

    #[test]
    fn table_is_full_at_every_size() {
        for size in [2, 3, 5, 7, 251] {
            let counts = entry_counts(&[3, 1, 2], size);
            assert_eq!(counts.iter().sum::<usize>(), size);
        }
    }

    #[test]
    fn table_size_is_clamped_and_rounded_to_a_prime() {
        assert_eq!(effective_table_size(0), 2);
        assert_eq!(effective_table_size(65537), 65537);
        assert_eq!(effective_table_size(1000), 1009);
        assert_eq!(effective_table_size(usize::MAX), MAX_TABLE_SIZE);
        assert!(is_prime(MAX_TABLE_SIZE));
    }

    #[test]
    fn backends_without_a_slot_are_still_reachable() {
        let backends = backends(&[1, 1, 1, 1, 1]);
        let maglev = Maglev::new(&backends, HashKey::SourceIp, 2);
        for seed in 0..100 {
            let ctx = ctx(client(seed), 0);
            for only in 0..5 {
                assert_eq!(maglev.pick(&backends, &ctx, &|i| i == only), Some(only));
            }
        }
    }

    #[test]
    fn ineligible_backend_moves_only_its_keys() {
        check_ineligible_moves_only_its_keys(KIND);
    }

    #[test]
    fn hash_key_selects_what_is_hashed() {
        check_hash_key_behaviour(KIND);
    }

    #[test]
    fn returns_none_when_nothing_is_eligible() {
        check_none_when_nothing_is_eligible(KIND);
    }
}
