//! UDP services over real UDP sockets: flows stick to a backend, replies come from
//! the service address, idle flows expire, the flow table is bounded, flows move
//! off a dead backend, and datagram boundaries and sizes survive.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::{PATIENCE, TestProxy, wait_until};
use l4lb::service::DropReason;
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

/// A UDP backend on 127.0.0.1 that answers every datagram: with "NAME:" + the
/// payload when tagged, or the bare payload.
struct UdpBackend {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl UdpBackend {
    async fn start(tag: Option<&str>) -> UdpBackend {
        let socket = UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind udp backend");
        let addr = socket.local_addr().expect("address");
        let prefix = tag
            .map(|t| format!("{t}:").into_bytes())
            .unwrap_or_default();
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 65_536];
            while let Ok((len, from)) = socket.recv_from(&mut buf).await {
                let mut reply = prefix.clone();
                reply.extend_from_slice(&buf[..len]);
                let _ = socket.send_to(&reply, from).await;
            }
        });
        UdpBackend { addr, task }
    }

    fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for UdpBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn udp_service(keys: &str, backends: &[&UdpBackend]) -> String {
    let blocks: String = backends
        .iter()
        .map(|b| format!("[[service.backend]]\naddress = \"{}\"\n", b.addr))
        .collect();
    format!(
        "[[service]]\nname = \"dns\"\nprotocol = \"udp\"\nlisten = \"127.0.0.1:0\"\n{keys}\n{blocks}"
    )
}

/// Sends `payload` and waits for one reply; returns it and the address it came from.
async fn exchange(client: &UdpSocket, to: SocketAddr, payload: &[u8]) -> (Vec<u8>, SocketAddr) {
    client.send_to(payload, to).await.expect("send");
    let mut buf = vec![0u8; 65_536];
    let (len, from) = tokio::time::timeout(PATIENCE, client.recv_from(&mut buf))
        .await
        .expect("a reply in time")
        .expect("recv");
    buf.truncate(len);
    (buf, from)
}

/// Waits briefly for a reply that must not come.
async fn no_reply(client: &UdpSocket) -> bool {
    let mut buf = [0u8; 64];
    tokio::time::timeout(Duration::from_millis(300), client.recv_from(&mut buf))
        .await
        .is_err()
}

async fn client() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").await.expect("client socket")
}

