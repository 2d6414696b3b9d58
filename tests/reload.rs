//! Hot reload and the runtime API, with real sessions open across every change.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{
    Behaviour, PATIENCE, TestBackend, TestProxy, echo_round_trip, get_ok, read_tag,
    read_until_closed, tag_of_new_connection, wait_until,
};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UdpSocket};

const ADMIN: &str = "[admin]\nlisten = \"127.0.0.1:0\"\n";

/// An admin table, then service "svc" on `listen` over `backends` (tagged, round robin).
fn config(listen: &str, backends: &[&TestBackend], extra: &str) -> String {
    let blocks: String = backends
        .iter()
        .map(|b| format!("[[service.backend]]\naddress = \"{}\"\n", b.addr))
        .collect();
    format!("{ADMIN}[[service]]\nname = \"svc\"\nlisten = \"{listen}\"\n{extra}\n{blocks}")
}

async fn tagged(names: &[&str]) -> Vec<TestBackend> {
    let mut backends = Vec::new();
    for name in names {
        backends.push(TestBackend::start(name, Behaviour::Tagged).await);
    }
    backends
}

/// Opens a session and reads the tag of the backend serving it.
async fn session(addr: SocketAddr) -> (TcpStream, String) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let tag = read_tag(&mut stream).await;
    (stream, tag)
}

async fn tags_of(addr: SocketAddr, count: usize) -> Vec<String> {
    let mut tags = Vec::new();
    for _ in 0..count {
        tags.push(tag_of_new_connection(addr).await);
    }
    tags
}

#[tokio::test]
async fn adding_a_backend_reaches_new_clients_and_an_open_session_keeps_flowing() {
    let b = tagged(&["a", "b"]).await;
    let proxy = TestProxy::start(&config("127.0.0.1:0", &[&b[0]], "")).await;
    let addr = proxy.addr("svc");
    let (mut open, tag) = session(addr).await;
    assert_eq!(tag, "a");
    echo_round_trip(&mut open, b"before").await;

    let report = proxy
        .reload(&config("127.0.0.1:0", &[&b[0], &b[1]], ""))
        .await
        .expect("reload");
    assert_eq!((report.generation, report.backends_added), (2, 1));
    echo_round_trip(&mut open, b"during and after").await;
    let tags = tags_of(addr, 10).await;
    assert!(
        tags.iter().any(|t| t == "b"),
        "the new backend gets clients: {tags:?}"
    );
    assert_eq!(
        proxy.handle.listen_addrs("svc"),
        vec![addr],
        "listener not rebound"
    );
    echo_round_trip(&mut open, b"still").await;
    drop(open);
    proxy.assert_drained().await;
}

#[tokio::test]
async fn removing_a_backend_lets_its_session_finish_and_sends_no_new_clients_there() {
    let b = tagged(&["a", "b"]).await;
    let proxy = TestProxy::start(&config("127.0.0.1:0", &[&b[0], &b[1]], "")).await;
    let addr = proxy.addr("svc");
    let (_first, first_tag) = session(addr).await;
    let (mut on_b, tag) = session(addr).await;
    assert_eq!(
        (first_tag.as_str(), tag.as_str()),
        ("a", "b"),
        "round robin"
    );

    proxy
        .reload(&config("127.0.0.1:0", &[&b[0]], ""))
        .await
        .expect("reload");
    let accepted_by_b = b[1].accepted();
    assert!(tags_of(addr, 10).await.iter().all(|t| t == "a"));
    assert_eq!(b[1].accepted(), accepted_by_b);

    let admin = proxy.admin.expect("admin");
    let status: serde_json::Value =
        serde_json::from_str(&get_ok(admin, "/status").await).expect("json");
    let backends = status["services"][0]["backends"]
        .as_array()
        .expect("array")
        .clone();
    let b_status = backends
        .iter()
        .find(|x| x["address"] == b[1].addr.to_string())
        .expect("the removed backend is listed while its session drains");
    assert_eq!(b_status["state"], "draining");

    echo_round_trip(&mut on_b, b"the removed backend still relays").await;
    on_b.shutdown().await.expect("half-close");
    assert!(
        read_until_closed(&mut on_b)
            .await
            .expect("normal end")
            .is_empty()
    );
    let gone = || async {
        let text = get_ok(admin, "/status").await;
        !text.contains(&b[1].addr.to_string())
    };
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !gone().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "drained backend never left /status"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let metrics = get_ok(admin, "/metrics").await;
    assert!(!metrics.contains(&b[1].addr.to_string()), "no stale series");
}

