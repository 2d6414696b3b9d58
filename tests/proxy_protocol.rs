//! The PROXY protocol over real sockets: l4lb sending v1/v2 headers to backends
//! (TCP, and v2 on the first datagram of a UDP flow), and accepting them from an
//! upstream balancer, strictly.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{Behaviour, TestBackend, TestProxy, read_until_closed};
use l4lb::proxy::proxy_protocol::{Parsed, ProxyHeader, parse};
use l4lb::service::RejectReason;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UdpSocket};

fn tcp_service(keys: &str, backend: &TestBackend) -> String {
    format!(
        "[[service]]\nname = \"svc\"\nlisten = \"127.0.0.1:0\"\n{keys}\n\
         [[service.backend]]\naddress = \"{}\"\n",
        backend.addr
    )
}

/// Sends `payload`, half-closes, and returns everything the echo backend saw
/// (nothing when l4lb refused the client: closed, or reset because the refused
/// client's bytes were left unread).
async fn echoed(addr: SocketAddr, payload: &[u8]) -> (Vec<u8>, SocketAddr) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let local = stream.local_addr().expect("client address");
    stream.write_all(payload).await.expect("send");
    stream.shutdown().await.expect("half-close");
    (
        read_until_closed(&mut stream).await.unwrap_or_default(),
        local,
    )
}

fn header_of(bytes: &[u8]) -> (ProxyHeader, &[u8]) {
    match parse(bytes) {
        Ok(Parsed::Complete { header, consumed }) => (header, &bytes[consumed..]),
        other => panic!("no complete PROXY header: {other:?}"),
    }
}

#[tokio::test]
async fn v1_and_v2_headers_name_the_client_and_the_service_address() {
    for version in ["v1", "v2"] {
        let backend = TestBackend::start("echo", Behaviour::Echo).await;
        let keys = format!("proxy_protocol = \"{version}\"");
        let proxy = TestProxy::start(&tcp_service(&keys, &backend)).await;
        let addr = proxy.addr("svc");
        let (seen, client) = echoed(addr, b"payload").await;
        let (header, rest) = header_of(&seen);
        assert_eq!(
            header,
            ProxyHeader::Proxy {
                source: client,
                destination: addr
            },
            "{version}"
        );
        assert_eq!(rest, b"payload");
        if version == "v1" {
            let line = format!(
                "PROXY TCP4 127.0.0.1 127.0.0.1 {} {}\r\n",
                client.port(),
                addr.port()
            );
            assert!(seen.starts_with(line.as_bytes()));
        }
    }
}

#[tokio::test]
async fn an_accepted_header_sets_the_client_address_and_early_bytes_are_kept() {
    let backend = TestBackend::start("echo", Behaviour::Echo).await;
    let keys = "accept_proxy_protocol = true\nproxy_protocol = \"v1\"\ndeny = [\"203.0.113.0/24\"]";
    let proxy = TestProxy::start(&tcp_service(keys, &backend)).await;
    let addr = proxy.addr("svc");

    let inbound = b"PROXY TCP4 198.51.100.7 192.0.2.1 5555 443\r\nhello";
    let (seen, _) = echoed(addr, inbound).await;
    assert_eq!(seen, b"PROXY TCP4 198.51.100.7 192.0.2.1 5555 443\r\nhello");

    let denied = b"PROXY TCP4 203.0.113.9 192.0.2.1 5555 443\r\nhello";
    let (seen, _) = echoed(addr, denied).await;
    assert!(
        seen.is_empty(),
        "the ACL judges the address from the header"
    );
    assert_eq!(proxy.service("svc").rejections(RejectReason::Acl), 1);

    let local = b"PROXY UNKNOWN\r\nping";
    let (seen, client) = echoed(addr, local).await;
    let (header, rest) = header_of(&seen);
    assert_eq!(
        header,
        ProxyHeader::Proxy {
            source: client,
            destination: addr
        },
        "UNKNOWN: the real peer is used"
    );
    assert_eq!(rest, b"ping");
}

#[tokio::test]
async fn missing_malformed_or_late_headers_close_the_connection_and_are_counted() {
    let backend = TestBackend::start("echo", Behaviour::Echo).await;
    let proxy = TestProxy::start(&tcp_service("accept_proxy_protocol = true", &backend)).await;
    let addr = proxy.addr("svc");
    for bad in [
        &b"GET / HTTP/1.1\r\n\r\n"[..],
        b"PROXY TCP4 1.2.3.4 5.6.7.8 99999 1\r\n",
        b"PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n",
    ] {
        let (seen, _) = echoed(addr, bad).await;
        assert!(seen.is_empty(), "{:?}", String::from_utf8_lossy(bad));
    }
    let started = Instant::now();
    let mut silent = TcpStream::connect(addr).await.expect("connect");
    assert!(
        read_until_closed(&mut silent)
            .await
            .unwrap_or_default()
            .is_empty()
    );
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "closed by the header deadline"
    );
    assert_eq!(
        proxy.service("svc").rejections(RejectReason::ProxyProtocol),
        4
    );
    assert_eq!(backend.accepted(), 0);
}