fn tag_of(reply: &[u8]) -> String {
    let text = String::from_utf8_lossy(reply);
    text.split(':').next().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_clients_get_their_own_replies_from_the_service_address_and_keep_their_backend() {
    let a = UdpBackend::start(Some("a")).await;
    let b = UdpBackend::start(Some("b")).await;
    let proxy = TestProxy::start(&udp_service("", &[&a, &b])).await;
    let service_addr = proxy.addr("dns");
    let mut clients = Vec::new();
    for _ in 0..50 {
        clients.push(client().await);
    }
    let mut first_tags = Vec::new();
    for round in 0..3 {
        for (i, socket) in clients.iter().enumerate() {
            let payload = format!("client {i} round {round}");
            let (reply, from) = exchange(socket, service_addr, payload.as_bytes()).await;
            assert_eq!(from, service_addr, "replies come from the service address");
            let tag = tag_of(&reply);
            assert_eq!(reply, format!("{tag}:{payload}").into_bytes());
            if round == 0 {
                first_tags.push(tag);
            } else {
                assert_eq!(first_tags[i], tag, "client {i} changed backend");
            }
        }
    }
    assert!(first_tags.iter().any(|t| t == "a") && first_tags.iter().any(|t| t == "b"));
    let service = proxy.service("dns");
    assert_eq!(service.udp_flows(), 50);
    let datagrams: u64 = service.backends().iter().map(|b| b.datagrams().0).sum();
    assert_eq!(datagrams, 150);
}

#[tokio::test]
async fn idle_flows_are_forgotten_and_the_next_datagram_opens_a_new_one() {
    let a = UdpBackend::start(Some("a")).await;
    let proxy = TestProxy::start(&udp_service("idle_timeout = \"200ms\"", &[&a])).await;
    let service = Arc::clone(proxy.service("dns"));
    let socket = client().await;
    let (reply, _) = exchange(&socket, proxy.addr("dns"), b"one").await;
    assert_eq!(reply, b"a:one");
    assert_eq!(service.udp_flows(), 1);
    wait_until("flow expired", || service.udp_flows() == 0).await;
    assert_eq!(service.backends()[0].active(), 0);
    let (reply, _) = exchange(&socket, proxy.addr("dns"), b"two").await;
    assert_eq!(reply, b"a:two");
    assert_eq!(service.udp_flows(), 1);
}

#[tokio::test]
async fn max_flows_drops_the_extra_client_and_leaves_the_others_alone() {
    let a = UdpBackend::start(Some("a")).await;
    let proxy = TestProxy::start(&udp_service("max_flows = 3", &[&a])).await;
    let addr = proxy.addr("dns");
    let mut admitted = Vec::new();
    for _ in 0..3 {
        let socket = client().await;
        exchange(&socket, addr, b"hi").await;
        admitted.push(socket);
    }
    let extra = client().await;
    extra.send_to(b"let me in", addr).await.expect("send");
    assert!(no_reply(&extra).await, "the fourth flow must be dropped");
    let service = proxy.service("dns");
    assert_eq!(service.drops(DropReason::MaxFlows), 1);
    assert_eq!(service.udp_flows(), 3);
    for socket in &admitted {
        let (reply, _) = exchange(socket, addr, b"still here").await;
        assert_eq!(reply, b"a:still here");
    }
}

#[tokio::test]
async fn flows_of_a_dead_backend_move_and_the_others_stay() {
    let a = UdpBackend::start(Some("a")).await;
    let b = UdpBackend::start(Some("b")).await;
    let keys = "strategy = \"maglev\"\nhash_key = \"source_ip_port\"\n\
                [service.health]\nkind = \"udp\"\nsend = \"ping\"\n\
                interval = \"50ms\"\ntimeout = \"50ms\"\nrise = 1\nfall = 1";
    let proxy = TestProxy::start(&udp_service(keys, &[&a, &b])).await;
    let addr = proxy.addr("dns");
    let mut clients = Vec::new();
    for _ in 0..30 {
        let socket = client().await;
        let (reply, _) = exchange(&socket, addr, b"x").await;
        clients.push((socket, tag_of(&reply)));
    }
    assert!(clients.iter().any(|(_, t)| t == "a") && clients.iter().any(|(_, t)| t == "b"));

    a.stop();
    let backend_a = Arc::clone(&proxy.service("dns").backends()[0]);
    wait_until("a marked down", || !backend_a.is_healthy()).await;
    for (socket, before) in &clients {
        let (reply, _) = exchange(socket, addr, b"y").await;
        let after = tag_of(&reply);
        assert_eq!(after, "b", "every flow is served by the live backend");
        if before == "b" {
            assert_eq!(&after, before);
        }
    }
}

#[tokio::test]
async fn the_largest_and_the_empty_datagram_pass_intact() {
    let echo = UdpBackend::start(None).await;
    let proxy = TestProxy::start(&udp_service("", &[&echo])).await;
    let socket = client().await;
    let largest: Vec<u8> = (0..65_507u32).map(|i| (i % 251) as u8).collect();
    let (reply, _) = exchange(&socket, proxy.addr("dns"), &largest).await;
    assert_eq!(reply, largest);
    let (reply, _) = exchange(&socket, proxy.addr("dns"), b"").await;
    assert!(reply.is_empty());
    let (reply, _) = exchange(&socket, proxy.addr("dns"), b"boundary").await;
    assert_eq!(reply, b"boundary", "datagrams keep their boundaries");
}

#[tokio::test]
async fn no_available_backend_drops_and_counts() {
    let a = UdpBackend::start(Some("a")).await;
    let keys = "[service.health]\nkind = \"udp\"\nsend = \"ping\"\ninterval = \"50ms\"\n\
                timeout = \"50ms\"\nrise = 1\nfall = 1";
    let proxy = TestProxy::start(&udp_service(keys, &[&a])).await;
    a.stop();
    let backend = Arc::clone(&proxy.service("dns").backends()[0]);
    wait_until("down", || !backend.is_healthy()).await;
    let socket = client().await;
    socket
        .send_to(b"anyone?", proxy.addr("dns"))
        .await
        .expect("send");
    assert!(no_reply(&socket).await);
    assert_eq!(proxy.service("dns").drops(DropReason::NoBackend), 1);
}

#[tokio::test]
async fn stopping_closes_every_flow() {
    let a = UdpBackend::start(Some("a")).await;
    let proxy = TestProxy::start(&udp_service("", &[&a])).await;
    let socket = client().await;
    exchange(&socket, proxy.addr("dns"), b"hi").await;
    let service = Arc::clone(proxy.service("dns"));
    assert_eq!(service.udp_flows(), 1);
    assert!(proxy.stop().await.completed);
    wait_until("flows released", || service.udp_flows() == 0).await;
    assert_eq!(service.backends()[0].active(), 0);
}

#[tokio::test]
async fn icmp_unreachable_breaks_the_flow_and_passive_checks_move_it() {
    let a = UdpBackend::start(Some("a")).await;
    let b = UdpBackend::start(Some("b")).await;
    let keys = "[service.outlier]\nconsecutive_failures = 1\nejection_time = \"1h\"";
    let proxy = TestProxy::start(&udp_service(keys, &[&a, &b])).await;
    let addr = proxy.addr("dns");
    // Round robin: the first flow goes to "a".
    let socket = client().await;
    let (reply, _) = exchange(&socket, addr, b"first").await;
    assert_eq!(tag_of(&reply), "a");
    a.stop();
    // The port is closed now: the next datagram is answered by ICMP port
    // unreachable, which breaks the flow and ejects "a"; a retry lands on "b".
    let mut served_by = None;
    for _ in 0..10 {
        socket.send_to(b"again", addr).await.expect("send");
        let mut buf = [0u8; 64];
        let wait = tokio::time::timeout(Duration::from_millis(300), socket.recv_from(&mut buf));
        if let Ok(Ok((len, _))) = wait.await {
            served_by = Some(tag_of(&buf[..len]));
            break;
        }
    }
    assert_eq!(served_by.as_deref(), Some("b"));
    let service = proxy.service("dns");
    assert!(service.drops(DropReason::SendError) >= 1);
    assert_eq!(service.backends()[0].ejections(), 1);
}

#[tokio::test]
async fn udp_metrics_count_flows_datagrams_and_drops() {
    let a = UdpBackend::start(Some("a")).await;
    let toml = format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n{}",
        udp_service("max_flows = 1", &[&a])
    );
    let proxy = TestProxy::start(&toml).await;
    let addr = proxy.addr("dns");
    let socket = client().await;
    for _ in 0..4 {
        exchange(&socket, addr, b"12345").await;
    }
    let refused = client().await;
    refused.send_to(b"x", addr).await.expect("send");
    assert!(no_reply(&refused).await);
    let text = common::get_ok(proxy.admin.expect("admin"), "/metrics").await;
    let backend = a.addr.to_string();
    for line in [
        "l4lb_udp_flows{service=\"dns\"} 1".to_string(),
        format!(
            "l4lb_udp_datagrams_total{{backend=\"{backend}\",direction=\"upstream\",service=\"dns\"}} 4"
        ),
        format!(
            "l4lb_udp_datagrams_total{{backend=\"{backend}\",direction=\"downstream\",service=\"dns\"}} 4"
        ),
        format!(
            "l4lb_bytes_total{{backend=\"{backend}\",direction=\"upstream\",service=\"dns\"}} 20"
        ),
        format!(
            "l4lb_bytes_total{{backend=\"{backend}\",direction=\"downstream\",service=\"dns\"}} 28"
        ),
        "l4lb_udp_dropped_datagrams_total{reason=\"max_flows\",service=\"dns\"} 1".to_string(),
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line} in:\n{text}"
        );
    }
    let status: serde_json::Value =
        serde_json::from_str(&common::get_ok(proxy.admin.expect("admin"), "/status").await)
            .expect("json");
    assert_eq!(status["services"][0]["udp_flows"], 1);
    assert_eq!(status["services"][0]["protocol"], "udp");
}

