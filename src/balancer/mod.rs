//! Backend selection: the `Strategy` trait, the hash every hashing strategy shares,
//! and `build`, which turns a service's `StrategyConfig` into a strategy.
//!
//! Strategies are pure: no I/O, no tokio, no clock, no global random generator. The
//! caller passes the client address and a random number in `PickContext`, and says
//! which backends may be chosen with an `eligible` predicate (health, capacity,
//! backends already tried for this client). A strategy never returns an index for
//! which `eligible` is false. One file per strategy, each unit-tested in place.

use std::hash::Hasher;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use siphasher::sip::SipHasher13;

use crate::backend::Backend;
use crate::config::{HashKey, HashVersion, StrategyConfig, StrategyKind};

mod consistent_hash;
mod least_connections;
mod least_response_time;
mod maglev;
mod power_of_two;
mod random;
mod round_robin;
mod sequence;
mod source_hash;

use consistent_hash::ConsistentHash;
use least_connections::LeastConnections;
use least_response_time::LeastResponseTime;
use maglev::Maglev;
use power_of_two::PowerOfTwo;
use random::Random;
use round_robin::RoundRobin;
use source_hash::SourceHash;

/// What a strategy knows about the client it is choosing for.
#[derive(Debug, Clone, Copy)]
pub struct PickContext {
    /// The client's address (hashing strategies hash it per `hash_key`).
    pub client: SocketAddr,
    /// A fresh random number from the caller (random and power-of-two strategies).
    pub random: u64,
    /// `sni_hash` of the TLS server name the client asked for, when it was read.
    pub server_name: Option<u64>,
}

impl PickContext {
    /// The hash a hashing strategy places for this client: the server name's
    /// for `HashKey::Sni` (a client without one hashes by its IP), else
    /// `client_key_hash`.
    #[inline]
    pub fn key_hash(&self, key: HashKey) -> u64 {
        match (key, self.server_name) {
            (HashKey::Sni, Some(hash)) => hash,
            (HashKey::Sni, None) => client_key_hash(self.client, HashKey::SourceIp),
            (key, _) => client_key_hash(self.client, key),
        }
    }
}

/// The hash of a (lower-cased) TLS server name for `hash_key = "sni"`:
/// SipHash-1-3 with the module's fixed keys over the name's bytes.
pub fn sni_hash(server_name: &str) -> u64 {
    keyed_hash(&[server_name.as_bytes()])
}

/// Chooses one backend for one client.
pub trait Strategy: Send + Sync + std::fmt::Debug {
    /// Index into `backends` of the chosen backend, or `None` when no eligible
    /// backend exists. `backends` is the same slice, in the same order, that the
    /// strategy was built for.
    fn pick(
        &self,
        backends: &[Arc<Backend>],
        ctx: &PickContext,
        eligible: &dyn Fn(usize) -> bool,
    ) -> Option<usize>;
}

/// First SipHash-1-3 key of every hash in this module: the ASCII bytes of
/// `"l4lb-key"`, big-endian.
///
/// The key is fixed, not random per process, so two l4lb instances (or one instance
/// before and after a restart) with the same backend addresses send a client to the
/// same backend.
pub const HASH_KEY_0: u64 = u64::from_be_bytes(*b"l4lb-key");

/// Second SipHash-1-3 key: the ASCII bytes of `"siphash1"`, big-endian.
pub const HASH_KEY_1: u64 = u64::from_be_bytes(*b"siphash1");

/// Builds the strategy `config` names for `backends`, in the order `pick` will see
/// them.
///
/// Weights come from `Backend::weight()`; the hashing strategies identify a backend
/// by `Backend::address()`, so two instances built for the same addresses choose
/// alike.
///
/// `config.hash_version` names the mapping of the hashing strategies. Version 1
/// is the only one; its picks are frozen in `tests/data/hash_vectors.json`. A
/// changed mapping must be a new `HashVersion` variant dispatched on here, never
/// an edit of the version-1 code.
pub fn build(config: &StrategyConfig, backends: &[Arc<Backend>]) -> Box<dyn Strategy> {
    let HashVersion::V1 = config.hash_version;
    let backends = indexed(backends);
    match config.kind {
        StrategyKind::RoundRobin => Box::new(RoundRobin::new(backends)),
        StrategyKind::LeastConnections => Box::new(LeastConnections::new()),
        StrategyKind::PowerOfTwo => Box::new(PowerOfTwo::new(backends)),
        StrategyKind::Random => Box::new(Random::new(backends)),
        StrategyKind::LeastResponseTime => Box::new(LeastResponseTime::new()),
        StrategyKind::SourceHash => Box::new(SourceHash::new(backends, config.hash_key)),
        StrategyKind::ConsistentHash => Box::new(ConsistentHash::new(
            backends,
            config.hash_key,
            config.virtual_nodes,
        )),
        StrategyKind::Maglev => Box::new(Maglev::new(backends, config.hash_key, config.table_size)),
    }
}

