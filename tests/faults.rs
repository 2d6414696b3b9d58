//! Faults as a client sees them, over real sockets: a backend that accepts but
//! never answers, file-descriptor exhaustion (by TCP clients, by clients that
//! never finish their PROXY header, and by UDP flows), a client that never
//! reads, `/metrics` scrapers that never read, and a UDP flood from 10,000
//! source ports.
//!
//! The last three run the real binary (not the in-process proxy) so that its CPU
//! time and resident memory can be read from `/proc/PID` without counting the
//! test's own. Figures read from `/proc` are bounded with huge margins: they
//! detect a busy loop or unbounded buffering, not a slow machine.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use common::ports::free_port;
use common::{Behaviour, PATIENCE, TestBackend, TestProxy, read_until_closed, wait_until};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{Instant, sleep, timeout};
use tokio_util::sync::CancellationToken;

const BIN: &str = env!("CARGO_BIN_EXE_l4lb");
const MIB: u64 = 1024 * 1024;
/// How much l4lb's resident memory may grow under a fault before it counts as unbounded.
const RSS_GROWTH_LIMIT: u64 = 64 * MIB;

// ---------------------------------------------------------------------------
// A backend that accepts but never answers
// ---------------------------------------------------------------------------

#[tokio::test]
async fn backend_that_never_answers_is_closed_by_the_idle_timeout() {
    let backend = SilentBackend::start().await;
    let toml = format!(
        "[[service]]\nname = \"svc\"\nlisten = \"127.0.0.1:0\"\nidle_timeout = \"300ms\"\n\
         [[service.backend]]\naddress = \"{}\"\n",
        backend.addr
    );
    let proxy = TestProxy::start(&toml).await;
    let mut client = TcpStream::connect(proxy.addr("svc"))
        .await
        .expect("connect");
    client.write_all(b"anyone there?").await.expect("send");

    let received = read_until_closed(&mut client)
        .await
        .expect("closed cleanly (FIN), not reset");
    assert!(received.is_empty(), "the backend never wrote anything");
    wait_until("the backend's side is closed too", || backend.ended() == 1).await;
    assert_eq!(backend.received(), 13, "the request reached the backend");
    proxy.assert_drained().await;
}

