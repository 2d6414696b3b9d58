//! A small load generator and echo backend for benchmarking l4lb on loopback.
//!
//! ```text
//! loadgen echo-server  --listen 127.0.0.1:7000 --udp|--tcp
//! loadgen udp-pingpong --target 127.0.0.1:7000 --clients 32 --duration 5 --size 64
//! loadgen tcp-pingpong --target 127.0.0.1:7000 --connections 32 --duration 5 --size 64
//! loadgen tcp-pingpong --target 127.0.0.1:7000 --connections 16 --rate 20000
//! loadgen tcp-connect  --target 127.0.0.1:7000 --concurrency 32 --duration 5
//! ```
//!
//! Every benchmark but `tcp-pingpong --rate` (open-loop, see `open_loop`) is closed-loop: each worker (one UDP socket, one TCP
//! connection, or one connect loop) has at most one operation in flight, so the
//! throughput is what the target sustains at that concurrency. Only operations
//! that complete before the deadline are counted; whatever is in flight when the
//! time is up is abandoned and counted nowhere, and rates are divided by the
//! configured duration. Latencies go into a log-linear histogram (about 1.6%
//! relative resolution, fixed memory) per worker, merged at the end.
//!
//! Counted separately, never hidden:
//! - `errors`: I/O errors (send, receive, connect, reset, ICMP unreachable),
//!   replies of the wrong length or content, and TCP operations stalled for more
//!   than 5 s. A worker backs off 10 ms after an error (then reconnects, for TCP).
//! - `lost` (udp-pingpong): no matching reply within 1 s.
//! - `late` (udp-pingpong): replies that arrived after their request was already
//!   counted as lost; they are skipped by sequence number, not matched.
//!
//! One JSON object per run goes to stdout, a human-readable line to stderr.
//! Targets must be loopback addresses: this tool is for local measurements only.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

mod open_loop;

use clap::{ArgGroup, Args, Parser, Subcommand};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::time::{Instant, sleep, timeout_at};

/// How long a UDP request waits for its reply before it is counted as lost.
const UDP_REPLY_TIMEOUT: Duration = Duration::from_secs(1);
/// How long one TCP operation may stall before it is counted as an error.
const TCP_OP_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause after an error, so a refused target does not turn into a busy loop.
const ERROR_BACKOFF: Duration = Duration::from_millis(10);

#[derive(Parser)]
#[command(about = "Load generator and echo backend for l4lb benchmarks (loopback only)")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// N UDP sockets (one flow each), each sends a datagram and waits for the echo.
    UdpPingpong(UdpArgs),
    /// N persistent TCP connections, each writes SIZE bytes and reads them back.
    TcpPingpong(TcpArgs),
    /// N workers, each connects, writes 1 byte, reads 1 byte, closes, repeats.
    TcpConnect(ConnectArgs),
    /// An echo backend (UDP or TCP) that runs until killed.
    EchoServer(EchoArgs),
}

#[derive(Args)]
struct UdpArgs {
    #[arg(long)]
    target: SocketAddr,
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    clients: u32,
    /// Seconds to run.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Datagram size in bytes (the first 8 carry a sequence number).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(8..=65_507))]
    size: u32,
}

#[derive(Args)]
struct TcpArgs {
    #[arg(long)]
    target: SocketAddr,
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    connections: u32,
    /// Seconds to run.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Request (and reply) size in bytes.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=16_777_216))]
    size: u32,
    /// Open loop: send this many requests per second in total, on a fixed
    /// schedule, and measure each latency from its intended send time.
    #[arg(long)]
    rate: Option<f64>,
}

#[derive(Args)]
struct ConnectArgs {
    #[arg(long)]
    target: SocketAddr,
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    concurrency: u32,
    /// Seconds to run.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Send a TLS ClientHello naming this server (and read it back) instead of one byte.
    #[arg(long)]
    sni: Option<String>,
}

#[derive(Args)]
#[command(group(ArgGroup::new("proto").required(true).args(["udp", "tcp"])))]
struct EchoArgs {
    #[arg(long)]
    listen: SocketAddr,
    /// Echo UDP datagrams back to their sender.
    #[arg(long)]
    udp: bool,
    /// Echo the bytes of each TCP connection back on it.
    #[arg(long)]
    tcp: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build();
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => return fail(&format!("cannot start the runtime: {e}")),
    };
    match runtime.block_on(run(cli.cmd)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => fail(&msg),
    }
}

fn fail(msg: &str) -> ExitCode {
    eprintln!("loadgen: {msg}");
    ExitCode::FAILURE
}