/// The hash of a client that the hashing strategies place on their ring or table.
///
/// SipHash-1-3 keyed with `HASH_KEY_0`/`HASH_KEY_1` over the IP octets (4 bytes for
/// IPv4, 16 for IPv6; an IPv4-mapped IPv6 address hashes as its IPv4 form), followed,
/// for `HashKey::SourceIpPort`, by the port as 2 big-endian bytes.
///
/// The bytes go in as fixed-size integers (`write_u32(u32::from_le_bytes(b))`
/// hashes the bytes `b`), which the hasher folds in registers; the hash is the
/// same as writing the byte strings.
#[inline]
pub fn client_key_hash(client: SocketAddr, key: HashKey) -> u64 {
    let mut hasher = keyed_hasher();
    match client.ip().to_canonical() {
        IpAddr::V4(ip) => hasher.write_u32(u32::from_le_bytes(ip.octets())),
        IpAddr::V6(ip) => {
            let [high, low] = split_octets(ip.octets());
            hasher.write_u64(u64::from_le_bytes(high));
            hasher.write_u64(u64::from_le_bytes(low));
        }
    }
    if key == HashKey::SourceIpPort {
        hasher.write_u16(u16::from_le_bytes(client.port().to_be_bytes()));
    }
    hasher.finish()
}

/// The 16 octets of an IPv6 address as two halves.
fn split_octets(octets: [u8; 16]) -> [[u8; 8]; 2] {
    let mut halves = [[0u8; 8]; 2];
    halves[0].copy_from_slice(&octets[..8]);
    halves[1].copy_from_slice(&octets[8..]);
    halves
}

/// SipHash-1-3 with the module's fixed keys over the concatenation of `parts`.
///
/// Every hash in the balancer is this one. Callers keep the framing unambiguous
/// (fixed-size parts, or a single variable-size part followed by fixed-size ones).
pub fn keyed_hash(parts: &[&[u8]]) -> u64 {
    let mut hasher = keyed_hasher();
    for part in parts {
        hasher.write(part);
    }
    hasher.finish()
}

/// The hash of point number `point` of the backend configured as `address`: the
/// keyed SipHash of the address bytes followed by `point` as 8 big-endian bytes.
pub fn backend_point_hash(address: &str, point: u64) -> u64 {
    keyed_hash(&[address.as_bytes(), &point.to_be_bytes()])
}

fn keyed_hasher() -> SipHasher13 {
    SipHasher13::new_with_keys(HASH_KEY_0, HASH_KEY_1)
}

/// Backends past this index are never chosen: tables store indices as `u32`.
const MAX_INDEXED_BACKENDS: usize = u32::MAX as usize;

/// The backends a strategy indexes (all of them, short of 4 billion).
fn indexed(backends: &[Arc<Backend>]) -> &[Arc<Backend>] {
    &backends[..backends.len().min(MAX_INDEXED_BACKENDS)]
}

/// A backend index as stored in a strategy's table.
///
/// Lossless: every stored index is below `MAX_INDEXED_BACKENDS`.
fn table_index(index: usize) -> u32 {
    u32::try_from(index).unwrap_or(u32::MAX)
}

/// Whether `index` names a backend of `backends` that `eligible` allows.
///
/// Guards the strategies that index precomputed tables against a `backends` slice
/// shorter than the one they were built for.
#[inline]
fn is_usable(backends: &[Arc<Backend>], eligible: &dyn Fn(usize) -> bool, index: usize) -> bool {
    index < backends.len() && eligible(index)
}

/// One step of splitmix64: advances `state` and returns a well-mixed 64-bit value.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Maps a uniform 64-bit value onto `0..bound` (multiply-high, no division).
fn scale_to(value: u64, bound: u64) -> u64 {
    ((u128::from(value) * u128::from(bound)) >> 64) as u64
}

#[cfg(test)]
pub(crate) mod testing {
    //! Builders shared by the strategies' unit tests.

    use super::*;
    use std::net::Ipv4Addr;

