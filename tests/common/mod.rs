//! Test helpers: real TCP backends on 127.0.0.1 and an in-process l4lb.
//!
//! Backends tag what they send with their own name, so a client can tell which one
//! served it. Nothing here is a mock: every byte crosses real loopback sockets.
#![allow(dead_code)]

pub mod binary;
pub mod chromium;
pub mod devtools;
pub mod dns_relay;
pub mod dnsmasq;
pub mod mariadb;
pub mod ports;
pub mod postgres;
pub mod redis;
pub mod servers;
pub mod tls;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinHandle;

use l4lb::runtime::{DrainReport, ProbeTasks, ReloadError, ReloadReport, Server, ServerHandle};

/// Distinct file names for reload configs written by tests.
static RELOAD_FILES: AtomicUsize = AtomicUsize::new(0);
use l4lb::service::Service;

/// Generous bound for anything a test waits on, so a broken build fails instead of hanging.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// What a test backend does with each connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Echo every byte back.
    Echo,
    /// Send "NAME\n" first, then echo.
    Tagged,
    /// Read until the client's FIN, then answer "NAME got N bytes" and close.
    ReplyAfterEof,
    /// Read once, then reset the connection (SO_LINGER 0).
    ResetAfterFirstRead,
    /// Send "NAME\n", then report the end of the client's stream on `ended`.
    ReportEnd,
}

/// A real TCP server on 127.0.0.1 that counts the connections it accepted.
pub struct TestBackend {
    pub name: String,
    pub addr: SocketAddr,
    pub accepted: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl TestBackend {
    pub async fn start(name: &str, behaviour: Behaviour) -> TestBackend {
        TestBackend::start_at(name, behaviour, "127.0.0.1:0".parse().expect("literal")).await
    }

    /// Starts a backend on `addr` (e.g. to bring a stopped one back on its old port).
    pub async fn start_at(name: &str, behaviour: Behaviour, addr: SocketAddr) -> TestBackend {
        let listener = TcpListener::bind(addr).await.expect("bind backend");
        let addr = listener.local_addr().expect("backend address");
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&accepted);
        let tag = name.to_string();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve_backend_client(stream, tag.clone(), behaviour));
            }
        });
        TestBackend {
            name: name.to_string(),
            addr,
            accepted,
            task,
        }
    }

    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Stops accepting; the port then refuses connections.
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for TestBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve_backend_client(mut stream: TcpStream, tag: String, behaviour: Behaviour) {
    match behaviour {
        Behaviour::Echo => echo(stream).await,
        Behaviour::Tagged => {
            if stream
                .write_all(format!("{tag}\n").as_bytes())
                .await
                .is_ok()
            {
                echo(stream).await;
            }
        }
        Behaviour::ResetAfterFirstRead => {
            let mut buf = [0u8; 1024];
            let _ = stream.read(&mut buf).await;
            let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
            drop(stream);
        }
        Behaviour::ReportEnd => {
            let _ = stream.write_all(format!("{tag}\n").as_bytes()).await;
            let mut sink = Vec::new();
            let _ = stream.read_to_end(&mut sink).await;
        }
        Behaviour::ReplyAfterEof => {
            let mut received = Vec::new();
            if stream.read_to_end(&mut received).await.is_ok() {
                let reply = format!("{tag} got {} bytes", received.len());
                let _ = stream.write_all(reply.as_bytes()).await;
                let _ = stream.shutdown().await;
            }
        }
    }
}

async fn echo(mut stream: TcpStream) {
    let (mut reader, mut writer) = stream.split();
    let _ = tokio::io::copy(&mut reader, &mut writer).await;
    let _ = writer.shutdown().await;
}

/// `N` distinct loopback addresses that refuse connections (bound together, then
/// released). They are on 127.84.1.1, which nothing else in the tests binds, so no
/// test running in parallel can be given one of these ports and listen there.
pub async fn refusing_addrs<const N: usize>() -> [SocketAddr; N] {
    let mut listeners = Vec::new();
    for _ in 0..N {
        listeners.push(TcpListener::bind("127.84.1.1:0").await.expect("bind"));
    }
    std::array::from_fn(|i| listeners[i].local_addr().expect("address"))
}

/// A listener whose accept queue is full and never drained: connects to it hang
/// until the connecting side gives up. Keep the returned value alive while in use.
pub struct Blackhole {
    pub addr: SocketAddr,
    _listener: socket2::Socket,
    _queued: Vec<std::net::TcpStream>,
}