/// The first 12 bytes of every PROXY v2 header.
const PROXY_V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";

/// Sends `datagram` `count` times from `socket`, waiting each time until the
/// service has counted it as dropped; then expects every drop counted as too big.
async fn send_too_big(
    service: &l4lb::service::Service,
    socket: &UdpSocket,
    to: SocketAddr,
    datagram: &[u8],
    count: u64,
) {
    let dropped = || {
        DropReason::ALL
            .map(|r| service.drops(r))
            .iter()
            .sum::<u64>()
    };
    for sent in 1..=count {
        socket.send_to(datagram, to).await.expect("send");
        wait_until("the datagram is counted as dropped", || dropped() == sent).await;
    }
    let backend = &service.backends()[0];
    assert_eq!(
        backend.ejections(),
        0,
        "a client's datagram never ejects a backend"
    );
    assert_eq!(backend.connect_failures(), 0);
    assert_eq!(service.drops(DropReason::TooBig), count);
}

#[tokio::test]
async fn datagrams_the_proxy_header_makes_too_big_are_dropped_and_the_backend_stays() {
    let echo = UdpBackend::start(None).await;
    let keys = "proxy_protocol = \"v2\"\n\
                [service.outlier]\nconsecutive_failures = 5\nejection_time = \"1h\"";
    let proxy = TestProxy::start(&udp_service(keys, &[&echo])).await;
    let (service, addr) = (proxy.service("dns"), proxy.addr("dns"));
    let socket = client().await;
    // The largest IPv4 payload: with a 28-byte header in front it cannot be sent.
    send_too_big(service, &socket, addr, &vec![7u8; 65_507], 6).await;

    let (reply, _) = exchange(&socket, addr, b"small").await;
    assert!(
        reply.starts_with(PROXY_V2_SIGNATURE) && reply.ends_with(b"small"),
        "the first datagram that reaches the backend carries the header: {reply:?}"
    );
    let (reply, _) = exchange(&socket, addr, b"next").await;
    assert_eq!(reply, b"next", "later datagrams carry none");
}