/// Accepts, reads and discards everything, never writes; counts what it saw.
struct SilentBackend {
    addr: SocketAddr,
    received: Arc<AtomicU64>,
    ended: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl SilentBackend {
    async fn start() -> SilentBackend {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let received = Arc::new(AtomicU64::new(0));
        let ended = Arc::new(AtomicUsize::new(0));
        let (bytes, ends) = (Arc::clone(&received), Arc::clone(&ended));
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (bytes, ends) = (Arc::clone(&bytes), Arc::clone(&ends));
                tokio::spawn(async move {
                    discard(stream, &bytes).await;
                    ends.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        SilentBackend {
            addr,
            received,
            ended,
            task,
        }
    }

    fn received(&self) -> u64 {
        self.received.load(Ordering::SeqCst)
    }

    /// Connections whose client side has closed (EOF or error).
    fn ended(&self) -> usize {
        self.ended.load(Ordering::SeqCst)
    }
}

impl Drop for SilentBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn discard(mut stream: TcpStream, counter: &AtomicU64) {
    let mut buf = [0u8; 4096];
    while let Ok(n @ 1..) = stream.read(&mut buf).await {
        counter.fetch_add(n as u64, Ordering::SeqCst);
    }
}

// ---------------------------------------------------------------------------
// File-descriptor exhaustion
// ---------------------------------------------------------------------------

/// l4lb's open-file limit in the exhaustion tests; far fewer than the clients.
const FD_LIMIT: u32 = 256;
const HELD_CLIENTS: usize = 600;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_cap_keeps_descriptors_for_the_admin_endpoint() {
    if !command_exists("prlimit") {
        eprintln!("SKIPPED: prlimit (util-linux) is not installed");
        return;
    }
    let echo = TestBackend::start("echo", Behaviour::Echo).await;
    let nofile = format!("--nofile={FD_LIMIT}:{FD_LIMIT}");
    let lb = Lb::spawn("fd-cap", &["prlimit", &nofile], &tcp_config(echo.addr, 0)).await;

    let mut clients = connect_many(lb.listen, HELD_CLIENTS).await;
    let outcomes = probe_all(&mut clients).await;
    eprintln!("{HELD_CLIENTS} clients against {FD_LIMIT} fds: {outcomes:?}");
    assert!(outcomes.served > 0, "l4lb serves what its fds allow");
    assert!(
        outcomes.served < FD_LIMIT as usize / 2,
        "at most half of {FD_LIMIT} fds carry sessions (two each), got {}",
        outcomes.served
    );
    assert!(outcomes.closed > 0, "clients over the cap are closed");
    // Not a single retry needed: the reserve is never touched by sessions.
    let (status, _) = try_http(lb.admin, "/healthz")
        .await
        .expect("/healthz answers at once while the clients are held");
    assert_eq!(status, 200);
    let metrics = admin_get(lb.admin, "/metrics").await;
    let series = "l4lb_rejected_connections_total{reason=\"max_connections\",service=\"svc\"}";
    let rejected = metric(&metrics, series);
    assert!(
        rejected > 0.0,
        "clients over the cap are counted: {rejected}"
    );
    let accept_errors = metric(&metrics, "l4lb_accept_errors_total{service=\"svc\"}");
    assert_eq!(
        accept_errors, 0.0,
        "the cap keeps accept() from running out of fds"
    );

    drop(clients);
    wait_for_round_trip(lb.listen, b"").await;
}

/// Clients that keep connections open with an unfinished PROXY header.
const HEADER_HOLDERS: usize = 400;
/// How long a holder waits before it reconnects after l4lb closed it.
const RECONNECT_PAUSE: Duration = Duration::from_millis(250);
/// `/healthz` requests made while the holders attack, spanning two header deadlines.
const HEALTH_CHECKS: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_never_finish_their_proxy_header_do_not_starve_the_admin_endpoint() {
    if !command_exists("prlimit") {
        eprintln!("SKIPPED: prlimit (util-linux) is not installed");
        return;
    }
    let echo = TestBackend::start("echo", Behaviour::Echo).await;
    let nofile = format!("--nofile={FD_LIMIT}:{FD_LIMIT}");
    let config = proxy_header_config(echo.addr);
    let lb = Lb::spawn("proxy-header", &["prlimit", &nofile], &config).await;

    let stop = CancellationToken::new();
    let mut holders = JoinSet::new();
    for _ in 0..HEADER_HOLDERS {
        holders.spawn(hold_unfinished_header(lb.listen, stop.clone()));
    }
    for check in 0..HEALTH_CHECKS {
        sleep(Duration::from_millis(300)).await;
        let answer = try_http(lb.admin, "/healthz")
            .await
            .map(|(status, _)| status);
        assert_eq!(
            answer,
            Some(200),
            "/healthz check {check} while headers are held"
        );
    }
    stop.cancel();
    while timeout(PATIENCE, holders.join_next())
        .await
        .expect("the holders stop")
        .is_some()
    {}

    let metrics = admin_get(lb.admin, "/metrics").await;
    let series = "l4lb_rejected_connections_total{reason=\"max_connections\",service=\"svc\"}";
    assert!(
        metric(&metrics, series) > 0.0,
        "holders over the cap are refused"
    );
    let accept_errors = metric(&metrics, "l4lb_accept_errors_total{service=\"svc\"}");
    assert_eq!(
        accept_errors, 0.0,
        "the cap keeps accept() from running out of fds"
    );
    wait_for_round_trip(lb.listen, PROXY_V1_HEADER).await;
}

/// A complete PROXY v1 header, for clients that do finish theirs.
const PROXY_V1_HEADER: &[u8] = b"PROXY TCP4 192.0.2.1 192.0.2.2 1111 2222\r\n";

/// One tcp service that expects PROXY headers, in front of `backend`, with the default cap.
fn proxy_header_config(backend: SocketAddr) -> impl Fn(u16, u16) -> String {
    move |admin, listen| {
        format!(
            "[admin]\nlisten = \"127.0.0.1:{admin}\"\n\
             [global]\nworkers = 2\nshutdown_grace = \"1s\"\n\
             [[service]]\nname = \"svc\"\nlisten = \"127.0.0.1:{listen}\"\n\
             accept_proxy_protocol = true\n\
             [[service.backend]]\naddress = \"{backend}\"\n"
        )
    }
}

/// Keeps one connection to `to` open with half a PROXY header, reconnecting after
/// a pause whenever l4lb closes it, until `stop` (or a bounded number of rounds).
async fn hold_unfinished_header(to: SocketAddr, stop: CancellationToken) {
    for _ in 0..1000 {
        let attempt = async {
            let Ok(Ok(mut stream)) = timeout(Duration::from_secs(2), TcpStream::connect(to)).await
            else {
                return;
            };
            if stream.write_all(b"PROXY TCP4 ").await.is_ok() {
                let mut byte = [0u8; 1];
                let _ = timeout(PATIENCE, stream.read(&mut byte)).await;
            }
        };
        tokio::select! {
            () = stop.cancelled() => return,
            () = attempt => {}
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = sleep(RECONNECT_PAUSE) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn descriptor_exhaustion_refuses_some_clients_without_spinning_and_recovers() {
    if !command_exists("prlimit") {
        eprintln!("SKIPPED: prlimit (util-linux) is not installed");
        return;
    }
    let echo = TestBackend::start("echo", Behaviour::Echo).await;
    let nofile = format!("--nofile={FD_LIMIT}:{FD_LIMIT}");
    // A configured cap beyond what the fds allow: accept() runs out.
    let config = tcp_config(echo.addr, 10_000);
    let lb = Lb::spawn("fds", &["prlimit", &nofile], &config).await;

    let mut clients = connect_many(lb.listen, HELD_CLIENTS).await;
    // Most clients now wait in the backlog of a process that has no fd to spare.
    let cpu = cpu_seconds_over(lb.pid(), Duration::from_secs(2)).await;
    eprintln!("l4lb CPU time over 2 s while saturated: {cpu:.3} s");
    assert!(
        cpu < 1.0,
        "l4lb spins while out of fds: {cpu:.3} s of CPU in 2 s"
    );

    let outcomes = probe_all(&mut clients).await;
    eprintln!("{HELD_CLIENTS} clients against {FD_LIMIT} fds: {outcomes:?}");
    assert!(outcomes.served > 0, "l4lb serves what its fds allow");
    assert!(
        outcomes.served < HELD_CLIENTS,
        "{FD_LIMIT} fds cannot serve {HELD_CLIENTS} clients"
    );
    assert!(
        outcomes.closed + outcomes.unanswered > 0,
        "some clients are refused"
    );

    drop(clients);
    wait_for_round_trip(lb.listen, b"").await;
    let metrics = admin_get(lb.admin, "/metrics").await;
    let accept_errors = metric(&metrics, "l4lb_accept_errors_total{service=\"svc\"}");
    eprintln!("l4lb_accept_errors_total = {accept_errors}");
    assert!(accept_errors > 0.0, "accept errors are counted");
}

/// UDP clients from distinct source ports, each a flow holding a descriptor.
const UDP_CLIENTS: usize = 600;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_flows_stay_within_the_descriptor_budget_and_the_admin_endpoint_answers() {
    if !command_exists("prlimit") {
        eprintln!("SKIPPED: prlimit (util-linux) is not installed");
        return;
    }
    let echo = UdpEcho::start().await;
    let config = move |admin: u16, listen: u16| {
        // The default max_flows (10000): far more than the descriptors allow.
        format!(
            "[admin]\nlisten = \"127.0.0.1:{admin}\"\n[global]\nworkers = 2\n\
             [[service]]\nname = \"dns\"\nprotocol = \"udp\"\nlisten = \"127.0.0.1:{listen}\"\n\
             [[service.backend]]\naddress = \"{}\"\n",
            echo.addr
        )
    };
    let nofile = format!("--nofile={FD_LIMIT}:{FD_LIMIT}");
    let lb = Lb::spawn("udp-fds", &["prlimit", &nofile], &config).await;
    let old = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    assert_eq!(udp_exchange(&old, lb.listen, b"old 1").await, b"old 1");

    let clients = open_udp_flows(lb.listen, UDP_CLIENTS).await;
    for attempt in 1..=3 {
        let answer = try_http(lb.admin, "/healthz").await;
        assert_eq!(
            answer.map(|(status, _)| status),
            Some(200),
            "/healthz answers at once (attempt {attempt} of 3) while {} flows are wanted",
            clients.len()
        );
    }
    let metrics = admin_get(lb.admin, "/metrics").await;
    let flows = metric(&metrics, "l4lb_udp_flows{service=\"dns\"}");
    let series = |reason: &str| {
        let name =
            format!("l4lb_udp_dropped_datagrams_total{{reason=\"{reason}\",service=\"dns\"}}");
        metric(&metrics, &name)
    };
    let (over, send_errors) = (series("max_flows"), series("send_error"));
    eprintln!(
        "{UDP_CLIENTS} udp clients against {FD_LIMIT} fds: {flows} flows, {over} dropped (max_flows), {send_errors} send errors"
    );
    assert!(flows > 1.0, "l4lb opens the flows its descriptors allow");
    assert!(
        flows < f64::from(FD_LIMIT) / 2.0,
        "flows stay well within {FD_LIMIT} descriptors: {flows}"
    );
    assert!(
        over > 0.0,
        "datagrams over the budget are dropped and counted"
    );
    assert_eq!(send_errors, 0.0, "no flow fails for want of a descriptor");
    let warning = "udp max_flows add up to more flows than the open-file limit allows";
    assert!(lb.log().contains(warning), "a warning at start says so");
    assert_eq!(udp_exchange(&old, lb.listen, b"old 2").await, b"old 2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_sessions_and_udp_flows_share_one_descriptor_budget() {
    if !command_exists("prlimit") {
        eprintln!("SKIPPED: prlimit (util-linux) is not installed");
        return;
    }
    let (udp_echo, tcp_echo) = (
        UdpEcho::start().await,
        TestBackend::start("echo", Behaviour::Echo).await,
    );
    let tcp_port = free_port();
    let config = move |admin: u16, listen: u16| {
        format!(
            "[admin]\nlisten = \"127.0.0.1:{admin}\"\n[global]\nworkers = 2\n\
             [[service]]\nname = \"dns\"\nprotocol = \"udp\"\nlisten = \"127.0.0.1:{listen}\"\n\
             [[service.backend]]\naddress = \"{}\"\n\
             [[service]]\nname = \"svc\"\nlisten = \"127.0.0.1:{tcp_port}\"\n\
             [[service.backend]]\naddress = \"{}\"\n",
            udp_echo.addr, tcp_echo.addr
        )
    };
    let nofile = format!("--nofile={FD_LIMIT}:{FD_LIMIT}");
    let lb = Lb::spawn("fd-mix", &["prlimit", &nofile], &config).await;

    // UDP flows take the whole budget first; then TCP clients arrive.
    let _flows = open_udp_flows(lb.listen, UDP_CLIENTS).await;
    let mut clients = connect_many(([127, 0, 0, 1], tcp_port).into(), HELD_CLIENTS).await;
    let outcomes = probe_all(&mut clients).await;
    eprintln!(
        "{UDP_CLIENTS} udp then {HELD_CLIENTS} tcp clients against {FD_LIMIT} fds: {outcomes:?}"
    );
    let (status, _) = try_http(lb.admin, "/healthz")
        .await
        .expect("/healthz answers at once whatever the mix");
    assert_eq!(status, 200);
    let metrics = admin_get(lb.admin, "/metrics").await;
    let rejected = "l4lb_rejected_connections_total{reason=\"max_connections\",service=\"svc\"}";
    assert!(
        metric(&metrics, rejected) > 0.0,
        "tcp clients over the shared budget are turned away and counted"
    );
    let accept_errors = metric(&metrics, "l4lb_accept_errors_total{service=\"svc\"}");
    assert_eq!(accept_errors, 0.0, "accept() never runs out of descriptors");
    let flows = metric(&metrics, "l4lb_udp_flows{service=\"dns\"}");
    let sessions = outcomes.served as f64;
    assert!(
        flows + sessions < f64::from(FD_LIMIT) / 2.0,
        "{flows} flows and {sessions} sessions share one budget"
    );
}

/// `count` new sockets each send one datagram to `to` (each a new flow); they
/// are returned open.
async fn open_udp_flows(to: SocketAddr, count: usize) -> Vec<UdpSocket> {
    let mut sockets = Vec::with_capacity(count);
    for i in 0..count {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let _ = socket.send_to(format!("client {i}").as_bytes(), to).await;
        sockets.push(socket);
        if i % 100 == 99 {
            // Let l4lb drain its receive buffer, so most datagrams are seen.
            sleep(Duration::from_millis(2)).await;
        }
    }
    sleep(Duration::from_millis(20)).await;
    sockets
}

/// One tcp service in front of `backend`, with `[global] max_connections`.
fn tcp_config(backend: SocketAddr, max_connections: usize) -> impl Fn(u16, u16) -> String {
    move |admin, listen| {
        format!(
            "[admin]\nlisten = \"127.0.0.1:{admin}\"\n\
             [global]\nworkers = 2\nshutdown_grace = \"1s\"\n\
             max_connections = {max_connections}\n\
             [[service]]\nname = \"svc\"\nlisten = \"127.0.0.1:{listen}\"\n\
             [[service.backend]]\naddress = \"{backend}\"\n"
        )
    }
}

/// Opens `count` connections (the kernel completes them from l4lb's backlog even
/// when l4lb cannot accept); a connect that fails or hangs is left out.
async fn connect_many(to: SocketAddr, count: usize) -> Vec<TcpStream> {
    let mut streams = Vec::with_capacity(count);
    for _ in 0..count {
        if let Ok(Ok(stream)) = timeout(Duration::from_secs(2), TcpStream::connect(to)).await {
            streams.push(stream);
        }
    }
    streams
}

/// What the held clients saw when each sent one request.
#[derive(Debug, Default)]
struct Outcomes {
    /// Got the echo back.
    served: usize,
    /// Closed (FIN or reset) or failed to connect.
    closed: usize,
    /// Still open with no answer (queued in the backlog, never accepted).
    unanswered: usize,
}

/// Sends "ping" on every client at once and sorts the results; keeps the streams.
async fn probe_all(clients: &mut Vec<TcpStream>) -> Outcomes {
    let mut outcomes = Outcomes {
        closed: HELD_CLIENTS - clients.len(),
        ..Outcomes::default()
    };
    let mut probes = JoinSet::new();
    for mut stream in clients.drain(..) {
        probes.spawn(async move {
            let answer = timeout(Duration::from_secs(3), ping(&mut stream)).await;
            (stream, answer)
        });
    }
    while let Some(done) = probes.join_next().await {
        let (stream, answer) = done.expect("probe task");
        match answer {
            Ok(true) => outcomes.served += 1,
            Ok(false) => outcomes.closed += 1,
            Err(_) => outcomes.unanswered += 1,
        }
        clients.push(stream);
    }
    outcomes
}

/// Writes "ping" and expects it echoed; `false` on EOF, reset or a wrong reply.
async fn ping(stream: &mut TcpStream) -> bool {
    let mut reply = [0u8; 4];
    stream.write_all(b"ping").await.is_ok()
        && stream.read_exact(&mut reply).await.is_ok()
        && &reply == b"ping"
}

/// Waits until a fresh client that sends `preamble` first gets an echo through l4lb.
async fn wait_for_round_trip(to: SocketAddr, preamble: &[u8]) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let attempt = async {
            let mut stream = TcpStream::connect(to).await.ok()?;
            stream.write_all(preamble).await.ok()?;
            ping(&mut stream).await.then_some(())
        };
        if let Ok(Some(())) = timeout(Duration::from_secs(2), attempt).await {
            return;
        }
        assert!(Instant::now() < deadline, "l4lb never served again");
        sleep(Duration::from_millis(100)).await;
    }
}

// ---------------------------------------------------------------------------
// A client that never reads
// ---------------------------------------------------------------------------

const STREAM_LEN: u64 = 100 * 1000 * 1000;
/// The stream's bytes repeat with this period, so any offset can be checked.
const PATTERN_PERIOD: usize = 251;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_reader_keeps_memory_bounded_and_gets_every_byte() {
    let streamer = Streamer::start(STREAM_LEN).await;
    let lb = Lb::spawn("slow-reader", &[], &tcp_config(streamer.addr, 0)).await;
    let before = vm_rss(lb.pid());

    let mut client = TcpStream::connect(lb.listen).await.expect("connect");
    sleep(Duration::from_secs(2)).await;
    let during = vm_rss(lb.pid());
    let sent = streamer.sent();
    eprintln!(
        "l4lb RSS before {} KiB, while the client does not read {} KiB; backend sent {sent} of {STREAM_LEN} bytes",
        before / 1024,
        during / 1024
    );
    assert!(
        during.saturating_sub(before) < RSS_GROWTH_LIMIT,
        "l4lb buffers what the client does not read: RSS {before} -> {during}"
    );
    assert!(
        sent < STREAM_LEN,
        "back-pressure reaches the backend while the client does not read"
    );

    let received = timeout(PATIENCE * 3, read_pattern(&mut client))
        .await
        .expect("the whole stream arrives in time")
        .expect("the stream matches the pattern");
    assert_eq!(received, STREAM_LEN, "every byte arrives, and no more");
    assert!(vm_rss(lb.pid()).saturating_sub(before) < RSS_GROWTH_LIMIT);
}

/// A backend that writes `len` bytes of the repeating pattern to each client as
/// fast as it can, then closes.
struct Streamer {
    addr: SocketAddr,
    sent: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Streamer {
    async fn start(len: u64) -> Streamer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let sent = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&sent);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(stream_pattern(stream, len, Arc::clone(&counter)));
            }
        });
        Streamer { addr, sent, task }
    }

    fn sent(&self) -> u64 {
        self.sent.load(Ordering::SeqCst)
    }
}

impl Drop for Streamer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn stream_pattern(mut stream: TcpStream, len: u64, sent: Arc<AtomicU64>) {
    // A whole number of periods, so every chunk starts at pattern offset 0.
    let chunk = pattern(PATTERN_PERIOD * 256);
    let mut left = len;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        if stream.write_all(&chunk[..n]).await.is_err() {
            return;
        }
        sent.fetch_add(n as u64, Ordering::SeqCst);
        left -= n as u64;
    }
    let _ = stream.shutdown().await;
}

