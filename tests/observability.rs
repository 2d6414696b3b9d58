//! The admin endpoint over real HTTP: exact metrics after known traffic, promtool's
//! verdict on a real scrape, /status, /healthz, and the error routes.

mod common;

use std::sync::Arc;

use common::{
    Behaviour, TestBackend, TestProxy, backend_blocks, get_ok, http, read_until_closed,
    refusing_addrs, wait_until,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const ADMIN: &str = "[admin]\nlisten = \"127.0.0.1:0\"\n";

/// Sums every sample of `name` whose labels include all of `labels`.
fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    common::samples(text, name, labels)
        .iter()
        .map(|(_, value)| value)
        .sum()
}

async fn echo_exchange(addr: std::net::SocketAddr, payload: &[u8]) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(payload).await.expect("send");
    stream.shutdown().await.expect("half-close");
    let echoed = read_until_closed(&mut stream).await.expect("echo");
    assert_eq!(echoed.len(), payload.len());
}

#[tokio::test]
async fn counters_are_exact_after_known_traffic() {
    let a = TestBackend::start("a", Behaviour::Echo).await;
    let b = TestBackend::start("b", Behaviour::Echo).await;
    let [dead] = refusing_addrs::<1>().await;
    let toml = format!(
        "{ADMIN}[[service]]\nname = \"echo\"\nlisten = \"127.0.0.1:0\"\n{}\n\
         [[service]]\nname = \"dead\"\nlisten = \"127.0.0.1:0\"\nconnect_attempts = 1\n{}",
        backend_blocks(&[a.addr, b.addr], &[]),
        backend_blocks(&[dead], &[])
    );
    let proxy = TestProxy::start(&toml).await;
    let payload = vec![7u8; 1000];
    for _ in 0..20 {
        echo_exchange(proxy.addr("echo"), &payload).await;
    }
    for _ in 0..3 {
        let mut refused = TcpStream::connect(proxy.addr("dead"))
            .await
            .expect("connect");
        let _ = read_until_closed(&mut refused).await;
    }
    proxy.assert_drained().await;

    let text = get_ok(proxy.admin.expect("admin"), "/metrics").await;
    let echo = [("service", "echo")];
    assert_eq!(metric(&text, "l4lb_connections_total", &echo), 20.0);
    assert_eq!(metric(&text, "l4lb_active_connections", &echo), 0.0);
    let upstream = [("service", "echo"), ("direction", "upstream")];
    let downstream = [("service", "echo"), ("direction", "downstream")];
    assert_eq!(metric(&text, "l4lb_bytes_total", &upstream), 20_000.0);
    assert_eq!(metric(&text, "l4lb_bytes_total", &downstream), 20_000.0);
    assert_eq!(
        metric(&text, "l4lb_session_duration_seconds_count", &echo),
        20.0
    );
    assert_eq!(
        metric(&text, "l4lb_connect_duration_seconds_count", &echo),
        20.0
    );
    let dead_reject = [("service", "dead"), ("reason", "backend_connect")];
    assert_eq!(
        metric(&text, "l4lb_rejected_connections_total", &dead_reject),
        3.0
    );
    let dead_service = [("service", "dead")];
    assert_eq!(
        metric(&text, "l4lb_backend_connect_failures_total", &dead_service),
        3.0
    );
    assert_eq!(metric(&text, "l4lb_connections_total", &dead_service), 0.0);
    assert_eq!(metric(&text, "l4lb_backend_up", &echo), 2.0);
    assert!(text.contains("l4lb_build_info{version=\""));
    assert!(
        text.contains("process_open_fds"),
        "process metrics are exported"
    );
}

#[tokio::test]
async fn promtool_accepts_a_real_scrape() {
    let Ok(status) = std::process::Command::new("promtool")
        .arg("--version")
        .output()
    else {
        panic!("promtool is required (Debian package `prometheus`; scripts/test.sh installs it)");
    };
    assert!(status.status.success());
    let a = TestBackend::start("a", Behaviour::Echo).await;
    let udp_backend = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("udp");
    let toml = format!(
        "{ADMIN}[[service]]\nname = \"svc\"\nlisten = \"127.0.0.1:0\"\n\
         [service.health]\ninterval = \"50ms\"\ntimeout = \"50ms\"\n{}\n\
         [[service]]\nname = \"dns\"\nprotocol = \"udp\"\nlisten = \"127.0.0.1:0\"\n\
         [[service.backend]]\naddress = \"{}\"\n",
        backend_blocks(&[a.addr], &[]),
        udp_backend.local_addr().expect("address")
    );
    let proxy = TestProxy::start(&toml).await;
    echo_exchange(proxy.addr("svc"), b"hello").await;
    let text = get_ok(proxy.admin.expect("admin"), "/metrics").await;
    common::assert_promtool_accepts(&text);
}

