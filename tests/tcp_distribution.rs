//! Which backend clients land on, per strategy, seen from real clients.

mod common;

use std::collections::HashMap;

use common::{
    Behaviour, TestBackend, TestProxy, backend_blocks, connect_from, read_tag,
    tag_of_new_connection,
};
use tokio::net::TcpStream;

async fn tagged_backends(names: &[&str]) -> Vec<TestBackend> {
    let mut backends = Vec::new();
    for name in names {
        backends.push(TestBackend::start(name, Behaviour::Tagged).await);
    }
    backends
}

fn service(strategy: &str, backends: &[TestBackend], weights: &[u32]) -> String {
    let addrs: Vec<_> = backends.iter().map(|b| b.addr).collect();
    format!(
        "[[service]]\nname = \"svc\"\nlisten = \"127.0.0.1:0\"\nstrategy = \"{strategy}\"\n{}",
        backend_blocks(&addrs, weights)
    )
}

#[tokio::test]
async fn round_robin_gives_exact_weighted_shares() {
    let backends = tagged_backends(&["a", "b", "c"]).await;
    let proxy = TestProxy::start(&service("round_robin", &backends, &[2, 1, 1])).await;
    let mut counts: HashMap<String, usize> = HashMap::new();
    for _ in 0..400 {
        *counts
            .entry(tag_of_new_connection(proxy.addr("svc")).await)
            .or_default() += 1;
    }
    assert_eq!(counts["a"], 200);
    assert_eq!(counts["b"], 100);
    assert_eq!(counts["c"], 100);
    proxy.assert_drained().await;
}

#[tokio::test]
async fn least_connections_sends_new_clients_away_from_busy_backends() {
    let backends = tagged_backends(&["a", "b", "c"]).await;
    let proxy = TestProxy::start(&service("least_connections", &backends, &[])).await;
    let addr = proxy.addr("svc");

    // Three held connections spread over the three backends.
    let mut held: HashMap<String, TcpStream> = HashMap::new();
    for _ in 0..3 {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let tag = read_tag(&mut stream).await;
        assert!(
            held.insert(tag.clone(), stream).is_none(),
            "{tag} got two of three"
        );
    }
    // Free "b": the next clients must all go there while "a" and "c" stay busy.
    drop(held.remove("b"));
    common::wait_until("b is idle", || {
        proxy.service("svc").backends()[1].active() == 0
    })
    .await;
    let mut again = TcpStream::connect(addr).await.expect("connect");
    assert_eq!(read_tag(&mut again).await, "b");
    drop(again);
    drop(held);
    proxy.assert_drained().await;
}

/// 60 clients from distinct 127.0.x.y addresses connect three times each: each
/// keeps its backend, and the clients spread over every backend.
async fn clients_keep_their_backend(strategy: &str) {
    let backends = tagged_backends(&["a", "b", "c"]).await;
    let proxy = TestProxy::start(&service(strategy, &backends, &[])).await;
    let addr = proxy.addr("svc");
    let mut seen = HashMap::new();
    for client in 0..60u8 {
        let source = [127, 0, 1 + client / 200, 10 + client % 200];
        let mut first = None;
        for _ in 0..3 {
            let mut stream = connect_from(source, addr).await;
            let tag = read_tag(&mut stream).await;
            assert_eq!(
                first.get_or_insert_with(|| tag.clone()),
                &tag,
                "{source:?} moved"
            );
        }
        *seen.entry(first.unwrap_or_default()).or_insert(0) += 1;
    }
    assert_eq!(seen.len(), 3, "clients spread over all backends: {seen:?}");
    proxy.assert_drained().await;
}

#[tokio::test]
async fn source_hash_keeps_each_client_on_its_backend() {
    clients_keep_their_backend("source_hash").await;
}

#[tokio::test]
async fn maglev_keeps_each_client_on_its_backend() {
    clients_keep_their_backend("maglev").await;
}

#[tokio::test]
async fn consistent_hash_keeps_each_client_on_its_backend() {
    clients_keep_their_backend("consistent_hash").await;
}

#[tokio::test]
async fn every_strategy_serves_clients() {
    for strategy in [
        "round_robin",
        "least_connections",
        "power_of_two",
        "random",
        "least_response_time",
        "source_hash",
        "consistent_hash",
        "maglev",
    ] {
        let backends = tagged_backends(&["a", "b"]).await;
        let proxy = TestProxy::start(&service(strategy, &backends, &[3, 1])).await;
        for _ in 0..20 {
            let tag = tag_of_new_connection(proxy.addr("svc")).await;
            assert!(tag == "a" || tag == "b", "{strategy}: unexpected tag {tag}");
        }
        proxy.assert_drained().await;
        assert!(proxy.stop().await.completed, "{strategy}: drain");
    }
}
