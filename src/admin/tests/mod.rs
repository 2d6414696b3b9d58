//! End-to-end tests of the admin server over real sockets on 127.0.0.1.
//! Covers routing, content types, HEAD, error documents, draining, and the
//! robustness bounds (header timeout, header size, connection cap, lifetime,
//! shutdown); `pressure` covers clients that attack those bounds. Unit tests
//! of individual pieces live beside them.

mod pressure;
mod raw_client;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::limits::Limits;
use super::server::serve_with_limits;
use super::{AdminState, serve};
use raw_client::{
    STEP_BOUND, connect, keep_alive_request, read_response, read_until_closed, request, send,
    stalled_reader, try_request,
};

const METRICS_TEXT: &str = "# HELP l4lb_connections_total Accepted connections.\n\
                            # TYPE l4lb_connections_total counter\n\
                            l4lb_connections_total 42\n";
const STATUS_JSON: &str = r#"{"listeners":[{"addr":"0.0.0.0:443","backends":2}]}"#;
const PROMETHEUS_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Fixed documents and a draining flag the test can flip.
struct FixedState {
    metrics: String,
    draining: AtomicBool,
}

impl AdminState for FixedState {
    fn metrics_text(&self) -> String {
        self.metrics.clone()
    }

    fn status_json(&self) -> String {
        STATUS_JSON.to_owned()
    }

    fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    fn authorize(&self, authorization: Option<&str>) -> bool {
        authorization == Some("Bearer test-token")
    }

    fn services_without_backends(
        &self,
        only: Option<&str>,
    ) -> Result<Vec<String>, super::ApiError> {
        match only {
            None | Some("svc") => Ok(Vec::new()),
            Some(other) => Err(super::ApiError {
                status: 404,
                message: format!("no service \"{other}\""),
            }),
        }
    }

    fn backend_action(
        &self,
        service: &str,
        backend: &str,
        action: &str,
    ) -> Result<String, super::ApiError> {
        if service == "svc" && backend == "[::1]:80" {
            Ok(format!("{{\"action\":\"{action}\"}}"))
        } else {
            Err(super::ApiError {
                status: 404,
                message: format!("no backend {backend} in service {service}"),
            })
        }
    }
}

/// A running admin server and the handles a test needs to drive it.
struct RunningServer {
    addr: SocketAddr,
    state: Arc<FixedState>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl RunningServer {
    /// The public entry point, with default limits.
    async fn start() -> Self {
        Self::spawn(METRICS_TEXT.to_owned(), |listener, state, stop| {
            tokio::spawn(serve(listener, state, stop))
        })
        .await
    }

    async fn start_with_limits(limits: Limits) -> Self {
        Self::start_with(limits, METRICS_TEXT.to_owned()).await
    }

    async fn start_with(limits: Limits, metrics: String) -> Self {
        Self::spawn(metrics, move |listener, state, stop| {
            tokio::spawn(serve_with_limits(listener, state, stop, limits))
        })
        .await
    }

    async fn spawn(
        metrics: String,
        run: impl FnOnce(TcpListener, Arc<dyn AdminState>, CancellationToken) -> JoinHandle<()>,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let state = Arc::new(FixedState {
            metrics,
            draining: AtomicBool::new(false),
        });
        let stop = CancellationToken::new();
        let task = run(
            listener,
            Arc::clone(&state) as Arc<dyn AdminState>,
            stop.clone(),
        );
        Self {
            addr,
            state,
            stop,
            task,
        }
    }

    /// Cancels `stop` and waits for `serve` to return, failing the test if it
    /// does not do so within [`STEP_BOUND`].
    async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(STEP_BOUND, self.task)
            .await
            .expect("serve did not return after stop")
            .expect("serve task panicked");
    }
}

fn limits_with(adjust: impl FnOnce(&mut Limits)) -> Limits {
    let mut limits = Limits::default();
    adjust(&mut limits);
    limits
}

#[tokio::test]
async fn metrics_served_in_prometheus_text_format() {
    let server = RunningServer::start().await;
    let response = request(server.addr, "GET", "/metrics").await;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some(PROMETHEUS_TYPE));
    assert_eq!(response.body_text(), METRICS_TEXT);
    server.stop().await;
}

#[tokio::test]
async fn status_served_as_json() {
    let server = RunningServer::start().await;
    let response = request(server.addr, "GET", "/status").await;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("application/json"));
    assert_eq!(response.body_text(), STATUS_JSON);
    server.stop().await;
}

