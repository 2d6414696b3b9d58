//! `GET /ready` over real sockets: 200 only while serving with a backend
//! available for every service (or the one named), 503 naming why, 404 for an
//! unknown service, no token needed; and the shutdown order with `drain_delay`:
//! `/ready` turns 503 first, the listeners keep accepting for the delay, then
//! close, and open sessions finish.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{
    Behaviour, PATIENCE, TestBackend, TestProxy, echo_round_trip, http, read_until_closed,
    refusing_addrs,
};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// A service named `name` with a fast tcp check of its one backend at `backend`.
fn checked_service(name: &str, backend: SocketAddr) -> String {
    format!(
        "[[service]]\nname = \"{name}\"\nlisten = \"127.0.0.1:0\"\n\
         [service.health]\ninterval = \"100ms\"\ntimeout = \"50ms\"\nrise = 1\nfall = 1\n\
         [[service.backend]]\naddress = \"{backend}\"\n"
    )
}

/// Polls `path` until it answers `status` (bounded by `PATIENCE`); the body.
async fn wait_for_status(admin: SocketAddr, path: &str, status: u16) -> String {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let (got, body) = http(admin, "GET", path).await;
        if got == status {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "GET {path} stayed {got} ({body:?}), expected {status}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn ready_names_the_services_without_an_available_backend() {
    let live = TestBackend::start("live", Behaviour::Echo).await;
    let [dead] = refusing_addrs::<1>().await;
    let toml = format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"secret\"\n{}{}",
        checked_service("web", live.addr),
        checked_service("db", dead)
    );
    let proxy = TestProxy::start(&toml).await;
    let admin = proxy.admin.expect("admin");

    // No token needed, although the runtime API has one.
    let body = wait_for_status(admin, "/ready", 503).await;
    assert_eq!(body, "no backend available: db\n");
    assert_eq!(
        http(admin, "GET", "/ready?service=web").await,
        (200, "ready\n".into())
    );
    assert_eq!(
        http(admin, "GET", "/ready?service=db").await,
        (503, "no backend available: db\n".into())
    );
    assert_eq!(
        http(admin, "GET", "/ready?service=nope").await,
        (404, r#"{"error":"no service \"nope\""}"#.into())
    );
    assert_eq!(http(admin, "GET", "/ready?servce=web").await.0, 400);
    assert_eq!(http(admin, "HEAD", "/ready?service=web").await.0, 200);

    // Its only backend down, the other service withdraws too.
    live.stop();
    let body = wait_for_status(admin, "/ready?service=web", 503).await;
    assert_eq!(body, "no backend available: web\n");
    assert_eq!(
        http(admin, "GET", "/ready").await,
        (503, "no backend available: web, db\n".into())
    );
    proxy.stop().await;
}

#[tokio::test]
async fn shutdown_says_not_ready_first_then_stops_accepting_after_the_drain_delay() {
    let backend = TestBackend::start("b", Behaviour::Echo).await;
    let toml = format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n[global]\ndrain_delay = \"4s\"\n\
         [[service]]\nname = \"svc\"\nlisten = \"127.0.0.1:0\"\n\
         [[service.backend]]\naddress = \"{}\"\n",
        backend.addr
    );
    let proxy = TestProxy::start(&toml).await;
    let admin = proxy.admin.expect("admin");
    let addr = proxy.addr("svc");
    assert_eq!(http(admin, "GET", "/ready").await, (200, "ready\n".into()));
    let mut open = TcpStream::connect(addr).await.expect("connect");
    echo_round_trip(&mut open, b"before").await;

    proxy.handle.shutdown();
    assert_eq!(
        http(admin, "GET", "/ready").await,
        (503, "draining\n".into())
    );
    assert_eq!(http(admin, "GET", "/healthz").await.0, 503);
    // Withdrawn, but still accepting: a client whose router has not moved yet
    // is served in full.
    let mut late = TcpStream::connect(addr).await.expect("still accepting");
    echo_round_trip(&mut late, b"during the drain delay").await;

    // After the delay the listener closes; open sessions carry on.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while TcpStream::connect(addr).await.is_ok() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "listener never closed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for session in [&mut open, &mut late] {
        echo_round_trip(session, b"after").await;
        session.shutdown().await.expect("half-close");
        assert!(
            read_until_closed(session)
                .await
                .expect("clean end")
                .is_empty()
        );
    }
    let report = proxy.stop().await;
    assert!(report.completed);
}

#[tokio::test]
async fn a_second_stop_ends_the_drain_delay_at_once() {
    let backend = TestBackend::start("b", Behaviour::Echo).await;
    let toml = format!(
        "[global]\ndrain_delay = \"1h\"\n\
         [[service]]\nname = \"svc\"\nlisten = \"127.0.0.1:0\"\n\
         [[service.backend]]\naddress = \"{}\"\n",
        backend.addr
    );
    let proxy = TestProxy::start(&toml).await;
    proxy.handle.shutdown();
    proxy.handle.close_now();
    // Bounded by PATIENCE inside stop(): an hour's delay would fail it.
    let report = proxy.stop().await;
    assert!(report.completed);
}
