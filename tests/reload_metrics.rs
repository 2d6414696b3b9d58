//! One backend identity (service + address) across reloads: while sessions of a
//! changed backend's previous settings drain, `/metrics` has exactly one series per
//! metric for it (gauges summed over its copies, counters that never go down, `up`
//! from the live copy) and `/status` lists it once. Every scrape goes through
//! promtool.

mod common;

use std::net::SocketAddr;

use common::{
    Behaviour, TestBackend, TestProxy, assert_promtool_accepts, get_ok, read_tag, samples,
    wait_until,
};
use tokio::net::TcpStream;

const ADMIN: &str = "[admin]\nlisten = \"127.0.0.1:0\"\n";

/// Service "svc" with `extra` keys over one backend at `backend` with `backend_keys`.
fn config(extra: &str, backend: SocketAddr, backend_keys: &str) -> String {
    format!(
        "{ADMIN}[[service]]\nname = \"svc\"\nlisten = \"127.0.0.1:0\"\n{extra}\n\
         [[service.backend]]\naddress = \"{backend}\"\n{backend_keys}\n"
    )
}

/// A scrape that promtool accepts.
async fn scrape(admin: SocketAddr) -> String {
    let text = get_ok(admin, "/metrics").await;
    assert_promtool_accepts(&text);
    text
}

/// The one series of `name` for `backend` of "svc"; panics unless there is exactly one.
fn one_series(text: &str, name: &str, backend: SocketAddr) -> f64 {
    let address = backend.to_string();
    let found = samples(text, name, &[("service", "svc"), ("backend", &address)]);
    assert_eq!(found.len(), 1, "{name} for {address}: {found:?}\n{text}");
    found[0].1
}

async fn status_entries(admin: SocketAddr, backend: SocketAddr) -> Vec<serde_json::Value> {
    let status: serde_json::Value =
        serde_json::from_str(&get_ok(admin, "/status").await).expect("status is JSON");
    status["services"][0]["backends"]
        .as_array()
        .expect("backends")
        .iter()
        .filter(|b| b["address"] == backend.to_string())
        .cloned()
        .collect()
}

async fn session(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    assert_eq!(read_tag(&mut stream).await, "a");
    stream
}

#[tokio::test]
async fn a_backend_whose_weight_changes_keeps_one_series_per_metric_while_its_old_session_drains() {
    let a = TestBackend::start("a", Behaviour::Tagged).await;
    let checks = "[service.health]\ninterval = \"50ms\"\ntimeout = \"50ms\"";
    let proxy = TestProxy::start(&config(checks, a.addr, "weight = 1")).await;
    let (addr, admin) = (proxy.addr("svc"), proxy.admin.expect("admin"));
    let old_session = session(addr).await;

    proxy
        .reload(&config(checks, a.addr, "weight = 2"))
        .await
        .expect("reload");
    let new_session = session(addr).await;
    let text = scrape(admin).await;
    assert_eq!(one_series(&text, "l4lb_backend_up", a.addr), 1.0, "{text}");
    assert_eq!(one_series(&text, "l4lb_active_connections", a.addr), 2.0);
    assert_eq!(one_series(&text, "l4lb_connections_total", a.addr), 2.0);
    let entries = status_entries(admin, a.addr).await;
    assert_eq!(entries.len(), 1, "listed once: {entries:?}");
    assert_eq!(entries[0]["state"], "up");
    assert_eq!(entries[0]["weight"], 2);
    assert_eq!(entries[0]["active_connections"], 2);
    assert_eq!(entries[0]["total_connections"], 2);

    drop(old_session);
    let backend = std::sync::Arc::clone(&proxy.current("svc").backends()[0]);
    wait_until("the old session ended", || backend.active() == 1).await;
    let text = scrape(admin).await;
    assert_eq!(
        one_series(&text, "l4lb_connections_total", a.addr),
        2.0,
        "a counter never goes down"
    );
    assert_eq!(one_series(&text, "l4lb_active_connections", a.addr), 1.0);
    assert_eq!(one_series(&text, "l4lb_backend_up", a.addr), 1.0);
    drop(new_session);
    proxy.assert_drained().await;
    scrape(admin).await;
}

#[tokio::test]
async fn removing_the_outlier_table_keeps_every_backends_counters_and_health() {
    let a = TestBackend::start("a", Behaviour::Tagged).await;
    let checks = "[service.health]\ninterval = \"50ms\"\ntimeout = \"50ms\"";
    let outlier = "[service.outlier]\nconsecutive_failures = 3\nejection_time = \"10s\"";
    let proxy = TestProxy::start(&config(&format!("{checks}\n{outlier}"), a.addr, "")).await;
    let (addr, admin) = (proxy.addr("svc"), proxy.admin.expect("admin"));
    for _ in 0..3 {
        drop(session(addr).await);
    }
    let backend = std::sync::Arc::clone(&proxy.current("svc").backends()[0]);
    wait_until("a passed a check", || {
        backend.health_snapshot(std::time::Instant::now()).passed >= 1
    })
    .await;
    proxy.assert_drained().await;

    proxy
        .reload(&config(checks, a.addr, ""))
        .await
        .expect("reload");
    let text = scrape(admin).await;
    assert_eq!(one_series(&text, "l4lb_connections_total", a.addr), 3.0);
    let entries = status_entries(admin, a.addr).await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0]["total_connections"], 3);
    let passed = entries[0]["health"]["checks_passed"].as_u64();
    assert!(passed >= Some(1), "health history kept: {entries:?}");
    drop(session(addr).await);
    let text = scrape(admin).await;
    assert_eq!(one_series(&text, "l4lb_connections_total", a.addr), 4.0);
}