    /// A backend named and addressed `address`.
    pub fn backend(address: &str, weight: u32) -> Arc<Backend> {
        Arc::new(Backend::new(address, address.parse().unwrap(), weight))
    }

    /// One backend per weight, at 10.0.x.y:80 in order.
    pub fn backends(weights: &[u32]) -> Vec<Arc<Backend>> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &weight)| backend(&backend_address(i), weight))
            .collect()
    }

    /// The address `backends` gives backend number `i`.
    pub fn backend_address(i: usize) -> String {
        let n = i + 1;
        format!("10.0.{}.{}:80", n / 256, n % 256)
    }

    /// A context for `client` with random number `random`.
    pub fn ctx(client: SocketAddr, random: u64) -> PickContext {
        PickContext {
            client,
            random,
            server_name: None,
        }
    }

    /// A deterministic client address derived from `seed`.
    pub fn client(seed: u64) -> SocketAddr {
        let mut state = seed;
        let bits = splitmix64(&mut state);
        let ip = Ipv4Addr::from((bits >> 32) as u32);
        SocketAddr::from((ip, bits as u16))
    }

    /// Deterministic pseudo-random numbers for tests.
    pub struct SplitMix(pub u64);

    impl SplitMix {
        pub fn next(&mut self) -> u64 {
            splitmix64(&mut self.0)
        }
    }

    pub fn all(_: usize) -> bool {
        true
    }

    pub fn none(_: usize) -> bool {
        false
    }

    /// A strategy config of `kind` with the default ring and table sizes.
    pub fn config(kind: StrategyKind, hash_key: HashKey) -> StrategyConfig {
        StrategyConfig {
            kind,
            hash_key,
            virtual_nodes: 160,
            table_size: 65537,
            hash_version: HashVersion::V1,
        }
    }

    /// Counts how often each backend is picked over `picks` picks, with a fresh
    /// client and random number each time.
    pub fn pick_counts(
        strategy: &dyn Strategy,
        backends: &[Arc<Backend>],
        picks: u64,
        eligible: &dyn Fn(usize) -> bool,
    ) -> Vec<u64> {
        let mut counts = vec![0; backends.len()];
        let mut rng = SplitMix(0x5EED);
        for _ in 0..picks {
            let ctx = ctx(client(rng.next()), rng.next());
            if let Some(i) = strategy.pick(backends, &ctx, eligible) {
                counts[i] += 1;
            }
        }
        counts
    }

    /// Asserts each backend's share of `counts` is within `tolerance` (absolute) of
    /// its share of the weights.
    pub fn assert_shares(counts: &[u64], weights: &[u32], tolerance: f64) {
        let total: u64 = counts.iter().sum();
        let weight_total: u32 = weights.iter().sum();
        for (count, &weight) in counts.iter().zip(weights) {
            let share = *count as f64 / total as f64;
            let ideal = f64::from(weight) / f64::from(weight_total);
            assert!(
                (share - ideal).abs() <= tolerance,
                "share {share} vs ideal {ideal} (counts {counts:?}, weights {weights:?})"
            );
        }
    }
}

#[cfg(test)]
pub(crate) mod hashing_checks {
    //! Checks every hashing strategy must pass, run from each strategy's tests.

    use super::testing::*;
    use super::*;

    pub fn clients(count: u64) -> Vec<SocketAddr> {
        (0..count).map(client).collect()
    }

    /// The address the strategy `config` names, built for `backends`, sends each
    /// client to.
    pub fn routes(
        config: &StrategyConfig,
        backends: &[Arc<Backend>],
        clients: &[SocketAddr],
        eligible: &dyn Fn(usize) -> bool,
    ) -> Vec<Option<String>> {
        let strategy = build(config, backends);
        clients
            .iter()
            .enumerate()
            .map(|(i, &client)| {
                let picked = strategy.pick(backends, &ctx(client, i as u64), eligible);
                picked.map(|index| backends[index].address().to_owned())
            })
            .collect()
    }

    /// How many clients each backend gets.
    pub fn key_counts(config: &StrategyConfig, weights: &[u32], count: u64) -> Vec<u64> {
        let backends = backends(weights);
        let strategy = build(config, &backends);
        let mut counts = vec![0; weights.len()];
        for client in clients(count) {
            if let Some(index) = strategy.pick(&backends, &ctx(client, 0), &all) {
                counts[index] += 1;
            }
        }
        counts
    }