async fn run(cmd: Cmd) -> Result<(), String> {
    let report = match cmd {
        Cmd::EchoServer(a) => return echo_server(a).await.map_err(|e| e.to_string()),
        Cmd::UdpPingpong(a) => udp_pingpong(a).await?,
        Cmd::TcpPingpong(a) => tcp_pingpong(a).await?,
        Cmd::TcpConnect(a) => tcp_connect(a).await?,
    };
    report.print();
    Ok(())
}

// ---------------------------------------------------------------------------
// Histogram and per-worker statistics
// ---------------------------------------------------------------------------

/// Sub-buckets per power of two are `2^(SUB_BITS - 1)`: 64, so a recorded value
/// is off by at most 1/64 of itself. Values are nanoseconds.
const SUB_BITS: u32 = 7;
const SUB: u64 = 1 << SUB_BITS;
const HALF: u64 = SUB / 2;
const BUCKETS: usize = ((64 - SUB_BITS as u64) * HALF + SUB) as usize;

/// A log-linear histogram of durations in nanoseconds, in fixed memory.
struct Histogram {
    counts: Vec<u64>,
    total: u64,
    sum_ns: u128,
    max_ns: u64,
}

impl Histogram {
    fn new() -> Self {
        Self {
            counts: vec![0; BUCKETS],
            total: 0,
            sum_ns: 0,
            max_ns: 0,
        }
    }

    fn index(v: u64) -> usize {
        if v < SUB {
            return v as usize;
        }
        let shift = (63 - v.leading_zeros()) - (SUB_BITS - 1);
        (u64::from(shift) * HALF + (v >> shift)) as usize
    }

    /// The midpoint of bucket `i`, in nanoseconds.
    fn value_at(i: usize) -> f64 {
        let i = i as u64;
        if i < SUB {
            return i as f64;
        }
        let shift = i / HALF - 1;
        let lower = (i - shift * HALF) << shift;
        lower as f64 + ((1u64 << shift) as f64 - 1.0) / 2.0
    }

    fn record(&mut self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.counts[Self::index(ns)] += 1;
        self.total += 1;
        self.sum_ns += u128::from(ns);
        self.max_ns = self.max_ns.max(ns);
    }

    fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
        self.sum_ns += other.sum_ns;
        self.max_ns = self.max_ns.max(other.max_ns);
    }

    /// The `q` quantile (0..=1) in microseconds; 0 when nothing was recorded.
    fn quantile_us(&self, q: f64) -> f64 {
        if self.total == 0 {
            return 0.0;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return (Self::value_at(i) / 1000.0).min(self.max_ns as f64 / 1000.0);
            }
        }
        self.max_ns as f64 / 1000.0
    }

    fn mean_us(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.sum_ns as f64 / self.total as f64 / 1000.0
        }
    }
}

/// What one worker measured.
struct Stats {
    hist: Histogram,
    errors: u64,
    lost: u64,
    late: u64,
}

impl Stats {
    fn new() -> Self {
        Self {
            hist: Histogram::new(),
            errors: 0,
            lost: 0,
            late: 0,
        }
    }

    fn merge(&mut self, other: &Stats) {
        self.hist.merge(&other.hist);
        self.errors += other.errors;
        self.lost += other.lost;
        self.late += other.late;
    }

    /// Counts an error and waits a little (never past the deadline).
    async fn error(&mut self, deadline: Instant) {
        self.errors += 1;
        sleep_until_min(ERROR_BACKOFF, deadline).await;
    }
}

async fn sleep_until_min(d: Duration, deadline: Instant) {
    tokio::time::sleep_until((Instant::now() + d).min(deadline)).await;
}

/// Waits for every worker and merges what they measured.
async fn collect(handles: Vec<tokio::task::JoinHandle<Stats>>) -> Result<Stats, String> {
    let mut all = Stats::new();
    for h in handles {
        let s = h.await.map_err(|e| format!("worker failed: {e}"))?;
        all.merge(&s);
    }
    Ok(all)
}

// ---------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------

struct Report {
    mode: &'static str,
    target: SocketAddr,
    workers: u32,
    duration: f64,
    size: u32,
    stats: Stats,
    /// Open loop: the offered rate, and how many requests were sent late.
    offered: Option<(f64, u64)>,
}

