//! Byte-exact relaying through the proxy: bulk integrity, half-close, idle timeout.

mod common;

use std::time::Duration;

use common::{
    Behaviour, PATIENCE, TestBackend, TestProxy, backend_blocks, random_bytes, read_until_closed,
};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TEN_MIB: usize = 10 * 1024 * 1024;

fn service_toml(name: &str, extra: &str, backends: &str) -> String {
    format!("[[service]]\nname = \"{name}\"\nlisten = \"127.0.0.1:0\"\n{extra}\n{backends}")
}

/// Sends `data` and reads the echo concurrently; returns the SHA-256 of what came back.
async fn echo_through(addr: std::net::SocketAddr, data: Vec<u8>) -> [u8; 32] {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut reader, mut writer) = stream.into_split();
    let send = tokio::spawn(async move {
        writer.write_all(&data).await.expect("send");
        writer.shutdown().await.expect("half-close");
    });
    let mut received = Vec::with_capacity(TEN_MIB);
    tokio::time::timeout(PATIENCE, reader.read_to_end(&mut received))
        .await
        .expect("echo completes in time")
        .expect("read echo");
    send.await.expect("sender");
    Sha256::digest(&received).into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_mib_each_way_arrive_intact_on_concurrent_connections() {
    let a = TestBackend::start("a", Behaviour::Echo).await;
    let b = TestBackend::start("b", Behaviour::Echo).await;
    let toml = service_toml("bulk", "", &backend_blocks(&[a.addr, b.addr], &[]));
    let proxy = TestProxy::start(&toml).await;
    let addr = proxy.addr("bulk");

    let transfers: Vec<_> = (0..4u64)
        .map(|seed| {
            let data = random_bytes(TEN_MIB, seed);
            let expected: [u8; 32] = Sha256::digest(&data).into();
            (expected, tokio::spawn(echo_through(addr, data)))
        })
        .collect();
    for (expected, transfer) in transfers {
        assert_eq!(transfer.await.expect("transfer task"), expected);
    }
    assert_eq!(a.accepted() + b.accepted(), 4);
    proxy.assert_drained().await;
    assert!(proxy.stop().await.completed);
}

#[tokio::test]
async fn client_half_close_reaches_backend_and_reply_still_flows_back() {
    let backend = TestBackend::start("answer", Behaviour::ReplyAfterEof).await;
    let proxy = TestProxy::start(&service_toml(
        "half",
        "",
        &backend_blocks(&[backend.addr], &[]),
    ))
    .await;

    let mut stream = TcpStream::connect(proxy.addr("half"))
        .await
        .expect("connect");
    stream.write_all(b"hello, backend").await.expect("send");
    stream.shutdown().await.expect("half-close");
    let reply = read_until_closed(&mut stream).await.expect("reply");
    assert_eq!(String::from_utf8_lossy(&reply), "answer got 14 bytes");
    proxy.assert_drained().await;
}

#[tokio::test]
async fn idle_session_is_closed_after_idle_timeout() {
    let backend = TestBackend::start("idle", Behaviour::Echo).await;
    let toml = service_toml(
        "idle",
        "idle_timeout = \"300ms\"",
        &backend_blocks(&[backend.addr], &[]),
    );
    let proxy = TestProxy::start(&toml).await;

    let mut stream = TcpStream::connect(proxy.addr("idle"))
        .await
        .expect("connect");
    stream.write_all(b"ping").await.expect("send");
    let mut echo = [0u8; 4];
    stream.read_exact(&mut echo).await.expect("echo");
    assert_eq!(&echo, b"ping");
    // Nothing more is sent: the proxy must close the session by itself.
    let rest = read_until_closed(&mut stream).await.expect("clean close");
    assert!(rest.is_empty());
    proxy.assert_drained().await;
}

#[tokio::test]
async fn active_session_is_not_cut_by_idle_timeout() {
    let backend = TestBackend::start("busy", Behaviour::Echo).await;
    let toml = service_toml(
        "busy",
        "idle_timeout = \"400ms\"",
        &backend_blocks(&[backend.addr], &[]),
    );
    let proxy = TestProxy::start(&toml).await;

    let mut stream = TcpStream::connect(proxy.addr("busy"))
        .await
        .expect("connect");
    // Ten exchanges spaced 100ms apart: 1s in all, longer than the idle timeout.
    for i in 0..10u8 {
        stream.write_all(&[i]).await.expect("send");
        let mut echo = [0u8; 1];
        stream
            .read_exact(&mut echo)
            .await
            .expect("session still open");
        assert_eq!(echo[0], i);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(stream);
    proxy.assert_drained().await;
}

#[tokio::test]
async fn ipv6_listener_relays_when_loopback_v6_exists() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("no IPv6 loopback on this machine; skipping");
        return;
    }
    let backend = TestBackend::start("v6", Behaviour::Echo).await;
    let toml = format!(
        "[[service]]\nname = \"v6\"\nlisten = [\"127.0.0.1:0\", \"[::1]:0\"]\n{}",
        backend_blocks(&[backend.addr], &[])
    );
    let proxy = TestProxy::start(&toml).await;
    let v6 = proxy
        .addrs("v6")
        .into_iter()
        .find(|a| a.is_ipv6())
        .expect("v6 listener");
    let mut stream = TcpStream::connect(v6).await.expect("connect over IPv6");
    stream.write_all(b"six").await.expect("send");
    let mut echo = [0u8; 3];
    stream.read_exact(&mut echo).await.expect("echo");
    assert_eq!(&echo, b"six");
}
