//! Source-address access control over real sockets, TCP and UDP, from distinct
//! 127.x.y.z client addresses.

mod common;

use std::time::Duration;

use common::{Behaviour, TestBackend, TestProxy, connect_from, read_tag, read_until_closed};
use l4lb::service::{DropReason, RejectReason};
use tokio::net::UdpSocket;

fn tcp_service(acl: &str, backend: &TestBackend) -> String {
    format!(
        "[[service]]\nname = \"svc\"\nlisten = \"127.0.0.1:0\"\n{acl}\n\
         [[service.backend]]\naddress = \"{}\"\n",
        backend.addr
    )
}

#[tokio::test]
async fn denied_tcp_clients_are_closed_at_once_and_counted() {
    let backend = TestBackend::start("b", Behaviour::Tagged).await;
    let acl = "allow = [\"127.0.0.0/24\"]\ndeny = [\"127.0.0.66/32\"]";
    let proxy = TestProxy::start(&tcp_service(acl, &backend)).await;
    let addr = proxy.addr("svc");

    let mut allowed = connect_from([127, 0, 0, 10], addr).await;
    assert_eq!(read_tag(&mut allowed).await, "b");
    let mut denied = connect_from([127, 0, 0, 66], addr).await;
    assert!(
        read_until_closed(&mut denied)
            .await
            .unwrap_or_default()
            .is_empty()
    );
    let mut outside = connect_from([127, 0, 1, 10], addr).await;
    assert!(
        read_until_closed(&mut outside)
            .await
            .unwrap_or_default()
            .is_empty()
    );

    assert_eq!(
        backend.accepted(),
        1,
        "refused clients never reach a backend"
    );
    assert_eq!(proxy.service("svc").rejections(RejectReason::Acl), 2);
    drop(allowed);
    proxy.assert_drained().await;
}

#[tokio::test]
async fn denied_udp_datagrams_are_dropped_and_counted() {
    let backend_addr = common::udp_echo().await;
    let toml = format!(
        "[[service]]\nname = \"u\"\nprotocol = \"udp\"\nlisten = \"127.0.0.1:0\"\n\
         deny = [\"127.0.0.77\"]\n[[service.backend]]\naddress = \"{backend_addr}\"\n"
    );
    let proxy = TestProxy::start(&toml).await;
    let addr = proxy.addr("u");
    let denied = UdpSocket::bind("127.0.0.77:0").await.expect("client");
    denied.send_to(b"let me in", addr).await.expect("send");
    let mut buf = [0u8; 64];
    let answer = tokio::time::timeout(Duration::from_millis(300), denied.recv_from(&mut buf));
    assert!(answer.await.is_err(), "a denied client gets nothing back");
    let allowed = UdpSocket::bind("127.0.0.78:0").await.expect("client");
    allowed.send_to(b"hello", addr).await.expect("send");
    let (len, _) = tokio::time::timeout(common::PATIENCE, allowed.recv_from(&mut buf))
        .await
        .expect("reply")
        .expect("recv");
    assert_eq!(&buf[..len], b"hello");
    let service = proxy.service("u");
    assert_eq!(service.drops(DropReason::Acl), 1);
    assert_eq!(service.udp_flows(), 1);
}