    pub fn check_deterministic(kind: StrategyKind) {
        let config = config(kind, HashKey::SourceIpPort);
        let weights = [1, 2, 3, 4, 5];
        let clients = clients(3_000);
        let first = routes(&config, &backends(&weights), &clients, &all);
        let second = routes(&config, &backends(&weights), &clients, &all);
        assert_eq!(first, second);
        let other = backends(&weights);
        let strategy = build(&config, &other);
        for (i, &client) in clients.iter().enumerate() {
            // The random number plays no part in a hashing strategy's choice.
            let picked = strategy.pick(&other, &ctx(client, !(i as u64)), &all);
            assert_eq!(picked.map(|p| other[p].address().to_owned()), first[i]);
        }
        let distinct: std::collections::BTreeSet<_> = first.iter().collect();
        assert_eq!(distinct.len(), weights.len());
    }

    /// What removing one backend and rebuilding did to the clients' routes.
    pub struct Movement {
        pub clients: usize,
        /// Clients that were on the removed backend.
        pub on_removed: usize,
        /// Clients that were elsewhere and moved anyway.
        pub moved_from_others: usize,
    }

    pub fn removal_movement(kind: StrategyKind, weights: &[u32], removed: usize) -> Movement {
        let config = config(kind, HashKey::SourceIp);
        let full = backends(weights);
        let mut reduced = full.clone();
        reduced.remove(removed);
        let clients = clients(20_000);
        let before = routes(&config, &full, &clients, &all);
        let after = routes(&config, &reduced, &clients, &all);
        let removed_address = Some(full[removed].address().to_owned());
        let on_removed = before.iter().filter(|r| **r == removed_address).count();
        let moved_from_others = before
            .iter()
            .zip(&after)
            .filter(|(b, a)| **b != removed_address && b != a)
            .count();
        assert!(after.iter().all(|r| r.is_some() && *r != removed_address));
        Movement {
            clients: clients.len(),
            on_removed,
            moved_from_others,
        }
    }

    /// An ineligible backend's clients go elsewhere (spread over several backends);
    /// every other client stays put.
    pub fn check_ineligible_moves_only_its_keys(kind: StrategyKind) {
        let config = config(kind, HashKey::SourceIpPort);
        let backends = backends(&[1, 1, 2, 1, 1]);
        let clients = clients(5_000);
        let down = 2;
        let before = routes(&config, &backends, &clients, &all);
        let after = routes(&config, &backends, &clients, &|i| i != down);
        let down_address = Some(backends[down].address().to_owned());
        let mut refuge = std::collections::BTreeSet::new();
        for (b, a) in before.iter().zip(&after) {
            assert!(a.is_some() && *a != down_address);
            if *b == down_address {
                refuge.insert(a.clone());
            } else {
                assert_eq!(a, b);
            }
        }
        assert!(refuge.len() >= 3, "moved clients went to {refuge:?}");
    }

    /// `source_ip` ignores the client port; `source_ip_port` spreads one IP's ports.
    pub fn check_hash_key_behaviour(kind: StrategyKind) {
        let backends = backends(&[1, 1, 1, 1, 1]);
        let ports: Vec<SocketAddr> = (0..200)
            .map(|port| SocketAddr::from(([198, 51, 100, 9], 1024 + port)))
            .collect();
        let by_ip = routes(&config(kind, HashKey::SourceIp), &backends, &ports, &all);
        let distinct: std::collections::BTreeSet<_> = by_ip.iter().collect();
        assert_eq!(distinct.len(), 1);
        let config = config(kind, HashKey::SourceIpPort);
        let by_port = routes(&config, &backends, &ports, &all);
        let distinct: std::collections::BTreeSet<_> = by_port.iter().collect();
        assert_eq!(distinct.len(), 5);
    }