#[tokio::test]
async fn status_reflects_active_sessions_and_a_backend_going_down() {
    let a = TestBackend::start("a", Behaviour::Tagged).await;
    let b = TestBackend::start("b", Behaviour::Tagged).await;
    let toml = format!(
        "{ADMIN}[[service]]\nname = \"svc\"\nlisten = \"127.0.0.1:0\"\nstrategy = \"least_connections\"\n\
         [service.health]\ninterval = \"50ms\"\ntimeout = \"50ms\"\nrise = 1\nfall = 1\n{}",
        backend_blocks(&[a.addr, b.addr], &[])
    );
    let proxy = TestProxy::start(&toml).await;
    let admin = proxy.admin.expect("admin");
    let mut held = TcpStream::connect(proxy.addr("svc"))
        .await
        .expect("connect");
    let mut tag = [0u8; 2];
    held.read_exact(&mut tag).await.expect("tag");

    let status: serde_json::Value =
        serde_json::from_str(&get_ok(admin, "/status").await).expect("status is JSON");
    assert_eq!(status["config_generation"], 1);
    let service = &status["services"][0];
    assert_eq!(service["name"], "svc");
    assert_eq!(service["protocol"], "tcp");
    assert_eq!(service["strategy"], "least_connections");
    assert_eq!(service["active_connections"], 1);
    assert_eq!(service["listen"][0], proxy.addr("svc").to_string());

    a.stop();
    let backend_a = Arc::clone(&proxy.service("svc").backends()[0]);
    wait_until("a down", || !backend_a.is_healthy()).await;
    let status: serde_json::Value =
        serde_json::from_str(&get_ok(admin, "/status").await).expect("status is JSON");
    let a_status = &status["services"][0]["backends"][0];
    assert_eq!(a_status["address"], a.addr.to_string());
    assert_eq!(a_status["state"], "down");
    assert!(a_status["health"]["consecutive_failures"].as_u64() >= Some(1));
    assert!(a_status["health"]["last_check_ms_ago"].is_u64());
    assert_eq!(status["services"][0]["backends"][1]["state"], "up");
    drop(held);
}

#[tokio::test]
async fn healthz_turns_503_while_draining() {
    let a = TestBackend::start("a", Behaviour::Echo).await;
    let toml = format!(
        "{ADMIN}[global]\nshutdown_grace = \"20s\"\n\
         [[service]]\nname = \"svc\"\nlisten = \"127.0.0.1:0\"\n{}",
        backend_blocks(&[a.addr], &[])
    );
    let proxy = TestProxy::start(&toml).await;
    let admin = proxy.admin.expect("admin");
    assert_eq!(http(admin, "GET", "/healthz").await, (200, "ok\n".into()));
    let mut held = TcpStream::connect(proxy.addr("svc"))
        .await
        .expect("connect");
    held.write_all(b"x").await.expect("send");
    let mut echo = [0u8; 1];
    held.read_exact(&mut echo).await.expect("echo");

    proxy.handle.shutdown();
    let (status, _) = http(admin, "GET", "/healthz").await;
    assert_eq!(status, 503);
    drop(held);
    proxy.stop().await;
}

#[tokio::test]
async fn unknown_paths_are_404_and_wrong_methods_405() {
    let a = TestBackend::start("a", Behaviour::Echo).await;
    let toml = format!(
        "{ADMIN}[[service]]\nname = \"svc\"\nlisten = \"127.0.0.1:0\"\n{}",
        backend_blocks(&[a.addr], &[])
    );
    let proxy = TestProxy::start(&toml).await;
    let admin = proxy.admin.expect("admin");
    let (status, body) = http(admin, "GET", "/nope").await;
    assert_eq!(status, 404);
    assert!(body.contains("not found"), "{body}");
    let (status, _) = http(admin, "POST", "/metrics").await;
    assert_eq!(status, 405);
    let (status, _) = http(admin, "DELETE", "/status").await;
    assert_eq!(status, 405);
}

#[tokio::test]
async fn no_admin_listener_without_an_admin_table() {
    let a = TestBackend::start("a", Behaviour::Echo).await;
    let toml = format!(
        "[[service]]\nname = \"svc\"\nlisten = \"127.0.0.1:0\"\n{}",
        backend_blocks(&[a.addr], &[])
    );
    let proxy = TestProxy::start(&toml).await;
    assert!(proxy.admin.is_none());
    // Nothing listens on the default admin address either.
    assert!(TcpStream::connect("127.0.0.1:9100").await.is_err());
}