impl Report {
    fn print(&self) {
        let h = &self.stats.hist;
        let ops_per_sec = h.total as f64 / self.duration;
        let (p50, p99, p999) = (
            h.quantile_us(0.5),
            h.quantile_us(0.99),
            h.quantile_us(0.999),
        );
        let mut line = json!({
            "mode": self.mode,
            "target": self.target.to_string(),
            "workers": self.workers,
            "duration_s": self.duration,
            "size": self.size,
            "ops": h.total,
            "ops_per_sec": round1(ops_per_sec),
            "errors": self.stats.errors,
            "lost": self.stats.lost,
            "late": self.stats.late,
            "p50_us": round1(p50),
            "p99_us": round1(p99),
            "p999_us": round1(p999),
            "mean_us": round1(h.mean_us()),
            "max_us": round1(h.max_ns as f64 / 1000.0),
        });
        if let Some((rate, behind)) = self.offered {
            line["offered_per_sec"] = json!(rate);
            line["behind"] = json!(behind);
        }
        println!("{line}");
        eprintln!(
            "{} {} x{} {}s: {:.0} ops/s, p50 {:.1}us p99 {:.1}us p99.9 {:.1}us max {:.1}us, \
             errors {}, lost {}, late {}",
            self.mode,
            self.target,
            self.workers,
            self.duration,
            ops_per_sec,
            p50,
            p99,
            p999,
            h.max_ns as f64 / 1000.0,
            self.stats.errors,
            self.stats.lost,
            self.stats.late
        );
    }
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

/// Checks the common benchmark arguments; returns the run's length.
fn check_args(target: SocketAddr, duration: f64) -> Result<Duration, String> {
    if !target.ip().is_loopback() {
        return Err(format!("{target}: only loopback targets are allowed"));
    }
    if !(duration.is_finite() && duration > 0.0 && duration <= 3600.0) {
        return Err(format!(
            "--duration must be in (0, 3600] seconds, got {duration}"
        ));
    }
    Ok(Duration::from_secs_f64(duration))
}

// ---------------------------------------------------------------------------
// Bounded operations
// ---------------------------------------------------------------------------

enum Outcome<T> {
    Done(T),
    /// The operation's own timeout fired before the run's deadline.
    TimedOut,
    /// The run is over; the operation in flight is not counted.
    Deadline,
}

/// Runs `op` until it finishes, its own `limit` passes, or the run's deadline.
async fn bounded<F: Future>(op: F, limit: Duration, deadline: Instant) -> Outcome<F::Output> {
    let own = Instant::now() + limit;
    match timeout_at(own.min(deadline), op).await {
        Ok(v) => Outcome::Done(v),
        Err(_) if own < deadline => Outcome::TimedOut,
        Err(_) => Outcome::Deadline,
    }
}

// ---------------------------------------------------------------------------
// udp-pingpong
// ---------------------------------------------------------------------------

async fn udp_pingpong(a: UdpArgs) -> Result<Report, String> {
    let run_for = check_args(a.target, a.duration)?;
    let mut sockets = Vec::with_capacity(a.clients as usize);
    for _ in 0..a.clients {
        let sock = UdpSocket::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("bind: {e}"))?;
        sock.connect(a.target)
            .await
            .map_err(|e| format!("connect {}: {e}", a.target))?;
        sockets.push(sock);
    }
    let deadline = Instant::now() + run_for;
    let handles = sockets
        .into_iter()
        .map(|s| tokio::spawn(udp_worker(s, a.size as usize, deadline)))
        .collect();
    let stats = collect(handles).await?;
    Ok(Report {
        mode: "udp-pingpong",
        target: a.target,
        workers: a.clients,
        duration: a.duration,
        size: a.size,
        stats,
        offered: None,
    })
}

async fn udp_worker(sock: UdpSocket, size: usize, deadline: Instant) -> Stats {
    let mut stats = Stats::new();
    let mut out = vec![0u8; size];
    let mut buf = vec![0u8; 65_536];
    let mut seq: u64 = 0;
    while Instant::now() < deadline {
        seq += 1;
        out[..8].copy_from_slice(&seq.to_le_bytes());
        let start = Instant::now();
        let trip = udp_round_trip(&sock, &out, &mut buf, &mut stats.late);
        match bounded(trip, UDP_REPLY_TIMEOUT, deadline).await {
            Outcome::Done(Ok(true)) => stats.hist.record(start.elapsed()),
            Outcome::Done(Ok(false)) | Outcome::Done(Err(_)) => stats.error(deadline).await,
            Outcome::TimedOut => stats.lost += 1,
            Outcome::Deadline => break,
        }
    }
    stats
}

/// Sends `out` and waits for the reply with the same sequence number, skipping
/// (and counting in `late`) replies to earlier requests. `Ok(false)`: the reply
/// had the wrong length or content.
async fn udp_round_trip(
    sock: &UdpSocket,
    out: &[u8],
    buf: &mut [u8],
    late: &mut u64,
) -> io::Result<bool> {
    sock.send(out).await?;
    loop {
        let n = sock.recv(buf).await?;
        if n >= 8 && buf[..8] == out[..8] {
            return Ok(buf[..n] == *out);
        }
        *late += 1;
    }
}

