//! Refused backends, retries and connection caps, as a client sees them.

mod common;

use common::{
    Behaviour, TestBackend, TestProxy, backend_blocks, read_tag, read_until_closed, refusing_addrs,
    tag_of_new_connection,
};
use l4lb::service::RejectReason;
use tokio::net::TcpStream;

fn service(extra: &str, backends: &str) -> String {
    format!("[[service]]\nname = \"svc\"\nlisten = \"127.0.0.1:0\"\n{extra}\n{backends}")
}

#[tokio::test]
async fn refusing_backend_never_shows_as_a_client_error() {
    let good = TestBackend::start("good", Behaviour::Tagged).await;
    let [dead] = refusing_addrs::<1>().await;
    let toml = service(
        "connect_attempts = 2",
        &backend_blocks(&[dead, good.addr], &[]),
    );
    let proxy = TestProxy::start(&toml).await;
    for _ in 0..20 {
        assert_eq!(tag_of_new_connection(proxy.addr("svc")).await, "good");
    }
    let svc = proxy.service("svc");
    assert!(
        svc.backends()[0].connect_failures() >= 1,
        "the dead backend was tried"
    );
    assert_eq!(svc.rejections(RejectReason::BackendConnect), 0);
    proxy.assert_drained().await;
}

#[tokio::test]
async fn all_backends_refusing_closes_the_client_cleanly_and_counts_it() {
    let dead = refusing_addrs::<2>().await;
    let proxy = TestProxy::start(&service(
        "connect_attempts = 3",
        &backend_blocks(&dead, &[]),
    ))
    .await;
    for _ in 0..5 {
        let mut stream = TcpStream::connect(proxy.addr("svc"))
            .await
            .expect("accepted");
        let received = read_until_closed(&mut stream)
            .await
            .expect("closed, not reset");
        assert!(received.is_empty());
    }
    let svc = proxy.service("svc");
    proxy.assert_drained().await;
    assert_eq!(svc.rejections(RejectReason::BackendConnect), 5);
    // Three attempts per client over two backends, alternating: 15 failures in all.
    let failures: u64 = svc.backends().iter().map(|b| b.connect_failures()).sum();
    assert_eq!(failures, 15);
}

#[tokio::test]
async fn service_max_connections_closes_the_extra_client_and_recovers() {
    let backend = TestBackend::start("b", Behaviour::Tagged).await;
    let proxy = TestProxy::start(&service(
        "max_connections = 2",
        &backend_blocks(&[backend.addr], &[]),
    ))
    .await;
    let addr = proxy.addr("svc");
    let mut first = TcpStream::connect(addr).await.expect("connect");
    let mut second = TcpStream::connect(addr).await.expect("connect");
    assert_eq!(read_tag(&mut first).await, "b");
    assert_eq!(read_tag(&mut second).await, "b");

    let mut third = TcpStream::connect(addr)
        .await
        .expect("accepted by the kernel");
    assert!(
        read_until_closed(&mut third)
            .await
            .expect("closed")
            .is_empty()
    );
    let svc = proxy.service("svc");
    assert_eq!(svc.rejections(RejectReason::MaxConnections), 1);

    drop(first);
    common::wait_until("one session left", || svc.active_connections() == 1).await;
    let mut fourth = TcpStream::connect(addr).await.expect("connect");
    assert_eq!(read_tag(&mut fourth).await, "b");
    drop((second, fourth));
    proxy.assert_drained().await;
}

#[tokio::test]
async fn process_wide_max_connections_applies_across_services() {
    let backend = TestBackend::start("b", Behaviour::Tagged).await;
    let blocks = backend_blocks(&[backend.addr], &[]);
    let toml = format!(
        "[global]\nmax_connections = 1\n\
         [[service]]\nname = \"one\"\nlisten = \"127.0.0.1:0\"\n{blocks}\n\
         [[service]]\nname = \"two\"\nlisten = \"127.0.0.1:0\"\n{blocks}"
    );
    let proxy = TestProxy::start(&toml).await;
    let mut held = TcpStream::connect(proxy.addr("one"))
        .await
        .expect("connect");
    assert_eq!(read_tag(&mut held).await, "b");
    let mut refused = TcpStream::connect(proxy.addr("two"))
        .await
        .expect("connect");
    assert!(
        read_until_closed(&mut refused)
            .await
            .expect("closed")
            .is_empty()
    );
    assert_eq!(
        proxy
            .service("two")
            .rejections(RejectReason::MaxConnections),
        1
    );
    drop(held);
    proxy.assert_drained().await;
}

