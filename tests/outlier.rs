//! Passive ejection (`[service.outlier]`) meeting active checks: a health check
//! that passes after the ejection began ends it, and `/status` says until when a
//! backend is out.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use common::{Behaviour, TestBackend, TestProxy, get_ok, read_until_closed, wait_until};
use tokio::net::TcpStream;

const ADMIN: &str = "[admin]\nlisten = \"127.0.0.1:0\"\n";

fn config(backend: SocketAddr, health: &str) -> String {
    format!(
        "{ADMIN}[[service]]\nname = \"svc\"\nlisten = \"127.0.0.1:0\"\nconnect_attempts = 1\n\
         [service.outlier]\nconsecutive_failures = 1\nejection_time = \"1h\"\n{health}\n\
         [[service.backend]]\naddress = \"{backend}\"\n"
    )
}

async fn backend_status(admin: SocketAddr) -> serde_json::Value {
    let status: serde_json::Value =
        serde_json::from_str(&get_ok(admin, "/status").await).expect("status is JSON");
    status["services"][0]["backends"][0].clone()
}

/// Waits until nothing listens on `addr` any more (a stopped test backend's
/// listener closes asynchronously).
async fn wait_until_refused(addr: SocketAddr) {
    let deadline = tokio::time::Instant::now() + common::PATIENCE;
    while TcpStream::connect(addr).await.is_ok() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{addr} still accepts"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// A client that is closed unserved (its one connect attempt fails).
async fn refused_client(addr: SocketAddr) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let _ = read_until_closed(&mut stream).await;
}

#[tokio::test]
async fn a_backend_ejected_while_down_returns_as_soon_as_its_checks_pass_again() {
    let a = TestBackend::start("a", Behaviour::Tagged).await;
    let checks = "[service.health]\ninterval = \"50ms\"\ntimeout = \"50ms\"\nrise = 2\nfall = 2";
    let proxy = TestProxy::start(&config(a.addr, checks)).await;
    let (addr, admin) = (proxy.addr("svc"), proxy.admin.expect("admin"));
    let backend = Arc::clone(&proxy.current("svc").backends()[0]);
    assert!(backend_status(admin).await["ejected_until"].is_null());

    a.stop();
    wait_until_refused(a.addr).await;
    refused_client(addr).await;
    assert!(backend.is_ejected(Instant::now()), "one failure ejects it");
    let status = backend_status(admin).await;
    let remaining = status["ejected_until"].as_f64().expect("seconds from now");
    assert!(remaining > 3000.0 && remaining <= 3600.0, "{status}");
    wait_until("a marked down", || !backend.is_healthy()).await;

    let _a = TestBackend::start_at("a", Behaviour::Tagged, a.addr).await;
    wait_until("a marked up", || backend.is_healthy()).await;
    assert!(
        !backend.is_ejected(Instant::now()),
        "passing checks ended the ejection"
    );
    assert_eq!(common::tag_of_new_connection(addr).await, "a");
    let status = backend_status(admin).await;
    assert_eq!(status["state"], "up");
    assert!(status["ejected_until"].is_null(), "{status}");
}

#[tokio::test]
async fn without_active_checks_an_ejection_lasts_its_ejection_time() {
    let [dead] = common::refusing_addrs::<1>().await;
    let proxy = TestProxy::start(&config(dead, "")).await;
    let (addr, admin) = (proxy.addr("svc"), proxy.admin.expect("admin"));
    let backend = Arc::clone(&proxy.current("svc").backends()[0]);
    refused_client(addr).await;
    let a = TestBackend::start_at("a", Behaviour::Tagged, dead).await;
    assert!(backend.is_ejected(Instant::now()));
    refused_client(addr).await;
    let status = backend_status(admin).await;
    assert_eq!(status["state"], "down");
    assert!(status["ejected_until"].as_f64() > Some(3000.0), "{status}");
    assert_eq!(a.accepted(), 0);
}