#[tokio::test]
async fn an_invalid_file_keeps_the_old_configuration_serving_and_counts_a_failure() {
    let b = tagged(&["a"]).await;
    let proxy = TestProxy::start(&config("127.0.0.1:0", &[&b[0]], "")).await;
    let addr = proxy.addr("svc");
    let (mut open, _) = session(addr).await;
    let broken = config(
        "127.0.0.1:0",
        &[&b[0]],
        "strategy = \"fastest\"\nweight = 3",
    );
    assert!(proxy.reload(&broken).await.is_err());
    echo_round_trip(&mut open, b"untouched").await;
    assert_eq!(tag_of_new_connection(addr).await, "a");
    let admin = proxy.admin.expect("admin");
    let metrics = get_ok(admin, "/metrics").await;
    assert!(
        metrics.contains("l4lb_config_reloads_total{result=\"failure\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("l4lb_config_reloads_total{result=\"success\"} 0"));
    let status: serde_json::Value =
        serde_json::from_str(&get_ok(admin, "/status").await).expect("json");
    assert_eq!(status["config_generation"], 1);
}

#[tokio::test]
async fn a_new_listen_address_binds_and_the_old_one_stops_accepting() {
    let b = tagged(&["a"]).await;
    let proxy = TestProxy::start(&config("127.0.0.1:0", &[&b[0]], "")).await;
    let old = proxy.addr("svc");
    let (mut open, _) = session(old).await;
    proxy
        .reload(&config("127.0.0.3:0", &[&b[0]], ""))
        .await
        .expect("reload");
    let new = proxy.handle.listen_addrs("svc");
    assert_eq!(new.len(), 1);
    assert_eq!(
        new[0].ip(),
        "127.0.0.3".parse::<std::net::IpAddr>().expect("ip")
    );
    assert_eq!(tag_of_new_connection(new[0]).await, "a");
    wait_until_refused(old).await;
    echo_round_trip(&mut open, b"opened on the old address").await;
}

async fn wait_until_refused(addr: SocketAddr) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while TcpStream::connect(addr).await.is_ok() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{addr} still accepts"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn services_can_be_added_and_removed() {
    let b = tagged(&["a", "x"]).await;
    let proxy = TestProxy::start(&config("127.0.0.1:0", &[&b[0]], "")).await;
    let svc_addr = proxy.addr("svc");
    let (mut open, _) = session(svc_addr).await;
    let only_other = format!(
        "{ADMIN}[[service]]\nname = \"other\"\nlisten = \"127.0.0.1:0\"\n\
         [[service.backend]]\naddress = \"{}\"\n",
        b[1].addr
    );
    let report = proxy.reload(&only_other).await.expect("reload");
    assert_eq!(report.services_added, ["other"]);
    assert_eq!(report.services_removed, ["svc"]);
    let other = proxy.handle.listen_addrs("other");
    assert_eq!(tag_of_new_connection(other[0]).await, "x");
    wait_until_refused(svc_addr).await;
    echo_round_trip(&mut open, b"removed service drains").await;
}

#[tokio::test]
async fn a_failed_bind_refuses_the_whole_reload() {
    let b = tagged(&["a"]).await;
    let proxy = TestProxy::start(&config("127.0.0.1:0", &[&b[0]], "")).await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let taken_addr = taken.local_addr().expect("address").to_string();
    let with_taken = format!(
        "{}[[service]]\nname = \"new\"\nlisten = \"{taken_addr}\"\n\
         [[service.backend]]\naddress = \"{}\"\n",
        config("127.0.0.1:0", &[&b[0]], ""),
        b[0].addr
    );
    assert!(proxy.reload(&with_taken).await.is_err());
    assert!(proxy.handle.service("new").is_none());
    assert_eq!(tag_of_new_connection(proxy.addr("svc")).await, "a");
}