impl Blackhole {
    pub fn start() -> Blackhole {
        use socket2::{Domain, Socket, Type};
        let listener = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
        let any: SocketAddr = "127.0.0.1:0".parse().expect("literal");
        listener.bind(&any.into()).expect("bind");
        listener.listen(0).expect("listen");
        let addr = listener
            .local_addr()
            .expect("address")
            .as_socket()
            .expect("inet address");
        // Fill the accept queue; further handshakes are never completed.
        let mut queued = Vec::new();
        for _ in 0..4 {
            let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
            socket.set_nonblocking(true).expect("nonblocking");
            let _ = socket.connect(&addr.into());
            queued.push(socket.into());
        }
        std::thread::sleep(Duration::from_millis(50));
        Blackhole {
            addr,
            _listener: listener,
            _queued: queued,
        }
    }
}

/// An l4lb server running in this process.
pub struct TestProxy {
    pub handle: ServerHandle,
    /// Where the admin endpoint listens, when the config has `[admin]`.
    pub admin: Option<SocketAddr>,
    pub probes: ProbeTasks,
    pub services: Vec<Arc<Service>>,
    listen: Vec<(String, SocketAddr)>,
    task: JoinHandle<DrainReport>,
}

impl TestProxy {
    /// Parses `toml` (which should listen on 127.0.0.1:0), binds and serves it.
    pub async fn start(toml: &str) -> TestProxy {
        let config = match l4lb::config::parse(toml, Path::new("test.toml")) {
            Ok(config) => config,
            Err(errors) => panic!("test config is invalid:\n{errors}"),
        };
        let server = Server::bind(&config).expect("bind test proxy");
        let listen = config
            .services
            .iter()
            .flat_map(|s| {
                let name = s.name.clone();
                server
                    .local_addrs(&s.name)
                    .into_iter()
                    .map(move |a| (name.clone(), a))
            })
            .collect();
        let services = server.services();
        let handle = server.handle();
        let probes = server.probe_tasks();
        let admin = server.admin_addr();
        let task = tokio::spawn(server.serve());
        TestProxy {
            handle,
            admin,
            probes,
            services,
            listen,
            task,
        }
    }

    /// The first bound address of `service`.
    pub fn addr(&self, service: &str) -> SocketAddr {
        self.listen
            .iter()
            .find(|(name, _)| name == service)
            .map(|(_, addr)| *addr)
            .expect("service has a listener")
    }

    pub fn addrs(&self, service: &str) -> Vec<SocketAddr> {
        self.listen
            .iter()
            .filter(|(name, _)| name == service)
            .map(|(_, addr)| *addr)
            .collect()
    }

    /// The service as first configured (its generation at start).
    pub fn service(&self, name: &str) -> &Arc<Service> {
        self.services
            .iter()
            .find(|s| s.name() == name)
            .expect("service exists")
    }

    /// The current generation of a service (after reloads).
    pub fn current(&self, name: &str) -> Arc<Service> {
        self.handle.service(name).expect("service exists now")
    }

    /// Writes `toml` to a file and reloads from it, as SIGHUP does.
    pub async fn reload(&self, toml: &str) -> Result<ReloadReport, ReloadError> {
        let path = std::env::temp_dir().join(format!(
            "l4lb-test-{}-{}.toml",
            std::process::id(),
            RELOAD_FILES.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::write(&path, toml).expect("write reload config");
        let result = self.handle.reload_file(&path).await;
        let _ = std::fs::remove_file(&path);
        result
    }

    /// Waits until every active count of every service is back to zero.
    pub async fn assert_drained(&self) {
        let drained = || {
            self.services.iter().all(|s| {
                s.active_connections() == 0 && s.backends().iter().all(|b| b.active() == 0)
            })
        };
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while !drained() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "active counts did not return to zero"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops the server gracefully and returns its drain report.
    pub async fn stop(self) -> DrainReport {
        self.handle.shutdown();
        tokio::time::timeout(PATIENCE, self.task)
            .await
            .expect("server stops")
            .expect("server task")
    }
}

/// A `[[service.backend]]` block per address.
pub fn backend_blocks(addrs: &[SocketAddr], weights: &[u32]) -> String {
    addrs
        .iter()
        .enumerate()
        .map(|(i, addr)| {
            let weight = weights.get(i).copied().unwrap_or(1);
            format!("[[service.backend]]\naddress = \"{addr}\"\nweight = {weight}\n")
        })
        .collect()
}

/// Connects from a chosen local address on 127/8 (port chosen by the kernel).
pub async fn connect_from(source: [u8; 4], to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::from((source, 0)))
        .expect("bind source address");
    socket.connect(to).await.expect("connect")
}

/// Reads the "NAME\n" tag a `Tagged` backend sends first.
pub async fn read_tag(stream: &mut TcpStream) -> String {
    let mut line = String::new();
    let mut reader = BufReader::new(stream);
    tokio::time::timeout(PATIENCE, reader.read_line(&mut line))
        .await
        .expect("tag arrives in time")
        .expect("read tag");
    line.trim_end().to_string()
}

/// Reads the "NAME\n" tag of a `Tagged` backend and then its echo of `sent`
/// (written before the tag was read) exactly, buffering nothing beyond them, so
/// a later read sees only what the backend sends next.
pub async fn read_tag_and_echo(stream: &mut TcpStream, sent: &[u8]) -> String {
    let mut received = Vec::new();
    let mut chunk = [0u8; 4096];
    let tag_end = loop {
        let end = received.iter().position(|&b| b == b'\n');
        if let Some(end) = end.filter(|end| received.len() >= end + 1 + sent.len()) {
            break end;
        }
        let n = tokio::time::timeout(PATIENCE, stream.read(&mut chunk))
            .await
            .expect("tag and echo arrive in time")
            .expect("read tag and echo");
        assert!(n > 0, "closed after {} bytes", received.len());
        received.extend_from_slice(&chunk[..n]);
    };
    assert!(
        received[tag_end + 1..] == *sent,
        "the echo differs from what was sent"
    );
    String::from_utf8_lossy(&received[..tag_end]).into_owned()
}

/// Connects, reads the tag, closes: which backend served this connection.
pub async fn tag_of_new_connection(to: SocketAddr) -> String {
    let mut stream = TcpStream::connect(to).await.expect("connect");
    read_tag(&mut stream).await
}

/// Reads until end of stream (bounded by `PATIENCE`); `Err` on a reset.
pub async fn read_until_closed(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut data = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut data))
        .await
        .expect("connection closes in time")?;
    Ok(data)
}

