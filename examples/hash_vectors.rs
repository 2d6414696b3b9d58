//! Writes the golden vectors of the hashing strategies: `tests/data/hash_vectors.json`.
//!
//! ```sh
//! cargo run --example hash_vectors > tests/data/hash_vectors.json
//! ```
//!
//! The file records, for hash version 1, which backend `source_hash`,
//! `consistent_hash` and `maglev` pick for each of 203 client addresses (IPv4,
//! IPv6, IPv4-mapped IPv6, edge values), over three backend sets (3 equal IPv4
//! backends; 10 weighted IPv6 ones; 100 mixed IPv4/IPv6 with weights up to
//! 1000), with both `hash_key`s, with every backend eligible and with one
//! excluded (the order a hashing strategy falls back in). `sni_cases` record the
//! same for `hash_key = "sni"`: the pick for each of 80 lower-cased server names
//! (as l4lb hashes them), over the same sets and strategies; a client without a
//! name hashes as `source_ip`, which `cases` cover. `tests/hash_vectors.rs`
//! recomputes every pick and fails if one differs: the picks are a contract
//! between l4lb instances of different versions. Run this only when adding a
//! new `hash_version` or vectors for what no vector covered yet (then check that
//! the diff only adds lines); never to make that test pass.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use serde_json::{Value, json};

use l4lb::backend::Backend;
use l4lb::balancer::{PickContext, build, sni_hash};
use l4lb::config::{HashKey, HashVersion, StrategyConfig, StrategyKind};

/// A strategy and its size parameter, as the vectors name them.
const STRATEGIES: [(StrategyKind, u32, usize); 5] = [
    (StrategyKind::SourceHash, 160, 65537),
    (StrategyKind::ConsistentHash, 160, 65537),
    (StrategyKind::ConsistentHash, 7, 65537),
    (StrategyKind::Maglev, 160, 65537),
    (StrategyKind::Maglev, 160, 251),
];

const HASH_KEYS: [HashKey; 2] = [HashKey::SourceIp, HashKey::SourceIpPort];

/// The client of every `sni_cases` pick (its address plays no part when a name is hashed).
const SNI_CLIENT: &str = "192.0.2.1:40000";

fn main() {
    let sets = backend_sets();
    let clients = clients();
    let names = server_names();
    let client_contexts: Vec<PickContext> = clients.iter().map(|&c| context(c, None)).collect();
    let sni_client = SNI_CLIENT.parse().unwrap_or(SocketAddr::from(([0; 4], 0)));
    let name_contexts: Vec<PickContext> = names
        .iter()
        .map(|name| context(sni_client, Some(sni_hash(name))))
        .collect();
    let mut cases = Vec::new();
    let mut sni_cases = Vec::new();
    for (set_name, set) in &sets {
        let backends = to_backends(set);
        for strategy in STRATEGIES {
            for hash_key in HASH_KEYS {
                cases.extend(cases_for(
                    set_name,
                    &backends,
                    strategy,
                    hash_key,
                    &client_contexts,
                ));
            }
            let named = cases_for(set_name, &backends, strategy, HashKey::Sni, &name_contexts);
            sni_cases.extend(named);
        }
    }
    print_document(&sets, &clients, &cases, &names, &sni_cases);
}

/// The cases of one set, strategy and key: every backend eligible, then backend 1 excluded.
fn cases_for(
    set_name: &str,
    backends: &[Arc<Backend>],
    (kind, virtual_nodes, table_size): (StrategyKind, u32, usize),
    hash_key: HashKey,
    contexts: &[PickContext],
) -> Vec<Value> {
    [vec![], vec![1]]
        .into_iter()
        .map(|excluded| {
            let config = StrategyConfig {
                kind,
                hash_key,
                virtual_nodes,
                table_size,
                hash_version: HashVersion::V1,
            };
            let picks = picks(&config, backends, contexts, &excluded);
            json!({
                "set": set_name, "strategy": kind.as_str(), "hash_key": hash_key.as_str(),
                "virtual_nodes": virtual_nodes, "table_size": table_size,
                "excluded": excluded, "picks": picks,
            })
        })
        .collect()
}

fn context(client: SocketAddr, server_name: Option<u64>) -> PickContext {
    PickContext {
        client,
        random: 0,
        server_name,
    }
}

/// The backend `config` picks for each client, as an index into `backends`.
fn picks(
    config: &StrategyConfig,
    backends: &[Arc<Backend>],
    contexts: &[PickContext],
    excluded: &[usize],
) -> Vec<Option<usize>> {
    let strategy = build(config, backends);
    let eligible = |i: usize| !excluded.contains(&i);
    contexts
        .iter()
        .map(|ctx| strategy.pick(backends, ctx, &eligible))
        .collect()
}

