//! `source_hash`: weighted rendezvous (highest random weight) hashing of the client.
//!
//! Each backend scores `-weight / ln(u)` for a client, with `u` in (0, 1) from the
//! keyed hash of the client key and the backend's address hash; the highest-scoring
//! eligible backend wins. A score depends on nothing but that client and that
//! backend, so removing (or excluding) a backend moves exactly the clients that were
//! on it, and each backend wins a share of clients proportional to its weight.
//! A pick costs one hash per backend: O(N).

use std::sync::Arc;

use super::{PickContext, Strategy, client_key_hash, keyed_hash};
use crate::backend::Backend;
use crate::config::HashKey;

#[derive(Debug)]
pub struct SourceHash {
    hash_key: HashKey,
    /// One per backend, in order.
    contenders: Vec<Contender>,
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
        }
    }
}

impl Strategy for SourceHash {
    fn pick(
        &self,
        backends: &[Arc<Backend>],
        ctx: &PickContext,
        eligible: &dyn Fn(usize) -> bool,
    ) -> Option<usize> {
        let key = client_key_hash(ctx.client, self.hash_key);
        let mut best: Option<(usize, f64)> = None;
        for (index, contender) in self.contenders.iter().enumerate().take(backends.len()) {
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

impl Contender {
    /// The backend's score for this client, `-weight / ln(u)` (positive, larger
    /// for heavier backends), if it is above `floor`.
    fn score_above(&self, client_key: u64, floor: f64) -> Option<f64> {
        let mut pair = [0u8; 16];
        pair[..8].copy_from_slice(&client_key.to_be_bytes());
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
    use crate::config::StrategyKind;

    const KIND: StrategyKind = StrategyKind::SourceHash;

    #[test]
    fn unit_interval_stays_open() {
        assert!(unit_interval(0) > 0.0);
        assert!(unit_interval(u64::MAX) < 1.0);
    }

    #[test]
    fn picks_the_highest_plain_score() {
        let weights = [1, 7, 3, 1000, 2, 5];
        let backends = backends(&weights);
        let strategy = SourceHash::new(&backends, HashKey::SourceIpPort);
        for seed in 0..2_000 {
            let client = client(seed);
            let key = client_key_hash(client, HashKey::SourceIpPort);
            let plain_best = (0..weights.len())
                .map(|i| (i, strategy.contenders[i].score_above(key, 0.0).unwrap()))
                .max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0)))
                .map(|(i, _)| i);
            assert_eq!(strategy.pick(&backends, &ctx(client, 0), &all), plain_best);
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