/// Byte `i` of the stream is `i % PATTERN_PERIOD`.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % PATTERN_PERIOD) as u8).collect()
}

/// Reads to the end, checking every byte against the pattern; returns the count.
async fn read_pattern(stream: &mut TcpStream) -> Result<u64, String> {
    const BUF: usize = 64 * 1024;
    let expected = pattern(PATTERN_PERIOD + BUF);
    let mut buf = vec![0u8; BUF];
    let mut total: u64 = 0;
    loop {
        let n = stream
            .read(&mut buf)
            .await
            .map_err(|e| format!("read after {total} bytes: {e}"))?;
        if n == 0 {
            return Ok(total);
        }
        let offset = (total % PATTERN_PERIOD as u64) as usize;
        if buf[..n] != expected[offset..offset + n] {
            return Err(format!(
                "corrupted bytes within {total}..{}",
                total + n as u64
            ));
        }
        total += n as u64;
    }
}

// ---------------------------------------------------------------------------
// Scrapers that never read
// ---------------------------------------------------------------------------

/// Backends of the service whose `/metrics` the scrapers ask for (a few MB).
const SCRAPED_BACKENDS: u16 = 2500;
/// Scrapers that ask for `/metrics` and never read it: within the admin cap of 64.
const UNREAD_SCRAPERS: usize = 60;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrapers_that_never_read_keep_memory_bounded() {
    let lb = Lb::spawn("unread-scrapes", &[], &many_backends_config).await;
    let body = admin_get(lb.admin, "/metrics").await;
    let before = vm_rss(lb.pid());

    let mut scrapers = JoinSet::new();
    for _ in 0..UNREAD_SCRAPERS {
        scrapers.spawn(scrape_without_reading(lb.admin));
    }
    let mut statuses = Vec::new();
    let mut peak = before;
    let deadline = Instant::now() + PATIENCE;
    while statuses.len() < UNREAD_SCRAPERS {
        peak = peak.max(vm_rss(lb.pid()));
        assert!(
            peak.saturating_sub(before) < RSS_GROWTH_LIMIT,
            "l4lb holds what scrapers do not read: RSS {before} -> {peak} after {} answers",
            statuses.len()
        );
        assert!(
            Instant::now() < deadline,
            "scrapers unanswered: {statuses:?}"
        );
        if let Ok(Some(done)) = timeout(Duration::from_millis(100), scrapers.join_next()).await {
            statuses.push(done.expect("scraper task"));
        }
    }
    let held: Vec<TcpStream> = statuses.iter_mut().filter_map(|(_, s)| s.take()).collect();
    let codes: Vec<&str> = statuses.iter().map(|(code, _)| code.as_str()).collect();
    eprintln!(
        "{UNREAD_SCRAPERS} unread scrapes of {} bytes: RSS {} -> {} KiB (peak); answers {codes:?}",
        body.len(),
        before / 1024,
        peak / 1024
    );
    assert!(codes.contains(&"200"), "some scrapers are served");
    assert!(
        codes.iter().all(|c| *c == "200" || *c == "503"),
        "the others are told to retry: {codes:?}"
    );
    let (status, _) = try_http(lb.admin, "/healthz")
        .await
        .expect("/healthz answers while the scrapes are unread");
    assert_eq!(status, 200);

    drop(held);
    let deadline = Instant::now() + PATIENCE;
    while try_http(lb.admin, "/metrics").await.map(|(s, _)| s) != Some(200) {
        assert!(Instant::now() < deadline, "/metrics never served again");
        sleep(Duration::from_millis(100)).await;
    }
}

