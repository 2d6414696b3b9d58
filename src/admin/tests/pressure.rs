//! The admin server under attack, over real sockets: clients that dribble
//! their request heads into every slot, clients that ask for large documents
//! and never read them, and requests that break the `Host` rule.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::raw_client::{STEP_BOUND, exchange, read_until_closed, request, stalled_reader};
use super::{RunningServer, large_metrics, limits_with};

/// Slow-drip clients: as many as the default connection cap.
const DRIPPERS: usize = 64;
const HEALTH_CHECKS: usize = 10;

/// Keeps one connection dripping a request head that never ends, one byte
/// every 100 ms, reconnecting whenever the server closes it, until `stop`;
/// `connected` is cancelled once the first connection is made, and `closed`
/// counts the connections the server closed.
async fn drip(
    addr: std::net::SocketAddr,
    connected: CancellationToken,
    stop: CancellationToken,
    closed: Arc<AtomicUsize>,
) {
    for _ in 0..1000 {
        let Ok(mut stream) = TcpStream::connect(addr).await else {
            return;
        };
        connected.cancel();
        let head = b"GET /metrics HTTP/1.1\r\nX-Drip: ";
        let mut unused = [0u8; 64];
        for step in 0..10_000 {
            let byte = [head.get(step).copied().unwrap_or(b'a')];
            if stream.write_all(&byte).await.is_err() {
                break;
            }
            let gone = tokio::select! {
                () = stop.cancelled() => return,
                read = stream.read(&mut unused) => matches!(read, Ok(0) | Err(_)),
                () = tokio::time::sleep(Duration::from_millis(100)) => false,
            };
            if gone {
                break;
            }
        }
        closed.fetch_add(1, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn slow_drip_connections_in_every_slot_never_lock_out_healthz() {
    // The header timeout is far beyond the test: only eviction can make room.
    let limits = limits_with(|l| l.header_read_timeout = Duration::from_secs(600));
    assert_eq!(limits.max_connections, DRIPPERS);
    let server = RunningServer::start_with_limits(limits).await;
    let stop = CancellationToken::new();
    let closed = Arc::new(AtomicUsize::new(0));
    let mut drippers = JoinSet::new();
    for _ in 0..DRIPPERS {
        let connected = CancellationToken::new();
        let dripper = drip(
            server.addr,
            connected.clone(),
            stop.clone(),
            Arc::clone(&closed),
        );
        drippers.spawn(dripper);
        tokio::time::timeout(STEP_BOUND, connected.cancelled())
            .await
            .expect("a dripper connects");
    }
    // Accepted in connection order: every slot is taken before each check.
    for check in 0..HEALTH_CHECKS {
        let response = request(server.addr, "GET", "/healthz").await;
        assert_eq!(response.status, 200, "check {check}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Each check evicted the dripper that had waited longest.
    let deadline = Instant::now() + STEP_BOUND;
    while closed.load(Ordering::SeqCst) < HEALTH_CHECKS {
        assert!(Instant::now() < deadline, "drippers were not evicted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.cancel();
    while tokio::time::timeout(STEP_BOUND, drippers.join_next())
        .await
        .expect("the drippers stop")
        .is_some()
    {}
    server.stop().await;
}

#[tokio::test]
async fn documents_beyond_the_memory_budget_get_503_with_retry_after() {
    let limits = limits_with(|l| {
        l.body_budget = 1024 * 1024;
        l.body_wait = Duration::from_millis(300);
        l.stalled_after = Duration::from_secs(600);
    });
    let metrics = large_metrics();
    let server = RunningServer::start_with(limits, metrics.clone()).await;
    // Larger than the whole budget, so it takes all of it until it is read.
    let mut stalled = stalled_reader(server.addr, "/metrics").await;

    let refused = request(server.addr, "GET", "/metrics").await;
    assert_eq!(refused.status, 503);
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert!(
        refused.body_text().contains("retry"),
        "{}",
        refused.body_text()
    );
    assert_eq!(request(server.addr, "GET", "/healthz").await.status, 200);

    // Once the first client reads its document, the next one is served whole.
    let len = metrics.len();
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        let mut total = 0;
        while total < len {
            match tokio::time::timeout(STEP_BOUND, stalled.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => total += n,
                _ => break,
            }
        }
        total
    });
    let deadline = Instant::now() + STEP_BOUND;
    loop {
        let response = request(server.addr, "GET", "/metrics").await;
        if response.status == 200 {
            assert_eq!(response.body_text(), metrics);
            break;
        }
        assert!(Instant::now() < deadline, "the budget never came back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        reader.await.expect("reader") >= len,
        "the first document came whole"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_response_left_unread_past_the_grace_period_gives_its_budget_up() {
    let limits = limits_with(|l| {
        l.body_budget = 1024 * 1024;
        l.body_wait = Duration::from_secs(5);
        l.stalled_after = Duration::from_millis(200);
    });
    let metrics = large_metrics();
    let server = RunningServer::start_with(limits, metrics.clone()).await;
    let mut stalled = stalled_reader(server.addr, "/metrics").await;

    let response = request(server.addr, "GET", "/metrics").await;
    assert_eq!(
        response.status, 200,
        "served once the stalled one is evicted"
    );
    assert_eq!(response.body_text(), metrics);
    let partial = read_until_closed(&mut stalled).await;
    assert!(
        partial.len() < metrics.len(),
        "the stalled client's connection was closed"
    );
    server.stop().await;
}

#[tokio::test]
async fn http_1_1_needs_exactly_one_host_and_http_1_0_may_omit_it() {
    let server = RunningServer::start().await;
    let missing = exchange(
        server.addr,
        "GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(missing.status, 400);
    assert_eq!(missing.header("content-type"), Some("application/json"));
    assert!(
        missing.body_text().contains("Host"),
        "{}",
        missing.body_text()
    );

    let twice = "GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n";
    assert_eq!(exchange(server.addr, twice).await.status, 400);
    let http_1_0_twice = "GET /healthz HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n";
    assert_eq!(exchange(server.addr, http_1_0_twice).await.status, 400);

    let http_1_0 = exchange(server.addr, "GET /healthz HTTP/1.0\r\n\r\n").await;
    assert_eq!(http_1_0.status, 200);
    assert_eq!(http_1_0.body_text(), "ok\n");
    server.stop().await;
}