/// `len` pseudo-random bytes from `seed` (xorshift64*; deterministic, not secret).
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut data = Vec::with_capacity(len + 8);
    while data.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        data.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    data.truncate(len);
    data
}

/// Polls `done` until it holds (bounded by `PATIENCE`).
pub async fn wait_until(what: &str, done: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never happened: {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Polls the async `done` until it holds (bounded by `PATIENCE`).
pub async fn wait_until_async<F, Fut>(what: &str, done: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !done().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never happened: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One HTTP/1.1 request over a fresh connection; returns the status code and body.
pub async fn http(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.expect("connect to admin");
    let request = format!("{method} {path} HTTP/1.1\r\nHost: l4lb\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("send request");
    let raw = read_until_closed(&mut stream).await.expect("read response");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text.as_str(), ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {head}"));
    (status, body.to_string())
}

/// GETs `path` and expects 200; returns the body.
pub async fn get_ok(addr: SocketAddr, path: &str) -> String {
    let (status, body) = http(addr, "GET", path).await;
    assert_eq!(status, 200, "GET {path}: {body}");
    body
}

/// A UDP echo server on 127.0.0.1 that runs for the rest of the test.
pub async fn udp_echo() -> SocketAddr {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind udp echo");
    let addr = socket.local_addr().expect("udp echo address");
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        while let Ok((len, from)) = socket.recv_from(&mut buf).await {
            let _ = socket.send_to(&buf[..len], from).await;
        }
    });
    addr
}

/// Sends `payload` on an open session through an echo backend and checks the
/// same bytes come back (bounded by `PATIENCE`).
pub async fn echo_round_trip(stream: &mut TcpStream, payload: &[u8]) {
    stream.write_all(payload).await.expect("send");
    let mut back = vec![0u8; payload.len()];
    tokio::time::timeout(PATIENCE, stream.read_exact(&mut back))
        .await
        .expect("echo in time")
        .expect("session still open");
    assert_eq!(back, payload);
}

/// Feeds a scrape to `promtool check metrics` and panics with its report unless
/// it accepts the text without a single remark.
pub fn assert_promtool_accepts(scrape: &str) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is required (Debian package `prometheus`; scripts/test.sh installs it)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(scrape.as_bytes())
        .expect("feed promtool");
    let out = child.wait_with_output().expect("promtool output");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && report.trim().is_empty(),
        "promtool found problems:\n{report}\nin:\n{scrape}"
    );
}

/// The samples of `name` whose labels include every one of `labels`, as
/// `(the whole label set, value)`.
pub fn samples(scrape: &str, name: &str, labels: &[(&str, &str)]) -> Vec<(String, f64)> {
    scrape
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (series_name, series_labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let wanted = series_name == name
                && labels
                    .iter()
                    .all(|(k, v)| series_labels.contains(&format!("{k}=\"{v}\"")));
            let value = value.parse::<f64>().ok()?;
            wanted.then(|| (series_labels.to_string(), value))
        })
        .collect()
}