#[tokio::test]
async fn an_ipv6_datagram_too_big_for_an_ipv4_backend_is_dropped_and_the_backend_stays() {
    let echo = UdpBackend::start(None).await;
    let toml = udp_service(
        "[service.outlier]\nconsecutive_failures = 5\nejection_time = \"1h\"",
        &[&echo],
    )
    .replace("listen = \"127.0.0.1:0\"", "listen = \"[::1]:0\"");
    let proxy = TestProxy::start(&toml).await;
    let (service, addr) = (proxy.service("dns"), proxy.addr("dns"));
    let socket = UdpSocket::bind("[::1]:0")
        .await
        .expect("ipv6 client socket");
    // Fits IPv6 (at most 65,527 bytes) but not IPv4 (at most 65,507).
    send_too_big(service, &socket, addr, &vec![7u8; 65_520], 6).await;

    let (reply, _) = exchange(&socket, addr, b"small").await;
    assert_eq!(
        reply, b"small",
        "the client's flow and its backend still work"
    );
}

/// A socket bound to `addr` beside l4lb's own (SO_REUSEPORT): what a spoofer
/// would send from. Closed before anything can come back to it.
fn socket_beside(addr: SocketAddr) -> std::net::UdpSocket {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, None).expect("socket");
    socket.set_reuse_port(true).expect("SO_REUSEPORT");
    socket.bind(&addr.into()).expect("bind beside the listener");
    socket.into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_datagram_from_another_services_address_is_refused_instead_of_looping() {
    let echo_one = UdpBackend::start(None).await;
    // Two's backend echoes too, but only once the spoofer is gone.
    let backend_two = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let toml = format!(
        "[[service]]\nname = \"one\"\nprotocol = \"udp\"\nlisten = \"127.0.0.1:0\"\n\
         [[service.backend]]\naddress = \"{}\"\n\
         [[service]]\nname = \"two\"\nprotocol = \"udp\"\nlisten = \"127.0.0.1:0\"\n\
         [[service.backend]]\naddress = \"{}\"\n",
        echo_one.addr,
        backend_two.local_addr().expect("address")
    );
    let (open_gate, gate) = tokio::sync::oneshot::channel::<()>();
    let _echo_two = EchoTask(tokio::spawn(async move {
        let _ = gate.await;
        let mut buf = vec![0u8; 65_536];
        while let Ok((len, from)) = backend_two.recv_from(&mut buf).await {
            let _ = backend_two.send_to(&buf[..len], from).await;
        }
    }));
    let proxy = TestProxy::start(&toml).await;
    let (one, two) = (proxy.service("one"), proxy.service("two"));

    // One datagram to "two" that claims to come from "one"'s address: were it
    // taken for a client, two's reply would go to "one", whose reply would go
    // back to "two", and so on forever.
    let spoofer = socket_beside(proxy.addr("one"));
    spoofer
        .send_to(b"who is there?", proxy.addr("two"))
        .expect("send");
    drop(spoofer);
    let _ = open_gate.send(());

    let refused = || one.drops(DropReason::Loop) + two.drops(DropReason::Loop);
    let forwarded = || one.backends()[0].datagrams().0 + two.backends()[0].datagrams().0;
    wait_until("the datagram is refused or forwarded", || {
        refused() + forwarded() > 0
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        forwarded(),
        0,
        "no datagram goes round between the services"
    );
    assert_eq!(refused(), 1, "the spoofed datagram is counted as a loop");
    assert_eq!(one.udp_flows() + two.udp_flows(), 0);
}

/// Aborts its task when dropped.
struct EchoTask(JoinHandle<()>);

impl Drop for EchoTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}