#[tokio::test]
async fn a_client_still_sending_its_header_holds_a_process_slot() {
    let backend = TestBackend::start("echo", Behaviour::Echo).await;
    let service = tcp_service("accept_proxy_protocol = true", &backend);
    // One worker accepts (and takes on) clients in the order they connect.
    let global = "[global]\nworkers = 1\nmax_connections = 1\n";
    let proxy = TestProxy::start(&format!("{global}{service}")).await;
    let addr = proxy.addr("svc");
    let mut waiting = TcpStream::connect(addr).await.expect("connect");
    waiting
        .write_all(b"PROXY TCP4 198.51.100.7 ")
        .await
        .expect("half a header");

    // Once l4lb has taken the waiting client on, the one slot is its.
    let whole = b"PROXY TCP4 198.51.100.8 192.0.2.1 5555 443\r\nhello";
    let deadline = Instant::now() + common::PATIENCE;
    while !echoed(addr, whole).await.0.is_empty() {
        assert!(
            Instant::now() < deadline,
            "clients beyond max_connections are served while one is still sending its header"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let service = proxy.service("svc");
    assert!(service.rejections(RejectReason::MaxConnections) >= 1);

    waiting
        .write_all(b"192.0.2.1 5555 443\r\nping")
        .await
        .expect("the rest of the header");
    waiting.shutdown().await.expect("half-close");
    let seen = read_until_closed(&mut waiting).await.expect("echo");
    assert_eq!(
        seen, b"ping",
        "the waiting client is served once its header is complete"
    );
}

#[tokio::test]
async fn udp_flows_carry_a_v2_header_on_their_first_datagram_only() {
    let backend_addr = common::udp_echo().await;
    let toml = format!(
        "[[service]]\nname = \"u\"\nprotocol = \"udp\"\nlisten = \"127.0.0.1:0\"\n\
         proxy_protocol = \"v2\"\n[[service.backend]]\naddress = \"{backend_addr}\"\n"
    );
    let proxy = TestProxy::start(&toml).await;
    let addr = proxy.addr("u");
    let client = UdpSocket::bind("127.0.0.1:0").await.expect("client");
    let mut buf = [0u8; 2048];
    for (i, payload) in [&b"first"[..], b"second"].iter().enumerate() {
        client.send_to(payload, addr).await.expect("send");
        let (len, _) = tokio::time::timeout(common::PATIENCE, client.recv_from(&mut buf))
            .await
            .expect("reply")
            .expect("recv");
        if i == 0 {
            let (header, rest) = header_of(&buf[..len]);
            let source = client.local_addr().expect("address");
            assert_eq!(
                header,
                ProxyHeader::Proxy {
                    source,
                    destination: addr
                }
            );
            assert_eq!(rest, *payload);
        } else {
            assert_eq!(&buf[..len], *payload);
        }
    }
}

#[tokio::test]
async fn udp_v2_every_heads_each_datagram_of_a_flow() {
    let backend_addr = common::udp_echo().await;
    let toml = format!(
        "[[service]]\nname = \"u\"\nprotocol = \"udp\"\nlisten = \"127.0.0.1:0\"\n\
         proxy_protocol = \"v2-every\"\n[[service.backend]]\naddress = \"{backend_addr}\"\n"
    );
    let proxy = TestProxy::start(&toml).await;
    let addr = proxy.addr("u");
    let client = UdpSocket::bind("127.0.0.1:0").await.expect("client");
    let source = client.local_addr().expect("address");
    let mut buf = [0u8; 2048];
    for payload in [&b"first"[..], b"second", b"third"] {
        client.send_to(payload, addr).await.expect("send");
        let (len, _) = tokio::time::timeout(common::PATIENCE, client.recv_from(&mut buf))
            .await
            .expect("reply")
            .expect("recv");
        let (header, rest) = header_of(&buf[..len]);
        let expected = ProxyHeader::Proxy {
            source,
            destination: addr,
        };
        assert_eq!(header, expected, "the header of {payload:?}");
        assert_eq!(rest, payload);
    }
    assert_eq!(
        proxy.service("u").udp_flows(),
        1,
        "one flow carried all three"
    );
}
