//! The frozen hash contract: every pick recorded in `tests/data/hash_vectors.json`
//! must come out the same today.
//!
//! Several l4lb instances behind ECMP send a client to the same backend only if
//! they compute the same mapping, and a rolling upgrade mixes versions. The file
//! was written by `cargo run --example hash_vectors` (the `sni_cases` added
//! later, every earlier line unchanged); this test never writes it. A failure here means a change moved clients: give the new mapping a new
//! `hash_version` instead of changing version 1.

use std::net::SocketAddr;
use std::sync::Arc;

use serde_json::Value;

use l4lb::backend::Backend;
use l4lb::balancer::{PickContext, build, sni_hash};
use l4lb::config::{HashKey, HashVersion, StrategyConfig, StrategyKind};

const VECTORS: &str = include_str!("data/hash_vectors.json");

struct Vectors {
    version: HashVersion,
    sets: Vec<(String, Vec<Arc<Backend>>)>,
    clients: Vec<SocketAddr>,
    cases: Vec<Value>,
    /// `hash_key = "sni"`: the client of every pick, the names, their cases.
    sni_client: SocketAddr,
    server_names: Vec<String>,
    sni_cases: Vec<Value>,
}

fn vectors() -> Vectors {
    let document: Value = serde_json::from_str(VECTORS).unwrap();
    let version = HashVersion::from_number(document["hash_version"].as_i64().unwrap()).unwrap();
    let sets = document["backend_sets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|set| (set["name"].as_str().unwrap().to_owned(), backends(set)))
        .collect();
    let clients = document["clients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().parse().unwrap())
        .collect();
    let cases = document["cases"].as_array().unwrap().clone();
    let server_names = document["server_names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_owned())
        .collect();
    Vectors {
        version,
        sets,
        clients,
        cases,
        sni_client: document["sni_client"].as_str().unwrap().parse().unwrap(),
        server_names,
        sni_cases: document["sni_cases"].as_array().unwrap().clone(),
    }
}

fn backends(set: &Value) -> Vec<Arc<Backend>> {
    set["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            let address = b["address"].as_str().unwrap();
            let weight = b["weight"].as_u64().unwrap() as u32;
            Arc::new(Backend::new(address, address.parse().unwrap(), weight))
        })
        .collect()
}

fn strategy_config(case: &Value, version: HashVersion) -> StrategyConfig {
    let hash_key = match case["hash_key"].as_str().unwrap() {
        "source_ip" => HashKey::SourceIp,
        "source_ip_port" => HashKey::SourceIpPort,
        "sni" => HashKey::Sni,
        other => panic!("unknown hash_key {other}"),
    };
    StrategyConfig {
        kind: StrategyKind::from_name(case["strategy"].as_str().unwrap()).unwrap(),
        hash_key,
        virtual_nodes: case["virtual_nodes"].as_u64().unwrap() as u32,
        table_size: case["table_size"].as_u64().unwrap() as usize,
        hash_version: version,
    }
}

/// "set strategy/hash_key/virtual_nodes/table_size excluding [..]".
fn describe(case: &Value) -> String {
    format!(
        "{} {}/{}/vn={}/table={} excluding {}",
        case["set"],
        case["strategy"],
        case["hash_key"],
        case["virtual_nodes"],
        case["table_size"],
        case["excluded"]
    )
}

/// Every pick of `cases` against the pick each context gets today: what
/// differs, and how many were compared.
fn mismatches(
    vectors: &Vectors,
    cases: &[Value],
    contexts: &[(String, PickContext)],
) -> (Vec<String>, usize) {
    let mut mismatches = Vec::new();
    let mut compared = 0;
    for case in cases {
        let set_name = case["set"].as_str().unwrap();
        let (_, backends) = vectors.sets.iter().find(|(n, _)| n == set_name).unwrap();
        let strategy = build(&strategy_config(case, vectors.version), backends);
        let excluded: Vec<usize> = case["excluded"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i.as_u64().unwrap() as usize)
            .collect();
        let eligible = |i: usize| !excluded.contains(&i);
        let expected = case["picks"].as_array().unwrap();
        assert_eq!(expected.len(), contexts.len(), "{}", describe(case));
        for ((who, ctx), want) in contexts.iter().zip(expected) {
            let got = strategy.pick(backends, ctx, &eligible);
            compared += 1;
            if got.map(|i| i as u64) != want.as_u64() {
                mismatches.push(format!(
                    "{}: {who} picked {got:?}, recorded {want}",
                    describe(case)
                ));
            }
        }
    }
    (mismatches, compared)
}

fn assert_unchanged(vectors: &Vectors, (mismatches, compared): (Vec<String>, usize)) {
    assert!(compared > 0);
    assert!(
        mismatches.is_empty(),
        "{} of {compared} recorded picks changed (hash_version {}); first ones:\n{}",
        mismatches.len(),
        vectors.version.number(),
        mismatches[..mismatches.len().min(10)].join("\n")
    );
}

fn context(client: SocketAddr, server_name: Option<u64>) -> PickContext {
    PickContext {
        client,
        random: 0,
        server_name,
    }
}

#[test]
fn every_recorded_pick_is_unchanged() {
    let vectors = vectors();
    let contexts: Vec<_> = vectors
        .clients
        .iter()
        .map(|&client| (format!("client {client}"), context(client, None)))
        .collect();
    let result = mismatches(&vectors, &vectors.cases, &contexts);
    assert_unchanged(&vectors, result);
}

/// `hash_key = "sni"`: each lower-cased server name goes where it was recorded.
#[test]
fn every_recorded_server_name_pick_is_unchanged() {
    let vectors = vectors();
    let contexts: Vec<_> = vectors
        .server_names
        .iter()
        .map(|name| {
            let ctx = context(vectors.sni_client, Some(sni_hash(name)));
            (format!("server name {name}"), ctx)
        })
        .collect();
    let result = mismatches(&vectors, &vectors.sni_cases, &contexts);
    assert_unchanged(&vectors, result);
}

/// The file covers what the contract promises, so it cannot silently shrink.
#[test]
fn the_vectors_cover_every_hashing_strategy_and_address_family() {
    let vectors = vectors();
    let strategies: std::collections::BTreeSet<&str> = vectors
        .cases
        .iter()
        .map(|c| c["strategy"].as_str().unwrap())
        .collect();
    assert_eq!(
        strategies.into_iter().collect::<Vec<_>>(),
        ["consistent_hash", "maglev", "source_hash"]
    );
    let sizes: Vec<usize> = vectors.sets.iter().map(|(_, b)| b.len()).collect();
    assert_eq!(sizes, [3, 10, 100]);
    let v6_backends = vectors
        .sets
        .iter()
        .flat_map(|(_, b)| b)
        .filter(|b| b.address().starts_with('['));
    assert!(v6_backends.count() >= 10);
    let v4 = vectors.clients.iter().filter(|c| c.is_ipv4()).count();
    assert!(v4 >= 100 && vectors.clients.len() - v4 >= 100);
    for key in ["source_ip", "source_ip_port"] {
        assert!(vectors.cases.iter().any(|c| c["hash_key"] == key));
    }
    let named: std::collections::BTreeSet<&str> = vectors
        .sni_cases
        .iter()
        .inspect(|c| assert_eq!(c["hash_key"], "sni"))
        .map(|c| c["strategy"].as_str().unwrap())
        .collect();
    assert_eq!(
        named.len(),
        3,
        "every hashing strategy has server-name vectors"
    );
    assert!(vectors.server_names.len() >= 80);
    assert!(
        vectors
            .cases
            .iter()
            .any(|c| c["excluded"] != serde_json::json!([]))
    );
}

/// An IPv4-mapped IPv6 client hashes as its IPv4 form: the recorded picks agree.
#[test]
fn mapped_clients_were_recorded_like_their_ipv4_form() {
    let vectors = vectors();
    let index_of = |addr: SocketAddr| vectors.clients.iter().position(|&c| c == addr).unwrap();
    let mut checked = 0;
    for (i, client) in vectors.clients.iter().enumerate() {
        let SocketAddr::V6(v6) = client else { continue };
        let Some(v4) = v6.ip().to_ipv4_mapped() else {
            continue;
        };
        let j = index_of(SocketAddr::from((v4, v6.port())));
        for case in &vectors.cases {
            assert_eq!(case["picks"][i], case["picks"][j], "{}", describe(case));
            checked += 1;
        }
    }
    assert!(checked > 0);
}