// ---------------------------------------------------------------------------
// tcp-pingpong
// ---------------------------------------------------------------------------

async fn tcp_pingpong(a: TcpArgs) -> Result<Report, String> {
    let run_for = check_args(a.target, a.duration)?;
    if let Some(rate) = a.rate {
        let (target, connections, size) = (a.target, a.connections, a.size as usize);
        let run = move || open_loop::run(target, connections, rate, size, run_for);
        let measured = tokio::task::spawn_blocking(run)
            .await
            .map_err(|e| format!("open loop failed: {e}"))??;
        let mut stats = Stats::new();
        stats.hist = measured.hist;
        stats.errors = measured.errors;
        return Ok(Report {
            mode: "tcp-pingpong-open",
            target: a.target,
            workers: a.connections,
            duration: a.duration,
            size: a.size,
            stats,
            offered: Some((rate, measured.behind)),
        });
    }
    let mut conns = Vec::with_capacity(a.connections as usize);
    for _ in 0..a.connections {
        conns.push(
            tcp_open(a.target)
                .await
                .map_err(|e| format!("connect {}: {e}", a.target))?,
        );
    }
    let deadline = Instant::now() + run_for;
    let handles = conns
        .into_iter()
        .map(|c| tokio::spawn(tcp_worker(c, a.target, a.size as usize, deadline)))
        .collect();
    let stats = collect(handles).await?;
    Ok(Report {
        mode: "tcp-pingpong",
        target: a.target,
        workers: a.connections,
        duration: a.duration,
        size: a.size,
        stats,
        offered: None,
    })
}

async fn tcp_open(target: SocketAddr) -> io::Result<TcpStream> {
    let s = TcpStream::connect(target).await?;
    s.set_nodelay(true)?;
    Ok(s)
}

async fn tcp_worker(conn: TcpStream, target: SocketAddr, size: usize, deadline: Instant) -> Stats {
    let mut stats = Stats::new();
    let mut conn = Some(conn);
    let mut out = vec![0u8; size];
    let mut buf = vec![0u8; size];
    let mut seq: u8 = 0;
    while Instant::now() < deadline {
        let Some(stream) = conn.as_mut() else {
            match bounded(tcp_open(target), TCP_OP_TIMEOUT, deadline).await {
                Outcome::Done(Ok(s)) => conn = Some(s),
                Outcome::Done(Err(_)) | Outcome::TimedOut => stats.error(deadline).await,
                Outcome::Deadline => break,
            }
            continue;
        };
        seq = seq.wrapping_add(1);
        out.fill(seq);
        let start = Instant::now();
        match bounded(
            tcp_exchange(stream, &out, &mut buf),
            TCP_OP_TIMEOUT,
            deadline,
        )
        .await
        {
            Outcome::Done(Ok(true)) => stats.hist.record(start.elapsed()),
            Outcome::Done(Ok(false)) => stats.error(deadline).await,
            Outcome::Done(Err(_)) | Outcome::TimedOut => {
                conn = None;
                stats.error(deadline).await;
            }
            Outcome::Deadline => break,
        }
    }
    stats
}

/// Writes `out` and reads as many bytes back; `Ok(false)`: they differ.
async fn tcp_exchange(s: &mut TcpStream, out: &[u8], buf: &mut [u8]) -> io::Result<bool> {
    s.write_all(out).await?;
    s.read_exact(buf).await?;
    Ok(buf == out)
}

// ---------------------------------------------------------------------------
// tcp-connect
// ---------------------------------------------------------------------------

async fn tcp_connect(a: ConnectArgs) -> Result<Report, String> {
    let run_for = check_args(a.target, a.duration)?;
    let deadline = Instant::now() + run_for;
    let first: Arc<[u8]> = match &a.sni {
        Some(name) => client_hello(name).into(),
        None => b"x".to_vec().into(),
    };
    let handles = (0..a.concurrency)
        .map(|_| tokio::spawn(connect_worker(a.target, Arc::clone(&first), deadline)))
        .collect();
    let stats = collect(handles).await?;
    Ok(Report {
        mode: "tcp-connect",
        target: a.target,
        workers: a.concurrency,
        duration: a.duration,
        size: first.len() as u32,
        stats,
        offered: None,
    })
}