#[tokio::test]
async fn full_backend_is_skipped() {
    let small = TestBackend::start("small", Behaviour::Tagged).await;
    let big = TestBackend::start("big", Behaviour::Tagged).await;
    let toml = format!(
        "[[service]]\nname = \"svc\"\nlisten = \"127.0.0.1:0\"\n\
         [[service.backend]]\naddress = \"{}\"\nmax_connections = 1\nweight = 1000\n\
         [[service.backend]]\naddress = \"{}\"\n",
        small.addr, big.addr
    );
    let proxy = TestProxy::start(&toml).await;
    let mut held = TcpStream::connect(proxy.addr("svc"))
        .await
        .expect("connect");
    // Smooth round robin offers the heaviest backend first.
    assert_eq!(read_tag(&mut held).await, "small");
    // While "small" is full, every new client goes to "big".
    for _ in 0..10 {
        assert_eq!(tag_of_new_connection(proxy.addr("svc")).await, "big");
    }
    drop(held);
    proxy.assert_drained().await;
}

#[tokio::test]
async fn per_source_limit_caps_one_address_only() {
    let backend = TestBackend::start("b", Behaviour::Tagged).await;
    let toml = service(
        "max_connections_per_source = 1",
        &backend_blocks(&[backend.addr], &[]),
    );
    let proxy = TestProxy::start(&toml).await;
    let addr = proxy.addr("svc");
    let mut held = common::connect_from([127, 0, 0, 21], addr).await;
    assert_eq!(read_tag(&mut held).await, "b");
    let mut same_source = common::connect_from([127, 0, 0, 21], addr).await;
    assert!(
        read_until_closed(&mut same_source)
            .await
            .expect("closed")
            .is_empty()
    );
    let mut other_source = common::connect_from([127, 0, 0, 22], addr).await;
    assert_eq!(read_tag(&mut other_source).await, "b");
    assert_eq!(
        proxy
            .service("svc")
            .rejections(RejectReason::MaxConnections),
        1
    );
    drop((held, other_source));
    proxy.assert_drained().await;
}

#[tokio::test]
async fn backend_that_never_completes_the_handshake_times_out_and_the_next_serves() {
    let hole = common::Blackhole::start();
    let good = TestBackend::start("good", Behaviour::Tagged).await;
    let toml = service(
        "connect_timeout = \"200ms\"\nconnect_attempts = 2",
        &backend_blocks(&[hole.addr, good.addr], &[1000, 1]),
    );
    let proxy = TestProxy::start(&toml).await;
    // Round robin offers the heavy black hole first: the client must still be served.
    assert_eq!(tag_of_new_connection(proxy.addr("svc")).await, "good");
    let svc = proxy.service("svc");
    assert_eq!(svc.backends()[0].connect_failures(), 1);
    assert_eq!(svc.rejections(RejectReason::BackendConnect), 0);
    proxy.assert_drained().await;
}

#[tokio::test]
async fn backend_reset_mid_stream_closes_the_client_and_releases_counts() {
    use tokio::io::AsyncWriteExt;
    let backend = TestBackend::start("rst", Behaviour::ResetAfterFirstRead).await;
    let proxy = TestProxy::start(&service("", &backend_blocks(&[backend.addr], &[]))).await;
    let mut stream = TcpStream::connect(proxy.addr("svc"))
        .await
        .expect("connect");
    stream.write_all(b"trigger").await.expect("send");
    // The client sees its connection end (reset or FIN), not a hang.
    let _ = read_until_closed(&mut stream).await;
    proxy.assert_drained().await;
}

#[tokio::test]
async fn client_reset_mid_stream_closes_the_backend_side_and_releases_counts() {
    let backend = TestBackend::start("watch", Behaviour::ReportEnd).await;
    let proxy = TestProxy::start(&service("", &backend_blocks(&[backend.addr], &[]))).await;
    let mut stream = TcpStream::connect(proxy.addr("svc"))
        .await
        .expect("connect");
    assert_eq!(read_tag(&mut stream).await, "watch");
    socket2::SockRef::from(&stream)
        .set_linger(Some(std::time::Duration::ZERO))
        .expect("linger");
    drop(stream);
    proxy.assert_drained().await;
    assert_eq!(proxy.service("svc").backends()[0].active(), 0);
}
