//! UDP flows as resolvers and game servers use them: one-response flows in front
//! of a real DNS server (dnsmasq, queried with dig and dnsperf when installed),
//! a reload reaching the very next new flow, and health probes with a binary
//! payload and an expected reply prefix.

mod common;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{PATIENCE, TestProxy, wait_until};
use l4lb::service::DropReason;
use tokio::net::UdpSocket;

/// A UDP server on 127.0.0.1 answering every datagram with `tag` + ":" + payload.
async fn tagged_udp(tag: &'static str) -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let addr = socket.local_addr().expect("address");
    tokio::spawn(async move {
        let mut buf = vec![0u8; 2048];
        while let Ok((len, from)) = socket.recv_from(&mut buf).await {
            let mut reply = format!("{tag}:").into_bytes();
            reply.extend_from_slice(&buf[..len]);
            let _ = socket.send_to(&reply, from).await;
        }
    });
    addr
}

fn udp_service(keys: &str, backends: &[SocketAddr]) -> String {
    let blocks: String = backends
        .iter()
        .map(|b| format!("[[service.backend]]\naddress = \"{b}\"\n"))
        .collect();
    format!(
        "[[service]]\nname = \"u\"\nprotocol = \"udp\"\nlisten = \"127.0.0.1:0\"\n{keys}\n{blocks}"
    )
}

/// One datagram from a fresh source port, and its reply (bounded by `PATIENCE`).
async fn ask_from_new_port(to: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let client = UdpSocket::bind("127.0.0.1:0").await.expect("client");
    client.send_to(payload, to).await.expect("send");
    let mut buf = vec![0u8; 2048];
    let (len, _) = tokio::time::timeout(PATIENCE, client.recv_from(&mut buf))
        .await
        .expect("a reply in time")
        .expect("recv");
    buf.truncate(len);
    buf
}

#[tokio::test]
async fn a_reload_changing_the_backends_reaches_the_very_next_new_flow() {
    let (old, new) = (tagged_udp("old").await, tagged_udp("new").await);
    // A long idle timeout: the flow sweeper ticks only once a second.
    let keys = "idle_timeout = \"1h\"";
    let proxy = TestProxy::start(&udp_service(keys, &[old])).await;
    let addr = proxy.addr("u");
    let kept = UdpSocket::bind("127.0.0.1:0").await.expect("client");
    kept.send_to(b"a", addr).await.expect("send");
    let mut buf = [0u8; 64];
    let (len, _) = tokio::time::timeout(PATIENCE, kept.recv_from(&mut buf))
        .await
        .expect("reply")
        .expect("recv");
    assert_eq!(&buf[..len], b"old:a");
    proxy
        .reload(&udp_service(keys, &[old, new]))
        .await
        .expect("reload");
    proxy
        .reload(&udp_service(keys, &[new]))
        .await
        .expect("reload");
    for i in 0..3 {
        let reply = ask_from_new_port(addr, format!("q{i}").as_bytes()).await;
        assert_eq!(reply, format!("new:q{i}").into_bytes(), "new flow {i}");
    }
    // The old flow's backend is gone from the service: it moves too.
    kept.send_to(b"b", addr).await.expect("send");
    let (len, _) = tokio::time::timeout(PATIENCE, kept.recv_from(&mut buf))
        .await
        .expect("reply")
        .expect("recv");
    assert_eq!(&buf[..len], b"new:b");
}

/// A dnsmasq answering `example.test` with 127.0.0.9, killed when dropped.
struct Dnsmasq {
    child: Child,
    addr: SocketAddr,
}

