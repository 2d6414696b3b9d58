//! `source_hash`: weighted rendezvous (highest random weight) hashing of the
//! client's bucket.
//!
//! The client key hash is mapped to one of `BUCKETS` (65536) buckets by its top
//! 16 bits. For a bucket, each backend scores `-weight / ln(u)`, with `u` in (0, 1)
//! from the keyed hash of the bucket number and the backend's address hash; the
//! highest-scoring eligible backend wins the bucket, and every client in the bucket
//! goes there. A score depends on nothing but that bucket and that backend, so
//! removing (or excluding) a backend moves exactly the buckets, and so the clients,
//! that were on it, and each backend wins a share of buckets proportional to its
//! weight. Bucket granularity adds spread: a backend due k buckets gets about
//! k ± √k, so its share is within about 1% of the ideal (one standard deviation)
//! among 4 equal backends, and within about 12% among 1000.
//!
//! Each bucket's winner among all backends is computed once, on the first pick
//! that needs it (O(N): one hash per backend), and kept in an atomic table; it is a
//! pure function of the bucket, so concurrent first picks store the same value. A
//! pick then costs one client hash and one table read. When the remembered winner
//! is not eligible, the pick ranks the eligible backends for that bucket afresh
//! (O(N), paid only by the clients of ineligible backends); the table keeps the
//! unconditional winner, so those clients return when their backend does.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use super::{PickContext, Strategy, is_usable, keyed_hash, table_index};
use crate::backend::Backend;
use crate::config::HashKey;

/// A client key hash's bucket is its top `BUCKET_BITS` bits.
const BUCKET_BITS: u32 = 16;

/// How many buckets the clients are spread over.
const BUCKETS: usize = 1 << BUCKET_BITS;

/// Marks a bucket whose winner is not known yet.
const UNKNOWN: u32 = u32::MAX;

pub struct SourceHash {
    hash_key: HashKey,
    /// One per backend, in order.
    contenders: Vec<Contender>,
    /// Each bucket's winner among all backends, or `UNKNOWN` until first needed.
    winners: Box<[AtomicU32]>,
}

/// What a backend's score is computed from.
#[derive(Debug, Clone, Copy)]
struct Contender {
    address_hash: u64,
    weight: f64,
}

impl SourceHash {
    pub fn new(backends: &[Arc<Backend>], hash_key: HashKey) -> SourceHash {
        let contenders = backends
            .iter()
            .map(|backend| Contender {
                address_hash: keyed_hash(&[backend.address().as_bytes()]),
                weight: f64::from(backend.weight()),
            })
            .collect();
        SourceHash {
            hash_key,
            contenders,
            winners: (0..BUCKETS).map(|_| AtomicU32::new(UNKNOWN)).collect(),
        }
    }

    /// The highest-scoring backend for `bucket` among all backends, computed on
    /// first use and remembered; `None` when there are no backends.
    #[inline]
    fn winner(&self, bucket: usize) -> Option<usize> {
        let cell = &self.winners[bucket];
        match cell.load(Ordering::Relaxed) {
            UNKNOWN => {
                let winner = self.highest(bucket, self.contenders.len(), &|_| true)?;
                cell.store(table_index(winner), Ordering::Relaxed);
                Some(winner)
            }
            known => Some(known as usize),
        }
    }

    /// The highest-scoring backend for `bucket` among the first `count` that
    /// `eligible` allows.
    fn highest(
        &self,
        bucket: usize,
        count: usize,
        eligible: &dyn Fn(usize) -> bool,
    ) -> Option<usize> {
        let key = bucket as u64;
        let mut best: Option<(usize, f64)> = None;
        for (index, contender) in self.contenders.iter().enumerate().take(count) {
            if !eligible(index) {
                continue;
            }
            let floor = best.map_or(0.0, |(_, top)| top);
            if let Some(score) = contender.score_above(key, floor) {
                best = Some((index, score));
            }
        }
        best.map(|(index, _)| index)
    }
}

impl Strategy for SourceHash {
    fn pick(
        &self,
        backends: &[Arc<Backend>],
        ctx: &PickContext,
        eligible: &dyn Fn(usize) -> bool,
    ) -> Option<usize> {
        let bucket = bucket_of(ctx.key_hash(self.hash_key));
        let winner = self.winner(bucket)?;
        if is_usable(backends, eligible, winner) {
            return Some(winner);
        }
        self.highest(bucket, backends.len(), eligible)
    }
}

impl fmt::Debug for SourceHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SourceHash")
            .field("hash_key", &self.hash_key)
            .field("backends", &self.contenders.len())
            .finish()
    }
}

/// The bucket of a client key hash: its top `BUCKET_BITS` bits.
#[inline]
fn bucket_of(client_key: u64) -> usize {
    (client_key >> (64 - BUCKET_BITS)) as usize
}