/// One tcp service with `SCRAPED_BACKENDS` backends (never connected to).
fn many_backends_config(admin: u16, listen: u16) -> String {
    let mut config = format!(
        "[admin]\nlisten = \"127.0.0.1:{admin}\"\n\
         [global]\nworkers = 1\n\
         [[service]]\nname = \"svc\"\nlisten = \"127.0.0.1:{listen}\"\n"
    );
    for i in 0..SCRAPED_BACKENDS {
        let port = 20_000 + i;
        config.push_str(&format!(
            "[[service.backend]]\naddress = \"127.0.0.1:{port}\"\n"
        ));
    }
    config
}

/// Asks for `/metrics` with a small receive buffer and reads only the status
/// code; returns it with the connection (kept open, never read further).
async fn scrape_without_reading(admin: SocketAddr) -> (String, Option<TcpStream>) {
    let attempt = async {
        let socket = tokio::net::TcpSocket::new_v4().ok()?;
        socket.set_recv_buffer_size(4096).ok()?;
        let mut stream = socket.connect(admin).await.ok()?;
        let request = "GET /metrics HTTP/1.1\r\nHost: l4lb\r\n\r\n";
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut status_line = [0u8; 12];
        stream.read_exact(&mut status_line).await.ok()?;
        let code = String::from_utf8_lossy(&status_line[9..]).into_owned();
        Some((code, Some(stream)))
    };
    timeout(PATIENCE, attempt)
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| ("no answer".to_string(), None))
}