/// One JSON value per line for the cases, so a changed pick shows as a small diff.
fn print_document(
    sets: &[(String, Vec<(String, u32)>)],
    clients: &[SocketAddr],
    cases: &[Value],
    names: &[String],
    sni_cases: &[Value],
) {
    let sets: Vec<Value> = sets
        .iter()
        .map(|(name, backends)| {
            let backends: Vec<Value> = backends
                .iter()
                .map(|(address, weight)| json!({"address": address, "weight": weight}))
                .collect();
            json!({"name": name, "backends": backends})
        })
        .collect();
    let clients: Vec<String> = clients.iter().map(SocketAddr::to_string).collect();
    println!("{{");
    println!("\"hash_version\": 1,");
    println!("\"generated_by\": \"cargo run --example hash_vectors\",");
    println!("\"backend_sets\": {},", json!(sets));
    println!("\"clients\": {},", json!(clients));
    println!("\"cases\": [");
    print_lines(cases);
    println!("],");
    println!("\"sni_client\": {},", json!(SNI_CLIENT));
    println!("\"server_names\": {},", json!(names));
    println!("\"sni_cases\": [");
    print_lines(sni_cases);
    println!("]");
    println!("}}");
}

fn print_lines(values: &[Value]) {
    for (i, value) in values.iter().enumerate() {
        let comma = if i + 1 < values.len() { "," } else { "" };
        println!("{value}{comma}");
    }
}

/// 80 server names, lower-cased as l4lb hashes them: 64 of a fleet's shapes
/// (`db7.eu.example.com`, ...), then edge values (one label, a punycode label,
/// digits and hyphens, the longest name DNS allows).
fn server_names() -> Vec<String> {
    let regions = ["eu", "us", "ap", "sa"];
    let mut names: Vec<String> = (0..64)
        .map(|i| format!("db{i}.{}.example.com", regions[i % 4]))
        .collect();
    let longest = format!(
        "{}.{}.{}.{}",
        "a".repeat(63),
        "b".repeat(63),
        "c".repeat(63),
        "d".repeat(61)
    );
    names.extend(
        [
            "localhost",
            "example.com",
            "www.example.com",
            "xn--bcher-kva.example",
            "a.b.c.d.e.f.g.example.org",
            "api-v2.internal",
            "0.example.net",
            "123-456.example.net",
            "tenant-42.saas.example.io",
            "grpc.svc.cluster.local",
            "redis.cache.svc.cluster.local",
            "x",
            "mail.example.co.uk",
            "_acme.example.com",
            "db1.example.com",
        ]
        .map(String::from),
    );
    names.push(longest);
    names
}

type BackendSet = Vec<(String, u32)>;

fn backend_sets() -> Vec<(String, BackendSet)> {
    let three = (1..=3).map(|i| (format!("10.0.0.{i}:5432"), 1)).collect();
    let ten_weights = [1, 2, 3, 5, 8, 1, 1, 10, 4, 2];
    let ten = ten_weights
        .iter()
        .enumerate()
        .map(|(i, &w)| (format!("[2001:db8::a:{}]:443", i + 1), w))
        .collect();
    let hundred = (0..100u32)
        .map(|i| {
            let address = if i % 2 == 0 {
                format!("10.1.{}.{}:6379", i / 50, i % 50 + 1)
            } else {
                format!("[fd00::{:x}]:6379", i + 1)
            };
            let weight = if i == 42 { 1000 } else { i * 7 % 13 + 1 };
            (address, weight)
        })
        .collect();
    vec![
        ("three-ipv4-equal".to_owned(), three),
        ("ten-ipv6-weighted".to_owned(), ten),
        ("hundred-mixed".to_owned(), hundred),
    ]
}

fn to_backends(set: &[(String, u32)]) -> Vec<Arc<Backend>> {
    set.iter()
        .map(|(address, weight)| {
            let addr: SocketAddr = address.parse().unwrap_or(SocketAddr::from(([0; 4], 0)));
            Arc::new(Backend::new(address.clone(), addr, *weight))
        })
        .collect()
}

/// 100 IPv4 clients, 80 IPv6, the first 20 IPv4 again as IPv4-mapped IPv6, and
/// three edge values: deterministic, from splitmix64.
fn clients() -> Vec<SocketAddr> {
    let mut state = 0x1A1B_2021_u64;
    let mut next = move || splitmix64(&mut state);
    let v4: Vec<SocketAddr> = (0..100)
        .map(|_| {
            let bits = next();
            SocketAddr::from((Ipv4Addr::from((bits >> 32) as u32), bits as u16))
        })
        .collect();
    let v6 = (0..80).map(|_| {
        let ip = Ipv6Addr::from((u128::from(next()) << 64) | u128::from(next()));
        SocketAddr::from((ip, next() as u16))
    });
    let mapped = v4.iter().take(20).map(|client| match client.ip() {
        IpAddr::V4(ip) => SocketAddr::from((ip.to_ipv6_mapped(), client.port())),
        IpAddr::V6(_) => *client,
    });
    let edges = ["0.0.0.0:0", "255.255.255.255:65535", "[::]:0"]
        .map(|text| text.parse().unwrap_or(SocketAddr::from(([0; 4], 0))));
    let mut all = v4.clone();
    all.extend(v6);
    all.extend(mapped);
    all.extend(edges);
    all
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