impl Dnsmasq {
    /// `None` (with a message) when dnsmasq is not installed. A port that turns
    /// out to be taken (dnsmasq also binds TCP on it) is retried with another.
    async fn start() -> Option<Dnsmasq> {
        for _ in 0..5 {
            let port = free_udp_port().await;
            let spawned = Command::new("dnsmasq")
                .args([
                    "--no-daemon",
                    "--bind-interfaces",
                    "--no-resolv",
                    "--no-hosts",
                ])
                .args([
                    "--listen-address=127.0.0.1",
                    "--user=root",
                    "-C",
                    "/dev/null",
                ])
                .arg(format!("--port={port}"))
                .args(["--address=/example.test/127.0.0.9", "--cache-size=0"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn();
            let Ok(child) = spawned else {
                eprintln!("skipping: dnsmasq is not installed (scripts/test.sh installs it)");
                return None;
            };
            let mut server = Dnsmasq {
                child,
                addr: SocketAddr::from(([127, 0, 0, 1], port)),
            };
            if server.answers().await {
                return Some(server);
            }
        }
        panic!("dnsmasq did not start on any of 5 free ports");
    }

    /// Whether dnsmasq answers a query within `PATIENCE` (false at once if it exited).
    async fn answers(&mut self) -> bool {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        let client = UdpSocket::bind("127.0.0.1:0").await.expect("client");
        let mut buf = [0u8; 512];
        while tokio::time::Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return false;
            }
            client
                .send_to(&dns_query(1), self.addr)
                .await
                .expect("send");
            let reply =
                tokio::time::timeout(Duration::from_millis(200), client.recv_from(&mut buf));
            if let Ok(Ok(_)) = reply.await {
                return true;
            }
        }
        false
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port free for UDP on 127.0.0.1 (and, if possible, for TCP too).
async fn free_udp_port() -> u16 {
    for _ in 0..20 {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let port = socket.local_addr().expect("address").port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    socket.local_addr().expect("address").port()
}

/// A DNS query for `example.test` A, with transaction id `id`.
fn dns_query(id: u16) -> Vec<u8> {
    let mut query = id.to_be_bytes().to_vec();
    query.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in ["example", "test"] {
        query.push(label.len() as u8);
        query.extend_from_slice(label.as_bytes());
    }
    query.extend_from_slice(&[0, 0, 1, 0, 1]);
    query
}

/// A resolver proxy in front of dnsmasq, with a table far smaller than the queries.
async fn resolver_proxy(dns: &Dnsmasq, keys: &str) -> TestProxy {
    let keys = format!("max_flows = 50\naccess_log = \"errors\"\n{keys}");
    TestProxy::start(&udp_service(&keys, &[dns.addr])).await
}

#[tokio::test]
async fn one_response_flows_answer_every_query_from_new_ports_with_a_small_table() {
    let Some(dns) = Dnsmasq::start().await else {
        return;
    };
    let proxy = resolver_proxy(&dns, "udp_responses = 1").await;
    let addr = proxy.addr("u");
    for id in 0..300u16 {
        let reply = ask_from_new_port(addr, &dns_query(id)).await;
        assert_eq!(reply[..2], id.to_be_bytes(), "the answer to query {id}");
        assert!(
            reply.ends_with(&[127, 0, 0, 9]),
            "query {id} resolved: {reply:?}"
        );
    }
    let service = proxy.service("u");
    assert_eq!(service.drops(DropReason::MaxFlows), 0);
    wait_until("every answered flow closed", || service.udp_flows() == 0).await;
}

#[tokio::test]
async fn without_udp_responses_queries_from_new_ports_fill_the_table() {
    let Some(dns) = Dnsmasq::start().await else {
        return;
    };
    let proxy = resolver_proxy(&dns, "").await;
    let addr = proxy.addr("u");
    // Every client socket stays open, so no two of them share a port (a port
    // freed early could be handed out again and land in an existing flow).
    let mut clients = Vec::new();
    for id in 0..50u16 {
        let client = UdpSocket::bind("127.0.0.1:0").await.expect("client");
        client.send_to(&dns_query(id), addr).await.expect("send");
        let mut buf = [0u8; 2048];
        tokio::time::timeout(PATIENCE, client.recv_from(&mut buf))
            .await
            .expect("a reply in time")
            .expect("recv");
        clients.push(client);
    }
    let client = UdpSocket::bind("127.0.0.1:0").await.expect("client");
    client.send_to(&dns_query(51), addr).await.expect("send");
    let service = proxy.service("u");
    wait_until("the 51st flow refused", || {
        service.drops(DropReason::MaxFlows) == 1
    })
    .await;
    assert_eq!(service.udp_flows(), 50);
}

/// Runs a tool to completion within `PATIENCE`; `None` when it is not installed.
fn run_tool(program: &str, args: &[String]) -> Option<std::process::Output> {
    let mut child = match Command::new(program)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(_) => {
            eprintln!("skipping: {program} is not installed (scripts/test.sh installs it)");
            return None;
        }
    };
    let deadline = std::time::Instant::now() + PATIENCE * 2;
    while child.try_wait().ok().flatten().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("{program} ran past {:?}", PATIENCE * 2);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dig_and_dnsperf_through_one_response_flows_see_no_max_flows_drops() {
    let Some(dns) = Dnsmasq::start().await else {
        return;
    };
    let proxy = resolver_proxy(&dns, "udp_responses = 1").await;
    let addr = proxy.addr("u");
    let port = addr.port().to_string();
    let dig = [
        "@127.0.0.1",
        "-p",
        &port,
        "example.test",
        "+short",
        "+time=5",
        "+tries=1",
    ];
    let dig: Vec<String> = dig.iter().map(|s| s.to_string()).collect();
    let dig_args = dig.clone();
    let Some(answer) = tokio::task::spawn_blocking(move || run_tool("dig", &dig_args))
        .await
        .expect("dig task")
    else {
        return;
    };
    assert_eq!(String::from_utf8_lossy(&answer.stdout).trim(), "127.0.0.9");
    let queries = std::env::temp_dir().join(format!("l4lb-dnsperf-{}.txt", std::process::id()));
    std::fs::write(&queries, "example.test A\n").expect("query file");
    // 100 clients (source ports), twice the table, at most 20 queries in flight.
    let perf: Vec<String> = ["-s", "127.0.0.1", "-p", &port, "-c", "100", "-q", "20"]
        .iter()
        .map(|s| s.to_string())
        .chain(
            ["-n", "3000", "-t", "5", "-d"]
                .iter()
                .map(|s| s.to_string()),
        )
        .chain([queries.display().to_string()])
        .collect();
    let Some(report) = tokio::task::spawn_blocking(move || run_tool("dnsperf", &perf))
        .await
        .expect("dnsperf task")
    else {
        return;
    };
    let _ = std::fs::remove_file(&queries);
    let text = String::from_utf8_lossy(&report.stdout);
    assert!(text.contains("Queries completed:"), "dnsperf ran: {text}");
    assert!(
        text.contains("Queries lost:         0"),
        "no query lost: {text}"
    );
    assert_eq!(proxy.service("u").drops(DropReason::MaxFlows), 0, "{text}");
}

/// A game server answering A2S_INFO (`FF FF FF FF 54 ...`) with `reply`; it
/// reports each query it got on `queries`.
async fn game_server(
    reply: &'static [u8],
) -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let addr = socket.local_addr().expect("address");
    let (queries, received) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 2048];
        while let Ok((len, from)) = socket.recv_from(&mut buf).await {
            let _ = queries.send(buf[..len].to_vec());
            let _ = socket.send_to(reply, from).await;
        }
    });
    (addr, received)
}

#[tokio::test]
async fn a_binary_probe_marks_down_the_backend_whose_reply_lacks_the_prefix() {
    let (good, mut good_queries) = game_server(b"\xff\xff\xff\xffI\x11server one").await;
    let (bad, _) = game_server(b"\xff\xff\xff\xffA\x01\x02\x03\x04").await;
    let keys = "[service.health]\ninterval = \"100ms\"\ntimeout = \"100ms\"\nrise = 1\nfall = 1\n\
                send_hex = \"ffffffff54536f7572636520456e67696e6520517565727900\"\n\
                expect_hex = \"ffffffff49\"";
    let proxy = TestProxy::start(&udp_service(keys, &[good, bad])).await;
    let service = proxy.service("u");
    let backends = service.backends();
    wait_until("the wrong reply marked down", || !backends[1].is_healthy()).await;
    let query = tokio::time::timeout(PATIENCE, good_queries.recv())
        .await
        .expect("a probe in time")
        .expect("a probe");
    assert_eq!(
        query, b"\xff\xff\xff\xffTSource Engine Query\0",
        "raw bytes, not UTF-8"
    );
    assert!(
        backends[0].is_healthy(),
        "the right reply keeps its backend up"
    );
}