// ---------------------------------------------------------------------------
// UDP flood from 10,000 source ports
// ---------------------------------------------------------------------------

const MAX_FLOWS: u32 = 1000;
const FLOOD_SOURCES: usize = 10_000;
const FLOOD_BATCH: usize = 1000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_flood_is_capped_at_max_flows_and_the_old_flow_keeps_working() {
    let echo = UdpEcho::start().await;
    let config = move |admin: u16, listen: u16| {
        format!(
            "[admin]\nlisten = \"127.0.0.1:{admin}\"\n\
             [[service]]\nname = \"dns\"\nprotocol = \"udp\"\nlisten = \"127.0.0.1:{listen}\"\n\
             max_flows = {MAX_FLOWS}\n\
             [[service.backend]]\naddress = \"{}\"\n",
            echo.addr
        )
    };
    let lb = Lb::spawn("udp-flood", &[], &config).await;
    let old = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    assert_eq!(udp_exchange(&old, lb.listen, b"old 1").await, b"old 1");
    let before = vm_rss(lb.pid());

    for batch in 0..FLOOD_SOURCES / FLOOD_BATCH {
        flood_batch(lb.listen, batch).await;
    }

    let metrics = admin_get(lb.admin, "/metrics").await;
    let flows = metric(&metrics, "l4lb_udp_flows{service=\"dns\"}");
    let dropped = metric(
        &metrics,
        "l4lb_udp_dropped_datagrams_total{reason=\"max_flows\",service=\"dns\"}",
    );
    let after = vm_rss(lb.pid());
    eprintln!(
        "after {FLOOD_SOURCES} sources: {flows} flows, {dropped} dropped (max_flows), RSS {} -> {} KiB",
        before / 1024,
        after / 1024
    );
    assert!(flows <= f64::from(MAX_FLOWS), "the flow table is bounded");
    assert!(
        dropped > 0.0,
        "datagrams over max_flows are dropped and counted"
    );
    assert!(
        after.saturating_sub(before) < RSS_GROWTH_LIMIT,
        "RSS grew from {before} to {after}"
    );
    assert_eq!(udp_exchange(&old, lb.listen, b"old 2").await, b"old 2");
}