impl Contender {
    /// The backend's score for the bucket numbered `bucket_key`, `-weight / ln(u)`
    /// (positive, larger for heavier backends), if it is above `floor`.
    fn score_above(&self, bucket_key: u64, floor: f64) -> Option<f64> {
        let mut pair = [0u8; 16];
        pair[..8].copy_from_slice(&bucket_key.to_be_bytes());
        pair[8..].copy_from_slice(&self.address_hash.to_be_bytes());
        let hash = keyed_hash(&[&pair]);
        let u = unit_interval(hash);
        // -ln(u) >= 1 - u, so the score is at most weight / (1 - u): when even that
        // cannot beat `floor`, the logarithm is not needed.
        if self.weight / (1.0 - u) <= floor {
            return None;
        }
        let score = -self.weight / u.ln();
        (score > floor).then_some(score)
    }
}

/// Maps a hash onto the open interval (0, 1), using its top 52 bits (so that even
/// the largest value stays below 1 as an `f64`).
fn unit_interval(hash: u64) -> f64 {
    const SCALE: f64 = 1.0 / (1u64 << 52) as f64;
    ((hash >> 12) as f64 + 0.5) * SCALE
}

#[cfg(test)]
mod tests {
    use super::super::hashing_checks::*;
    use super::super::testing::*;
    use super::*;
    use crate::balancer::client_key_hash;
    use crate::config::StrategyKind;
    use std::net::SocketAddr;

    const KIND: StrategyKind = StrategyKind::SourceHash;

    #[test]
    fn unit_interval_stays_open() {
        assert!(unit_interval(0) > 0.0);
        assert!(unit_interval(u64::MAX) < 1.0);
    }

    /// The backend with the highest plain score for `client`'s bucket among those
    /// `eligible` allows (the first of equal scores).
    fn plain_best(
        strategy: &SourceHash,
        client: SocketAddr,
        eligible: &dyn Fn(usize) -> bool,
    ) -> Option<usize> {
        let key = bucket_of(client_key_hash(client, HashKey::SourceIpPort)) as u64;
        (0..strategy.contenders.len())
            .filter(|&i| eligible(i))
            .map(|i| (i, strategy.contenders[i].score_above(key, 0.0).unwrap()))
            .max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0)))
            .map(|(i, _)| i)
    }

    #[test]
    fn picks_the_highest_plain_score_of_the_bucket() {
        let weights = [1, 7, 3, 1000, 2, 5];
        let backends = backends(&weights);
        let strategy = SourceHash::new(&backends, HashKey::SourceIpPort);
        let not_heaviest = |i| i != 3;
        for seed in 0..2_000 {
            let client = client(seed);
            let ctx = ctx(client, 0);
            // Twice: once filling the bucket's cell, once reading it; then with
            // the favourite excluded, then with it back.
            for _ in 0..2 {
                assert_eq!(
                    strategy.pick(&backends, &ctx, &all),
                    plain_best(&strategy, client, &all)
                );
            }
            assert_eq!(
                strategy.pick(&backends, &ctx, &not_heaviest),
                plain_best(&strategy, client, &not_heaviest)
            );
            assert_eq!(
                strategy.pick(&backends, &ctx, &all),
                plain_best(&strategy, client, &all)
            );
        }
    }

    #[test]
    fn an_ineligible_first_pick_does_not_stick() {
        let backends = backends(&[1, 1, 1]);
        let strategy = SourceHash::new(&backends, HashKey::SourceIpPort);
        for seed in 0..500 {
            let client = client(seed);
            let ctx = ctx(client, 0);
            let favourite = plain_best(&strategy, client, &all);
            let others = |i| Some(i) != favourite;
            assert_ne!(strategy.pick(&backends, &ctx, &others), favourite);
            assert_eq!(strategy.pick(&backends, &ctx, &all), favourite);
        }
    }

    #[test]
    fn clients_of_one_bucket_go_together() {
        let backends = backends(&[1, 2, 3, 4]);
        let strategy = SourceHash::new(&backends, HashKey::SourceIpPort);
        let mut by_bucket = std::collections::HashMap::new();
        for seed in 0..200_000 {
            let client = client(seed);
            let bucket = bucket_of(client_key_hash(client, HashKey::SourceIpPort));
            let picked = strategy.pick(&backends, &ctx(client, 0), &all);
            assert_eq!(*by_bucket.entry(bucket).or_insert(picked), picked);
        }
    }

    #[test]
    fn independent_instances_choose_alike() {
        check_deterministic(KIND);
    }

    #[test]
    fn removing_a_backend_moves_exactly_its_keys() {
        for removed in 0..5 {
            let movement = removal_movement(KIND, &[1, 2, 3, 1, 2], removed);
            assert_eq!(movement.moved_from_others, 0);
            assert!(movement.on_removed > 0);
        }
    }

    #[test]
    fn shares_follow_weights() {
        let weights = [1, 3, 2, 4];
        let counts = key_counts(&config(KIND, HashKey::SourceIpPort), &weights, 40_000);
        assert_shares(&counts, &weights, 0.015);
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