/// A minimal TLS 1.3 ClientHello naming `server_name`, in one record.
fn client_hello(server_name: &str) -> Vec<u8> {
    let name = server_name.as_bytes();
    let mut ext = vec![0, 0];
    ext.extend(((name.len() + 5) as u16).to_be_bytes());
    ext.extend(((name.len() + 3) as u16).to_be_bytes());
    ext.push(0);
    ext.extend((name.len() as u16).to_be_bytes());
    ext.extend(name);
    ext.extend([0, 43, 0, 3, 2, 3, 4]);
    let mut body = vec![3, 3];
    body.extend([7u8; 32]);
    body.extend([0, 0, 2, 0x13, 0x01, 1, 0]);
    body.extend((ext.len() as u16).to_be_bytes());
    body.extend(ext);
    let mut message = vec![1];
    message.extend(&(body.len() as u32).to_be_bytes()[1..]);
    message.extend(body);
    let mut record = vec![22, 3, 1];
    record.extend((message.len() as u16).to_be_bytes());
    record.extend(message);
    record
}

async fn connect_worker(target: SocketAddr, first: Arc<[u8]>, deadline: Instant) -> Stats {
    let mut stats = Stats::new();
    while Instant::now() < deadline {
        let start = Instant::now();
        match bounded(connect_once(target, &first), TCP_OP_TIMEOUT, deadline).await {
            Outcome::Done(Ok(true)) => stats.hist.record(start.elapsed()),
            Outcome::Done(Ok(false)) | Outcome::Done(Err(_)) | Outcome::TimedOut => {
                stats.error(deadline).await
            }
            Outcome::Deadline => break,
        }
    }
    stats
}

/// Connects, writes `first`, reads it back, closes. `Ok(false)`: wrong bytes.
async fn connect_once(target: SocketAddr, first: &[u8]) -> io::Result<bool> {
    let mut s = tcp_open(target).await?;
    s.write_all(first).await?;
    let mut b = vec![0u8; first.len()];
    s.read_exact(&mut b).await?;
    Ok(b == first)
}

// ---------------------------------------------------------------------------
// echo-server
// ---------------------------------------------------------------------------

async fn echo_server(a: EchoArgs) -> io::Result<()> {
    if a.udp {
        udp_echo(a.listen).await
    } else {
        tcp_echo(a.listen).await
    }
}

async fn udp_echo(listen: SocketAddr) -> io::Result<()> {
    let sock = UdpSocket::bind(listen).await?;
    eprintln!("echo-server: udp {}", sock.local_addr()?);
    let mut buf = vec![0u8; 65_536];
    let mut errors: u64 = 0;
    loop {
        let sent = match sock.recv_from(&mut buf).await {
            Ok((n, peer)) => sock.send_to(&buf[..n], peer).await.map(|_| ()),
            Err(e) => Err(e),
        };
        if sent.is_err() {
            // ICMP errors from departed clients surface here; keep serving.
            errors += 1;
            if errors.is_power_of_two() {
                eprintln!("echo-server: {errors} udp errors so far");
            }
        }
    }
}

async fn tcp_echo(listen: SocketAddr) -> io::Result<()> {
    let listener = TcpListener::bind(listen).await?;
    eprintln!("echo-server: tcp {}", listener.local_addr()?);
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(echo_conn(stream));
            }
            Err(e) => {
                // E.g. EMFILE: wait instead of spinning.
                eprintln!("echo-server: accept: {e}");
                sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn echo_conn(mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let (mut rd, mut wr) = stream.split();
    if tokio::io::copy(&mut rd, &mut wr).await.is_ok() {
        let _ = wr.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_tight() {
        let mut last = 0;
        for v in (0..1_000_000u64).chain([u64::MAX / 3, u64::MAX]) {
            let i = Histogram::index(v);
            assert!(i < BUCKETS && i >= last, "value {v} -> bucket {i}");
            last = i;
            let mid = Histogram::value_at(i);
            assert!(
                (mid - v as f64).abs() <= v as f64 / 64.0 + 0.5,
                "{v} vs {mid}"
            );
        }
    }

    #[test]
    fn quantiles() {
        let mut h = Histogram::new();
        for us in 1..=1000u64 {
            h.record(Duration::from_micros(us));
        }
        let near = |got: f64, want: f64| (got - want).abs() <= want / 50.0;
        assert!(near(h.quantile_us(0.5), 500.0), "{}", h.quantile_us(0.5));
        assert!(near(h.quantile_us(0.99), 990.0), "{}", h.quantile_us(0.99));
        assert!(near(h.mean_us(), 500.5));
        let max = h.quantile_us(1.0);
        assert!(max <= 1000.0 && near(max, 1000.0), "{max}");
    }
}