/// `FLOOD_BATCH` new sockets each send one datagram; all are closed on return.
async fn flood_batch(to: SocketAddr, batch: usize) {
    let mut sockets = Vec::with_capacity(FLOOD_BATCH);
    for i in 0..FLOOD_BATCH {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let payload = format!("flood {batch}/{i}");
        // A full buffer may drop a datagram: a flood is allowed to lose some.
        let _ = socket.send_to(payload.as_bytes(), to).await;
        sockets.push(socket);
        if i % 100 == 99 {
            // Let l4lb drain its receive buffer, so most datagrams are seen.
            sleep(Duration::from_millis(2)).await;
        }
    }
    sleep(Duration::from_millis(20)).await;
}

/// Sends `payload` and returns the first reply (bounded by `PATIENCE`).
async fn udp_exchange(socket: &UdpSocket, to: SocketAddr, payload: &[u8]) -> Vec<u8> {
    socket.send_to(payload, to).await.expect("send");
    let mut buf = vec![0u8; 2048];
    let (len, _) = timeout(PATIENCE, socket.recv_from(&mut buf))
        .await
        .expect("a reply in time")
        .expect("recv");
    buf.truncate(len);
    buf
}

/// A UDP backend on 127.0.0.1 that echoes every datagram.
struct UdpEcho {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl UdpEcho {
    async fn start() -> UdpEcho {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let addr = socket.local_addr().expect("address");
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 65_536];
            loop {
                if let Ok((len, from)) = socket.recv_from(&mut buf).await {
                    let _ = socket.send_to(&buf[..len], from).await;
                }
            }
        });
        UdpEcho { addr, task }
    }
}