    pub fn check_none_when_nothing_is_eligible(kind: StrategyKind) {
        let backends = backends(&[1, 2, 3]);
        let strategy = build(&config(kind, HashKey::SourceIp), &backends);
        for client in clients(500) {
            assert_eq!(strategy.pick(&backends, &ctx(client, 0), &none), None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ipv4_mapped_ipv6_hashes_as_ipv4() {
        let v4: SocketAddr = "192.0.2.7:4000".parse().unwrap();
        let mapped: SocketAddr = "[::ffff:192.0.2.7]:4000".parse().unwrap();
        for key in [HashKey::SourceIp, HashKey::SourceIpPort] {
            assert_eq!(client_key_hash(v4, key), client_key_hash(mapped, key));
        }
    }

    #[test]
    fn source_ip_ignores_the_port_and_source_ip_port_does_not() {
        let a: SocketAddr = "192.0.2.7:4000".parse().unwrap();
        let b: SocketAddr = "192.0.2.7:4001".parse().unwrap();
        assert_eq!(
            client_key_hash(a, HashKey::SourceIp),
            client_key_hash(b, HashKey::SourceIp)
        );
        assert_ne!(
            client_key_hash(a, HashKey::SourceIpPort),
            client_key_hash(b, HashKey::SourceIpPort)
        );
    }

    #[test]
    fn client_hash_is_keyed_siphash13_of_octets_then_port() {
        let client: SocketAddr = "[2001:db8::1]:443".parse().unwrap();
        let octets: [u8; 16] = "2001:db8::1"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets();
        assert_eq!(
            client_key_hash(client, HashKey::SourceIp),
            keyed_hash(&[&octets])
        );
        assert_eq!(
            client_key_hash(client, HashKey::SourceIpPort),
            keyed_hash(&[&octets, &443u16.to_be_bytes()])
        );
        let client: SocketAddr = "192.0.2.7:4000".parse().unwrap();
        let octets = [192, 0, 2, 7];
        assert_eq!(
            client_key_hash(client, HashKey::SourceIp),
            keyed_hash(&[&octets])
        );
        assert_eq!(
            client_key_hash(client, HashKey::SourceIpPort),
            keyed_hash(&[&octets, &4000u16.to_be_bytes()])
        );
    }

    #[test]
    fn hash_keys_spell_their_documented_ascii() {
        assert_eq!(HASH_KEY_0.to_be_bytes(), *b"l4lb-key");
        assert_eq!(HASH_KEY_1.to_be_bytes(), *b"siphash1");
    }

    #[test]
    fn every_strategy_handles_no_backends_and_one_backend() {
        let one = backends(&[7]);
        for kind in StrategyKind::ALL {
            let config = config(kind, HashKey::SourceIp);
            let ctx = ctx(client(1), 1);
            assert_eq!(build(&config, &[]).pick(&[], &ctx, &all), None, "{kind}");
            let strategy = build(&config, &one);
            assert_eq!(strategy.pick(&one, &ctx, &all), Some(0), "{kind}");
            assert_eq!(strategy.pick(&one, &ctx, &none), None, "{kind}");
        }
    }

    #[test]
    fn every_strategy_tolerates_a_shorter_backend_slice() {
        let built_for = backends(&[1, 2, 3, 4]);
        let shorter = &built_for[..2];
        for kind in StrategyKind::ALL {
            let strategy = build(&config(kind, HashKey::SourceIpPort), &built_for);
            for seed in 0..200 {
                let ctx = ctx(client(seed), seed);
                let picked = strategy.pick(shorter, &ctx, &all);
                assert!(picked.is_some_and(|i| i < 2), "{kind}: {picked:?}");
            }
        }
    }

    fn small_config(
        kind: usize,
        by_port: bool,
        virtual_nodes: u32,
        table: usize,
    ) -> StrategyConfig {
        StrategyConfig {
            kind: StrategyKind::ALL[kind],
            hash_key: if by_port {
                HashKey::SourceIpPort
            } else {
                HashKey::SourceIp
            },
            virtual_nodes,
            table_size: table,
            hash_version: HashVersion::V1,
        }
    }

    proptest! {
        #[test]
        fn never_picks_an_ineligible_backend(
            weights in proptest::collection::vec(1u32..=1000, 0..24),
            mask in proptest::collection::vec(any::<bool>(), 24),
            randoms in proptest::collection::vec(any::<u64>(), 1..32),
            kind in 0usize..StrategyKind::ALL.len(),
            by_port in any::<bool>(),
            virtual_nodes in 0u32..8,
            table in prop::sample::select(vec![0usize, 1, 2, 3, 100, 251, 1009]),
        ) {
            let backends = backends(&weights);
            let config = small_config(kind, by_port, virtual_nodes, table);
            let strategy = build(&config, &backends);
            let eligible = |i: usize| mask[i];
            let any_eligible = (0..backends.len()).any(eligible);
            for random in randoms {
                let ctx = ctx(client(random), random);
                let picked = strategy.pick(&backends, &ctx, &eligible);
                prop_assert_eq!(picked.is_some(), any_eligible);
                if let Some(i) = picked {
                    prop_assert!(i < backends.len() && mask[i]);
                }
            }
        }
    }
}