#[tokio::test]
async fn healthz_ok_while_serving_and_503_when_draining() {
    let server = RunningServer::start().await;
    let healthy = request(server.addr, "GET", "/healthz").await;
    assert_eq!(healthy.status, 200);
    assert_eq!(
        healthy.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(healthy.body_text(), "ok\n");

    server.state.draining.store(true, Ordering::SeqCst);
    let draining = request(server.addr, "GET", "/healthz").await;
    assert_eq!(draining.status, 503);
    assert_eq!(draining.body_text(), "draining\n");
    server.stop().await;
}

#[tokio::test]
async fn ready_needs_no_token_and_names_unknown_services() {
    let server = RunningServer::start().await;
    for path in ["/ready", "/ready?service=svc"] {
        let ready = request(server.addr, "GET", path).await;
        assert_eq!(
            (ready.status, ready.body_text()),
            (200, "ready\n"),
            "{path}"
        );
    }
    let unknown = request(server.addr, "GET", "/ready?service=nope").await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.body_text(), r#"{"error":"no service \"nope\""}"#);
    let typo = request(server.addr, "GET", "/ready?servce=svc").await;
    assert_eq!(typo.status, 400);
    server.state.draining.store(true, Ordering::SeqCst);
    let draining = request(server.addr, "GET", "/ready").await;
    assert_eq!((draining.status, draining.body_text()), (503, "draining\n"));
    server.stop().await;
}

#[tokio::test]
async fn head_sends_get_headers_without_a_body() {
    let server = RunningServer::start().await;
    let mut stream = connect(server.addr).await;
    for (path, body_len, content_type) in [
        ("/metrics", METRICS_TEXT.len(), PROMETHEUS_TYPE),
        ("/status", STATUS_JSON.len(), "application/json"),
        ("/healthz", "ok\n".len(), "text/plain; charset=utf-8"),
    ] {
        let request = keep_alive_request("HEAD", path);
        send(&mut stream, request.as_bytes())
            .await
            .expect("send HEAD");
        let response = read_response(&mut stream, false).await;
        assert_eq!(response.status, 200, "{path}");
        assert_eq!(
            response.header("content-type"),
            Some(content_type),
            "{path}"
        );
        assert_eq!(
            response.header("content-length"),
            Some(body_len.to_string().as_str())
        );
    }
    // A body sent after any HEAD response would corrupt this next response.
    let request = keep_alive_request("GET", "/healthz");
    send(&mut stream, request.as_bytes())
        .await
        .expect("send GET");
    let response = read_response(&mut stream, true).await;
    assert_eq!(response.body_text(), "ok\n");
    server.stop().await;
}

#[tokio::test]
async fn head_healthz_reports_draining() {
    let server = RunningServer::start().await;
    server.state.draining.store(true, Ordering::SeqCst);
    let response = request(server.addr, "HEAD", "/healthz").await;
    assert_eq!(response.status, 503);
    assert!(response.body.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn unknown_path_gets_404_json_naming_the_path() {
    let server = RunningServer::start().await;
    let response = request(server.addr, "GET", "/nope?verbose=1").await;
    assert_eq!(response.status, 404);
    assert_eq!(response.header("content-type"), Some("application/json"));
    assert_eq!(
        response.body_text(),
        r#"{"error":"not found","path":"/nope"}"#
    );
    server.stop().await;
}

#[tokio::test]
async fn unknown_path_is_json_escaped_in_404() {
    let server = RunningServer::start().await;
    let response = request(server.addr, "GET", r#"/a"b\c"#).await;
    assert_eq!(response.status, 404);
    assert_eq!(
        response.body_text(),
        r#"{"error":"not found","path":"/a\"b\\c"}"#
    );
    server.stop().await;
}

#[tokio::test]
async fn known_path_with_other_method_gets_405_with_allow() {
    let server = RunningServer::start().await;
    for (method, path) in [
        ("POST", "/metrics"),
        ("DELETE", "/status"),
        ("PUT", "/healthz"),
    ] {
        let response = request(server.addr, method, path).await;
        assert_eq!(response.status, 405, "{method} {path}");
        assert_eq!(response.header("allow"), Some("GET, HEAD"));
        assert_eq!(response.header("content-type"), Some("application/json"));
        assert_eq!(response.body_text(), r#"{"error":"method not allowed"}"#);
    }
    server.stop().await;
}

#[tokio::test]
async fn request_body_on_rejected_method_is_not_needed() {
    let server = RunningServer::start().await;
    let mut stream = connect(server.addr).await;
    let request = "POST /metrics HTTP/1.1\r\nHost: admin\r\nContent-Length: 5\r\n\r\nhello";
    send(&mut stream, request.as_bytes())
        .await
        .expect("send POST");
    let response = read_response(&mut stream, true).await;
    assert_eq!(response.status, 405);
    server.stop().await;
}

#[tokio::test]
async fn query_string_is_ignored_for_routing() {
    let server = RunningServer::start().await;
    let metrics = request(server.addr, "GET", "/metrics?x=1").await;
    assert_eq!(metrics.status, 200);
    assert_eq!(metrics.body_text(), METRICS_TEXT);
    let health = request(server.addr, "GET", "/healthz?").await;
    assert_eq!(health.status, 200);
    server.stop().await;
}

#[tokio::test]
async fn metrics_larger_than_the_buffer_limit_are_served_whole() {
    let metrics: String = (0..20_000)
        .map(|i| format!("l4lb_backend_up{{backend=\"b{i}\"}} 1\n"))
        .collect();
    assert!(metrics.len() > 8 * Limits::default().max_buf_size);
    let server = RunningServer::start_with(Limits::default(), metrics.clone()).await;
    let response = request(server.addr, "GET", "/metrics").await;
    assert_eq!(response.status, 200);
    assert_eq!(response.body_text(), metrics);
    server.stop().await;
}

#[tokio::test]
async fn slowloris_is_disconnected_while_others_are_served() {
    let limits = limits_with(|l| l.header_read_timeout = Duration::from_millis(300));
    let server = RunningServer::start_with_limits(limits).await;
    let mut slow = connect(server.addr).await;
    send(&mut slow, b"GET /metr")
        .await
        .expect("send partial request line");

    let response = request(server.addr, "GET", "/healthz").await;
    assert_eq!(response.status, 200);

    read_until_closed(&mut slow).await;
    server.stop().await;
}

#[tokio::test]
async fn trickling_header_bytes_does_not_extend_the_header_timeout() {
    let limits = limits_with(|l| l.header_read_timeout = Duration::from_millis(300));
    let server = RunningServer::start_with_limits(limits).await;
    let (mut reader, mut writer) = connect(server.addr).await.into_split();
    let trickle = tokio::spawn(async move {
        let _ = writer.write_all(b"GET /metrics HTTP/1.1\r\n").await;
        for _ in 0..200 {
            if writer.write_all(b"X-Slow: 1\r\n").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let closed = tokio::time::timeout(STEP_BOUND, async {
        let mut buf = [0u8; 1024];
        while !matches!(
            tokio::io::AsyncReadExt::read(&mut reader, &mut buf).await,
            Ok(0) | Err(_)
        ) {}
    })
    .await;
    assert!(closed.is_ok(), "trickling client was not disconnected");
    trickle.abort();
    server.stop().await;
}

#[tokio::test]
async fn oversized_headers_are_rejected_not_hung() {
    let server = RunningServer::start().await;
    let mut stream = connect(server.addr).await;
    let filler = "a".repeat(4 * Limits::default().max_buf_size);
    let request = format!("GET /metrics HTTP/1.1\r\nHost: admin\r\nX-Filler: {filler}\r\n\r\n");
    // The server may hang up before the whole request is written.
    let _ = send(&mut stream, request.as_bytes()).await;
    let received = read_until_closed(&mut stream).await;
    assert!(
        received.is_empty() || received.starts_with(b"HTTP/1.1 431"),
        "unexpected reply: {:?}",
        String::from_utf8_lossy(&received[..received.len().min(64)])
    );
    server.stop().await;
}

/// A keep-alive connection that has completed one request, so the server has
/// certainly admitted it and holds a slot for it.
async fn admitted_connection(addr: SocketAddr) -> TcpStream {
    let mut stream = connect(addr).await;
    let request = keep_alive_request("GET", "/healthz");
    send(&mut stream, request.as_bytes()).await.expect("send");
    assert_eq!(read_response(&mut stream, true).await.status, 200);
    stream
}

#[tokio::test]
async fn a_connection_beyond_the_limit_evicts_the_longest_idle_one() {
    let limits = limits_with(|l| l.max_connections = 4);
    let server = RunningServer::start_with_limits(limits).await;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(admitted_connection(server.addr).await);
    }

    let response = request(server.addr, "GET", "/healthz").await;
    assert_eq!(response.status, 200);
    read_until_closed(&mut held[0]).await;

    for stream in &mut held[1..] {
        let request = keep_alive_request("GET", "/status");
        send(stream, request.as_bytes()).await.expect("send");
        assert_eq!(read_response(stream, true).await.status, 200);
    }
    server.stop().await;
}

/// A /metrics document far larger than what the kernel buffers for a client
/// that does not read.
fn large_metrics() -> String {
    let line = format!("l4lb_backend_up{{backend=\"{}\"}} 1\n", "b".repeat(100));
    line.repeat(8 * 1024 * 1024 / line.len())
}

#[tokio::test]
async fn a_connection_beyond_the_limit_is_closed_while_every_slot_is_sending() {
    let limits = limits_with(|l| l.max_connections = 1);
    let server = RunningServer::start_with(limits, large_metrics()).await;
    let held = stalled_reader(server.addr, "/metrics").await;
    assert!(try_request(server.addr, "GET", "/healthz").await.is_none());
    drop(held);

    let mut admitted = None;
    for _ in 0..200 {
        admitted = try_request(server.addr, "GET", "/healthz").await;
        if admitted.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(admitted.map(|response| response.status), Some(200));
    server.stop().await;
}

#[tokio::test]
async fn connection_is_closed_when_its_lifetime_ends() {
    let limits = limits_with(|l| {
        l.header_read_timeout = Duration::from_secs(60);
        l.connection_lifetime = Duration::from_millis(300);
        l.close_grace = Duration::from_millis(100);
    });
    let server = RunningServer::start_with_limits(limits).await;
    let mut slow = connect(server.addr).await;
    send(&mut slow, b"GET /metrics HTTP/1.1\r\n")
        .await
        .expect("send partial head");
    read_until_closed(&mut slow).await;
    server.stop().await;
}

#[tokio::test]
async fn serve_returns_promptly_after_stop_with_idle_keep_alive_connection() {
    // Every other bound is far beyond the test bound, so only the shutdown
    // itself can close the idle connection in time.
    let limits = limits_with(|l| {
        l.header_read_timeout = Duration::from_secs(600);
        l.connection_lifetime = Duration::from_secs(600);
        l.close_grace = Duration::from_secs(600);
    });
    let server = RunningServer::start_with_limits(limits).await;
    let addr = server.addr;
    let mut idle = admitted_connection(addr).await;
    server.stop().await;
    read_until_closed(&mut idle).await;
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "listener still open"
    );
}

#[tokio::test]
async fn public_serve_stops_with_idle_keep_alive_connection() {
    let server = RunningServer::start().await;
    let mut idle = admitted_connection(server.addr).await;
    server.stop().await;
    read_until_closed(&mut idle).await;
}

#[tokio::test]
async fn serve_returns_after_stop_with_partial_request_pending() {
    let limits = limits_with(|l| {
        l.header_read_timeout = Duration::from_secs(60);
        l.close_grace = Duration::from_millis(200);
    });
    let server = RunningServer::start_with_limits(limits).await;
    let mut slow = connect(server.addr).await;
    send(&mut slow, b"GET /status HTTP/1.1\r\nHost: ad")
        .await
        .expect("send partial head");
    // Make sure the server has picked the connection up before stopping.
    let response = request(server.addr, "GET", "/healthz").await;
    assert_eq!(response.status, 200);
    server.stop().await;
    read_until_closed(&mut slow).await;
}

/// Sends one POST with an optional bearer token over a fresh connection.
async fn post(addr: SocketAddr, target: &str, token: Option<&str>) -> raw_client::RawResponse {
    let mut stream = raw_client::connect(addr).await;
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let request = format!(
        "POST {target} HTTP/1.1\r\nHost: admin\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    raw_client::send(&mut stream, request.as_bytes())
        .await
        .expect("send");
    raw_client::read_response(&mut stream, true).await
}

#[tokio::test]
async fn runtime_api_requires_the_token_and_reports_unknown_backends() {
    let server = RunningServer::start().await;
    let target = "/services/svc/backends/%5B%3A%3A1%5D%3A80/drain";
    assert_eq!(post(server.addr, target, None).await.status, 401);
    assert_eq!(post(server.addr, target, Some("wrong")).await.status, 401);
    let ok = post(server.addr, target, Some("test-token")).await;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.body_text(), "{\"action\":\"drain\"}");
    let missing = post(
        server.addr,
        "/services/svc/backends/1.2.3.4:5/drain",
        Some("test-token"),
    )
    .await;
    assert_eq!(missing.status, 404);
    assert!(
        missing.body_text().contains("no backend 1.2.3.4:5"),
        "{}",
        missing.body_text()
    );
    let get = raw_client::request(server.addr, "GET", target).await;
    assert_eq!(get.status, 405);
    assert_eq!(get.header("allow"), Some("POST"));
    server.stop().await;
}
