//! `consistent_hash`: a ketama-style hash ring.
//!
//! Each backend owns `virtual_nodes × weight` points; point `i` of a backend sits at
//! `backend_point_hash(address, i)`. A client goes to the owner of the first point
//! at or after its key hash (binary search, wrapping around); when that backend is
//! ineligible, the walk goes on clockwise to the next point of an eligible backend
//! (bounded, see `CyclicSequence`). Removing a backend only moves the clients that
//! were on it.
//!
//! Limit: the ring holds at most `MAX_RING_POINTS` points (12 MiB). A larger request
//! is scaled down proportionally, each backend keeping at least one point; with a
//! scaled ring, adding or removing a backend also rescales the others, so more
//! clients than the minimum may move. 1000 backends of weight 1 at the default 160
//! virtual nodes (160,000 points) are far below the cap.

use std::fmt;
use std::sync::Arc;

use super::sequence::CyclicSequence;
use super::{PickContext, Strategy, backend_point_hash, client_key_hash, is_usable, table_index};
use crate::backend::Backend;
use crate::config::HashKey;

/// Most points one ring may hold.
const MAX_RING_POINTS: u64 = 1 << 20;

pub struct ConsistentHash {
    hash_key: HashKey,
    /// Where each point sits on the ring, ascending.
    point_hashes: Vec<u64>,
    /// The backend owning each point, in the same order.
    owners: CyclicSequence,
}

impl ConsistentHash {
    pub fn new(backends: &[Arc<Backend>], hash_key: HashKey, virtual_nodes: u32) -> ConsistentHash {
        let counts = point_counts(backends, virtual_nodes);
        let mut points = Vec::with_capacity(counts.iter().sum::<u64>() as usize);
        for (index, (backend, &count)) in backends.iter().zip(&counts).enumerate() {
            let owner = table_index(index);
            points.extend(
                (0..count).map(|point| (backend_point_hash(backend.address(), point), owner)),
            );
        }
        points.sort_unstable();
        let (point_hashes, owners): (Vec<u64>, Vec<u32>) = points.into_iter().unzip();
        ConsistentHash {
            hash_key,
            point_hashes,
            owners: CyclicSequence::new(owners, backends.len()),
        }
    }
}

impl Strategy for ConsistentHash {
    fn pick(
        &self,
        backends: &[Arc<Backend>],
        ctx: &PickContext,
        eligible: &dyn Fn(usize) -> bool,
    ) -> Option<usize> {
        let key = client_key_hash(ctx.client, self.hash_key);
        let first_at_or_after = self.point_hashes.partition_point(|&point| point < key);
        let usable = |i| is_usable(backends, eligible, i);
        let found = self.owners.first_usable_from(first_at_or_after, usable)?;
        Some(found.backend)
    }
}

impl fmt::Debug for ConsistentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConsistentHash")
            .field("hash_key", &self.hash_key)
            .field("points", &self.point_hashes.len())
            .finish()
    }
}

/// Points per backend: `virtual_nodes × weight` (at least 1 virtual node), scaled
/// down proportionally when the ring would exceed `MAX_RING_POINTS`.
fn point_counts(backends: &[Arc<Backend>], virtual_nodes: u32) -> Vec<u64> {
    let per_weight = u64::from(virtual_nodes.max(1));
    let requested: Vec<u64> = backends
        .iter()
        .map(|backend| per_weight * u64::from(backend.weight()))
        .collect();
    let total = requested.iter().fold(0u64, |sum, &n| sum.saturating_add(n));
    if total <= MAX_RING_POINTS {
        return requested;
    }
    requested
        .iter()
        .map(|&n| {
            let scaled = u128::from(n) * u128::from(MAX_RING_POINTS) / u128::from(total);
            (scaled as u64).max(1)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::hashing_checks::*;
    use super::super::testing::*;
    use super::*;
    use crate::config::StrategyKind;

    const KIND: StrategyKind = StrategyKind::ConsistentHash;

    #[test]
    fn independent_instances_choose_alike() {
        check_deterministic(KIND);
    }

    #[test]
    fn removing_a_backend_moves_only_its_keys() {
        for removed in 0..5 {
            let movement = removal_movement(KIND, &[1, 2, 3, 1, 2], removed);
            assert_eq!(movement.moved_from_others, 0);
            assert!(movement.on_removed > 0);
        }
    }

    #[test]
    fn shares_roughly_follow_weights() {
        let weights = [1, 3, 2, 4];
        let counts = key_counts(&config(KIND, HashKey::SourceIpPort), &weights, 40_000);
        assert_shares(&counts, &weights, 0.03);
    }

    #[test]
    fn ring_has_virtual_nodes_times_weight_points() {
        let backends = backends(&[1, 3, 2]);
        let ring = ConsistentHash::new(&backends, HashKey::SourceIp, 10);
        assert_eq!(ring.point_hashes.len(), 60);
        assert!(ring.point_hashes.windows(2).all(|w| w[0] <= w[1]));
        let zero_nodes = ConsistentHash::new(&backends, HashKey::SourceIp, 0);
        assert_eq!(zero_nodes.point_hashes.len(), 6);
    }

    #[test]
    fn oversized_rings_are_scaled_down() {
        let counts = point_counts(&backends(&[1000, 500, 1]), u32::MAX);
        assert!(counts.iter().sum::<u64>() <= MAX_RING_POINTS);
        assert!(counts[0].abs_diff(2 * counts[1]) <= 2);
        assert!(counts[0].abs_diff(1000 * counts[2]) <= 1000);
        let mut weights = vec![1000; 1000];
        weights.push(1);
        let counts = point_counts(&backends(&weights), 1000);
        assert!(counts.iter().sum::<u64>() <= MAX_RING_POINTS + weights.len() as u64);
        assert_eq!(counts[1000], 1);
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