impl Drop for UdpEcho {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ---------------------------------------------------------------------------
// The real binary, and what /proc says about it
// ---------------------------------------------------------------------------

/// An l4lb process started from a config file, killed when dropped.
struct Lb {
    child: Child,
    dir: PathBuf,
    admin: SocketAddr,
    /// The service's listen address.
    listen: SocketAddr,
}

impl Lb {
    /// Writes `config(admin_port, listen_port)` and runs `prefix... l4lb run FILE`
    /// until `/healthz` answers 200.
    async fn spawn(name: &str, prefix: &[&str], config: &dyn Fn(u16, u16) -> String) -> Lb {
        let dir = std::env::temp_dir().join(format!("l4lb-faults-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let (admin, listen) = (free_port(), free_port());
        let path = dir.join("lb.toml");
        std::fs::write(&path, config(admin, listen)).expect("write config");
        let log = std::fs::File::create(dir.join("l4lb.log")).expect("log file");
        let (program, args) = match prefix {
            [] => (BIN, Vec::new()),
            [program, rest @ ..] => (*program, [rest, &[BIN]].concat()),
        };
        let child = Command::new(program)
            .args(args)
            .args(["--log-level", "warn", "run"])
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn l4lb");
        let lb = Lb {
            child,
            dir,
            admin: ([127, 0, 0, 1], admin).into(),
            listen: ([127, 0, 0, 1], listen).into(),
        };
        lb.wait_ready().await;
        lb
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + PATIENCE;
        while try_http(self.admin, "/healthz").await.map(|(s, _)| s) != Some(200) {
            assert!(
                Instant::now() < deadline,
                "l4lb never became ready; log:\n{}",
                self.log()
            );
            sleep(Duration::from_millis(20)).await;
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("l4lb.log")).unwrap_or_default()
    }
}

impl Drop for Lb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("l4lb log:\n{}", self.log());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn command_exists(name: &str) -> bool {
    Command::new(name)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// One GET over a fresh connection, bounded in time; `None` when it fails.
async fn try_http(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.ok()?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: l4lb\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.ok()?;
        let text = String::from_utf8_lossy(&raw).into_owned();
        let (head, body) = text.split_once("\r\n\r\n")?;
        let status = head.split_whitespace().nth(1)?.parse().ok()?;
        Some((status, body.to_string()))
    };
    timeout(Duration::from_secs(3), exchange)
        .await
        .ok()
        .flatten()
}

/// GETs `path`, retrying while l4lb cannot even accept (it may be out of fds).
async fn admin_get_retrying(addr: SocketAddr, path: &str) -> (u16, String) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(answer) = try_http(addr, path).await {
            return answer;
        }
        assert!(Instant::now() < deadline, "GET {path} never answered");
        sleep(Duration::from_millis(100)).await;
    }
}

/// GETs `path` and expects 200.
async fn admin_get(addr: SocketAddr, path: &str) -> String {
    let (status, body) = admin_get_retrying(addr, path).await;
    assert_eq!(status, 200, "GET {path}: {body}");
    body
}

/// The value of one series, named with its labels exactly as exposed.
fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no series {series} in:\n{text}"))
}

/// Resident memory of `pid` in bytes (VmRSS in /proc/PID/status).
fn vm_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS line");
    kib * 1024
}

/// User plus system CPU time of `pid` in seconds (/proc/PID/stat fields 14 and 15).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("proc stat");
    // The command name may contain spaces: fields are counted after its ')'.
    let (_, rest) = stat.rsplit_once(')').expect("stat format");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    // SAFETY: sysconf only reads a system constant.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    ticks as f64 / per_second as f64
}

/// CPU seconds `pid` used while this test slept for `window`.
async fn cpu_seconds_over(pid: u32, window: Duration) -> f64 {
    let start = cpu_seconds(pid);
    sleep(window).await;
    cpu_seconds(pid) - start
}
