//! `consistent_hash`: a ketama-style hash ring.
//!
//! Each backend owns `virtual_nodes × weight` points; point `i` of a backend sits at
//! `backend_point_hash(address, i)`. A client goes to the owner of the first point
//! at or after its key hash (binary search, wrapping around); when that backend is
//! ineligible, the walk goes on clockwise to the next point of an eligible backend
//! (bounded, see `CyclicSequence`). Removing a backend only moves the clients that
//! were on it.
//!
//! The search for the first point does not bisect the whole ring (about 19
//! dependent cache misses at 400,000 points). A `RingIndex` splits the hash space
//! into 2^k equal buckets (about two per point, at most 2^20, 4 bytes each). Most
//! buckets hold no point, so all their keys land on the same point, and the bucket
//! records its owner: one read answers. A bucket with points records where its
//! first point is, and the lookup compares the few points from there on in a
//! compact copy of the ring (each point's top 32 hash bits and owner, 8 bytes).
//! The answer is exactly the plain binary search's.
//!
//! Limit: the ring holds at most `MAX_RING_POINTS` points (12 MiB). A larger request
//! is scaled down proportionally, each backend keeping at least one point; with a
//! scaled ring, adding or removing a backend also rescales the others, so more
//! clients than the minimum may move. 1000 backends of weight 1 at the default 160
//! virtual nodes (160,000 points) are far below the cap.

use std::fmt;
use std::sync::Arc;

use super::sequence::CyclicSequence;
use super::{PickContext, Strategy, backend_point_hash, is_usable, table_index};
use crate::backend::Backend;
use crate::config::HashKey;

/// Most points one ring may hold.
const MAX_RING_POINTS: u64 = 1 << 20;

/// The ring index has at most 2^this buckets (4 MiB).
const MAX_INDEX_BITS: u32 = 20;

pub struct ConsistentHash {
    hash_key: HashKey,
    /// Where each point sits on the ring, ascending.
    point_hashes: Vec<u64>,
    /// Where to search `point_hashes` for a key.
    index: RingIndex,
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
            index: RingIndex::new(&point_hashes, &owners),
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
        if self.point_hashes.is_empty() {
            return None;
        }
        let key = ctx.key_hash(self.hash_key);
        let landing = self.index.landing(&self.point_hashes, key);
        let usable = |i| is_usable(backends, eligible, i);
        if usable(landing.owner as usize) {
            return Some(landing.owner as usize);
        }
        let position = landing
            .position
            .unwrap_or_else(|| self.point_hashes.partition_point(|&point| point < key));
        let found = self.owners.first_usable_from(position, usable)?;
        Some(found.backend)
    }
}

/// A compact copy of the ring for lookups: the hash space cut into 2^k equal
/// buckets by the top k bits of a hash, and every point's top 32 bits and owner.
struct RingIndex {
    /// `64 - k`: a hash's bucket is `hash >> shift`.
    shift: u32,
    /// Per bucket: `OWNER_TAG | owner` when no point lies inside the bucket (all
    /// its keys land on the same point, the next one), else the position of its
    /// first point.
    buckets: Vec<u32>,
    /// Per point, in ring order.
    points: Vec<PointRecord>,
}

/// Marks a bucket entry that names the owner its keys land on.
const OWNER_TAG: u32 = 1 << 31;

#[derive(Debug, Clone, Copy)]
struct PointRecord {
    /// The top 32 bits of the point's hash.
    top: u32,
    owner: u32,
}

/// Where a key lands on the ring: the owner of the first point at or after it
/// (of the ring's first point when every point is below it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Landing {
    owner: u32,
    /// That point's position (the point count when wrapping around), if the
    /// lookup found it; an empty bucket answers with the owner alone.
    position: Option<usize>,
}

impl RingIndex {
    /// Indexes the ring `point_hashes` (ascending, not empty) owned point by
    /// point by `owners`, with about two buckets per point, at most
    /// 2^`MAX_INDEX_BITS`.
    fn new(point_hashes: &[u64], owners: &[u32]) -> RingIndex {
        let bits =
            (point_hashes.len().next_power_of_two().trailing_zeros() + 1).clamp(1, MAX_INDEX_BITS);
        let shift = 64 - bits;
        let mut starts = vec![0u32; (1 << bits) + 1];
        for &point in point_hashes {
            starts[(point >> shift) as usize + 1] += 1;
        }
        for i in 1..starts.len() {
            starts[i] += starts[i - 1];
        }
        let landing_owner = |position: u32| {
            let owner = owners.get(position as usize).or(owners.first());
            owner.copied().filter(|&owner| owner < OWNER_TAG)
        };
        let buckets = starts
            .windows(2)
            .map(|pair| match landing_owner(pair[0]) {
                Some(owner) if pair[0] == pair[1] => OWNER_TAG | owner,
                _ => pair[0],
            })
            .collect();
        let points = point_hashes
            .iter()
            .zip(owners)
            .map(|(&hash, &owner)| PointRecord {
                top: (hash >> 32) as u32,
                owner,
            })
            .collect();
        RingIndex {
            shift,
            buckets,
            points,
        }
    }

    /// Where `key` lands; the position is the same as
    /// `point_hashes.partition_point(|&point| point < key)`.
    ///
    /// Every point of an earlier bucket is below `key` and every point of a later
    /// one above it, so the answer is in `key`'s bucket or the first point after
    /// it. Most buckets hold no point: then the bucket entry alone answers.
    /// Otherwise the few points from the bucket's first on are compared by their
    /// top 32 bits, and by the full hash only when those are equal.
    #[inline]
    fn landing(&self, point_hashes: &[u64], key: u64) -> Landing {
        let entry = self.buckets[(key >> self.shift) as usize];
        if entry & OWNER_TAG != 0 {
            return Landing {
                owner: entry & !OWNER_TAG,
                position: None,
            };
        }
        let top = (key >> 32) as u32;
        let mut position = entry as usize;
        while let Some(point) = self.points.get(position) {
            if point.top > top || (point.top == top && point_hashes[position] >= key) {
                break;
            }
            position += 1;
        }
        let landed = self.points.get(position).or(self.points.first());
        Landing {
            owner: landed.map_or(u32::MAX, |point| point.owner),
            position: Some(position),
        }
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
    fn index_finds_what_a_binary_search_finds() {
        let mut rng = SplitMix(7);
        for count in [0, 1, 2, 3, 100, 1000, 5000] {
            let mut points: Vec<u64> = (0..count).map(|_| rng.next()).collect();
            // Equal points, points whose top 32 bits are equal, points at both
            // ends of the hash space, and (for odd counts) keys above every
            // point, which wrap around.
            points.extend([0, 1 << 63, 1 << 63, (1 << 63) + 5, (1 << 63) + 10]);
            if count % 2 == 0 {
                points.push(u64::MAX);
            }
            points.sort_unstable();
            let owners: Vec<u32> = (0..points.len() as u32).map(|i| i % 7).collect();
            let index = RingIndex::new(&points, &owners);
            let probes = points
                .iter()
                .flat_map(|&p| [p, p.wrapping_sub(1), p.wrapping_add(1)])
                .chain((0..2000).map(|_| rng.next()));
            for key in probes {
                let expected = points.partition_point(|&point| point < key);
                let landing = index.landing(&points, key);
                assert_eq!(landing.owner, owners[expected % points.len()], "{key}");
                if let Some(position) = landing.position {
                    assert_eq!(position, expected, "{key}");
                }
            }
        }
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