#[tokio::test]
async fn a_udp_flow_survives_a_reload() {
    let backend_addr = common::udp_echo().await;
    let udp = |extra: &str| {
        format!(
            "[[service]]\nname = \"u\"\nprotocol = \"udp\"\nlisten = \"127.0.0.1:0\"\n{extra}\n\
             [[service.backend]]\naddress = \"{backend_addr}\"\n"
        )
    };
    let proxy = TestProxy::start(&udp("")).await;
    let addr = proxy.addr("u");
    let client = UdpSocket::bind("127.0.0.1:0").await.expect("client");
    let mut buf = [0u8; 64];
    client.send_to(b"one", addr).await.expect("send");
    let (len, _) = tokio::time::timeout(PATIENCE, client.recv_from(&mut buf))
        .await
        .expect("reply")
        .expect("recv");
    assert_eq!(&buf[..len], b"one");
    proxy.reload(&udp("max_flows = 500")).await.expect("reload");
    client.send_to(b"two", addr).await.expect("send");
    let (len, _) = tokio::time::timeout(PATIENCE, client.recv_from(&mut buf))
        .await
        .expect("reply after reload")
        .expect("recv");
    assert_eq!(&buf[..len], b"two");
    assert_eq!(
        proxy.current("u").udp_flows(),
        1,
        "the same flow, not a new one"
    );
}

async fn api(admin: SocketAddr, action: &str, backend: SocketAddr, token: Option<&str>) -> u16 {
    let mut stream = TcpStream::connect(admin).await.expect("admin");
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let request = format!(
        "POST /services/svc/backends/{backend}/{action} HTTP/1.1\r\nHost: l4lb\r\n{auth}\
         Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.expect("send");
    let response = read_until_closed(&mut stream).await.expect("response");
    let text = String::from_utf8_lossy(&response);
    text.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("status code")
}

#[tokio::test]
async fn runtime_api_drain_maint_ready_with_a_token() {
    let b = tagged(&["a", "b"]).await;
    let toml = config("127.0.0.1:0", &[&b[0], &b[1]], "").replace(
        "[admin]\nlisten = \"127.0.0.1:0\"\n",
        "[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"t0ken\"\n",
    );
    let proxy = TestProxy::start(&toml).await;
    let (addr, admin) = (proxy.addr("svc"), proxy.admin.expect("admin"));
    let (_on_a, _) = session(addr).await;
    let (mut on_b, tag) = session(addr).await;
    assert_eq!(tag, "b");

    assert_eq!(api(admin, "drain", b[1].addr, None).await, 401);
    assert_eq!(api(admin, "drain", b[1].addr, Some("nope")).await, 401);
    assert_eq!(api(admin, "drain", b[1].addr, Some("t0ken")).await, 200);
    assert!(
        tags_of(addr, 6).await.iter().all(|t| t == "a"),
        "drained: no new clients"
    );
    echo_round_trip(&mut on_b, b"draining, still served").await;
    let status = get_ok(admin, "/status").await;
    assert!(status.contains("\"state\":\"draining\""), "{status}");

    assert_eq!(api(admin, "maint", b[1].addr, Some("t0ken")).await, 200);
    let _ = read_until_closed(&mut on_b).await;
    let metrics = get_ok(admin, "/metrics").await;
    let b_up = format!(
        "l4lb_backend_up{{backend=\"{}\",service=\"svc\"}} 0",
        b[1].addr
    );
    assert!(metrics.contains(&b_up), "{metrics}");

    assert_eq!(api(admin, "ready", b[1].addr, Some("t0ken")).await, 200);
    assert!(
        tags_of(addr, 6).await.iter().any(|t| t == "b"),
        "back in rotation"
    );
    let unknown: SocketAddr = "127.0.0.1:1".parse().expect("literal");
    assert_eq!(api(admin, "drain", unknown, Some("t0ken")).await, 404);
    assert_eq!(api(admin, "explode", b[1].addr, Some("t0ken")).await, 400);
    wait_until("sessions counted down", || {
        proxy.current("svc").backends()[1].active() == 0
    })
    .await;
}

#[tokio::test]
async fn probes_follow_the_backends_across_a_reload() {
    let b = tagged(&["a", "b", "c"]).await;
    let checks = "[service.health]\ninterval = \"50ms\"\ntimeout = \"50ms\"";
    let proxy = TestProxy::start(&config("127.0.0.1:0", &[&b[0], &b[1], &b[2]], checks)).await;
    let probes = proxy.probes.clone();
    wait_until("three probes", || probes.running() == 3).await;
    proxy
        .reload(&config("127.0.0.1:0", &[&b[0]], checks))
        .await
        .expect("reload");
    wait_until("one probe left", || probes.running() == 1).await;
    proxy
        .reload(&config("127.0.0.1:0", &[&b[0], &b[2]], ""))
        .await
        .expect("reload without checks");
    wait_until("no probes", || probes.running() == 0).await;
    proxy.stop().await;
    assert_eq!(probes.running(), 0);
}
