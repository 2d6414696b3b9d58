//! Graceful stop in-process: listeners close, open sessions finish or are closed at the deadline.

mod common;

use common::{
    Behaviour, PATIENCE, TestBackend, TestProxy, backend_blocks, echo_round_trip, read_until_closed,
};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

fn config(grace: &str, backend: &TestBackend) -> String {
    format!(
        "[global]\nshutdown_grace = \"{grace}\"\n\
         [[service]]\nname = \"svc\"\nlisten = \"127.0.0.1:0\"\n{}",
        backend_blocks(&[backend.addr], &[])
    )
}

#[tokio::test]
async fn open_session_finishes_during_drain_while_new_clients_are_refused() {
    let backend = TestBackend::start("b", Behaviour::Echo).await;
    let proxy = TestProxy::start(&config("30s", &backend)).await;
    let addr = proxy.addr("svc");
    let mut session = TcpStream::connect(addr).await.expect("connect");
    echo_round_trip(&mut session, b"before").await;

    proxy.handle.shutdown();
    // The listener closes: new clients are refused.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while TcpStream::connect(addr).await.is_ok() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "listener never closed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    // The open session keeps working, then ends normally.
    echo_round_trip(&mut session, b"during drain").await;
    session.shutdown().await.expect("half-close");
    assert!(
        read_until_closed(&mut session)
            .await
            .expect("clean end")
            .is_empty()
    );

    let report = proxy.stop().await;
    assert!(report.completed);
    assert_eq!(report.closed_at_deadline, 0);
}

#[tokio::test]
async fn session_longer_than_grace_is_closed_at_the_deadline() {
    let backend = TestBackend::start("b", Behaviour::Echo).await;
    let proxy = TestProxy::start(&config("200ms", &backend)).await;
    let mut session = TcpStream::connect(proxy.addr("svc"))
        .await
        .expect("connect");
    echo_round_trip(&mut session, b"hold").await;

    let services = proxy.services.clone();
    let report = proxy.stop().await;
    assert!(!report.completed);
    assert_eq!(report.closed_at_deadline, 1);
    assert!(
        read_until_closed(&mut session)
            .await
            .expect("closed")
            .is_empty()
    );
    assert_eq!(services[0].active_connections(), 0);
    assert_eq!(services[0].backends()[0].active(), 0);
}
