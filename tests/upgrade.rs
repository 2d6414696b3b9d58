//! Binary upgrades with the real binary over real sockets: a new `l4lb run
//! --upgrade` takes the listening sockets and UDP flows of the running one
//! over the control socket while clients keep going — short TCP connections,
//! long TCP sessions checked by SHA-256, UDP flows whose backend must keep
//! seeing the same source address and port. Failed upgrades (a new address
//! that cannot be bound, a peer that gives up after pausing the UDP loops, a
//! peer of another protocol version) leave the old process serving.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use l4lb::upgrade::{fds, protocol};
use sha2::{Digest, Sha256};

mod common;

use common::PATIENCE;
use common::binary::{
    BIN, admin_get, notifications_until, notifications_until_match, signal, wait_exit,
};
use common::servers::ScratchDir;

/// A running l4lb, killed when dropped (a failed test leaves nothing behind).
struct Lb {
    child: Child,
    log: PathBuf,
}

impl Lb {
    fn start(config: &Path, upgrade: bool, log: PathBuf) -> Lb {
        Lb::start_with_env(config, upgrade, log, &[])
    }

    /// [`Lb::start`] with `env` added to the environment.
    fn start_with_env(config: &Path, upgrade: bool, log: PathBuf, env: &[(&str, &OsStr)]) -> Lb {
        let mut command = Command::new(BIN);
        command.arg("run").envs(env.iter().copied());
        if upgrade {
            command.arg("--upgrade");
        }
        let child = command
            .arg(config)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("spawn l4lb");
        Lb { child, log }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn exited(&mut self) -> Option<i32> {
        let status = self.child.try_wait().expect("wait")?;
        Some(status.code().unwrap_or(-1))
    }

    fn wait_exit(&mut self) -> i32 {
        wait_exit(&mut self.child)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn terminate(&self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
    }

    /// SIGTERM, after which it must exit 0.
    fn stop(&mut self) {
        self.terminate();
        let code = self.wait_exit();
        assert_eq!(code, 0, "{}", self.log());
    }
}

impl Drop for Lb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_tcp() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
}

fn free_udp() -> SocketAddr {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("free port")
}

/// Addresses of one test's l4lb and backends.
struct Setup {
    tcp: SocketAddr,
    udp: SocketAddr,
    admin: SocketAddr,
    tcp_backend: SocketAddr,
    udp_backend: SocketAddr,
    control: PathBuf,
}

impl Setup {
    fn config(&self, workers: usize, extra: &str) -> String {
        format!(
            "[admin]\nlisten = \"{}\"\n[global]\nworkers = {workers}\nshutdown_grace = \"60s\"\n\
             control_socket = \"{}\"\n\
             [[service]]\nname = \"tcp\"\nlisten = \"{}\"\n[[service.backend]]\naddress = \"{}\"\n\
             [[service]]\nname = \"udp\"\nprotocol = \"udp\"\nidle_timeout = \"60s\"\nlisten = \"{}\"\n\
             [[service.backend]]\naddress = \"{}\"\n{extra}",
            self.admin,
            self.control.display(),
            self.tcp,
            self.tcp_backend,
            self.udp,
            self.udp_backend
        )
    }
}

/// Every source address each UDP flow reached the backend from, by flow.
type Sources = Mutex<HashMap<String, HashSet<SocketAddr>>>;

/// A TCP backend echoing everything back.
fn tcp_echo() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("backend");
    let addr = listener.local_addr().expect("address");
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut buf = [0u8; 16384];
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 || stream.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

/// A UDP backend echoing datagrams, remembering every source address of
/// each flow (a datagram starts with its flow's number and a colon).
fn udp_echo() -> (SocketAddr, Arc<Sources>) {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("udp backend");
    let addr = socket.local_addr().expect("address");
    let seen: Arc<Sources> = Arc::default();
    let record = Arc::clone(&seen);
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = socket.recv_from(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            if let Some(flow) = text.split(':').next() {
                let mut seen = record.lock().expect("lock");
                seen.entry(flow.to_string()).or_default().insert(from);
            }
            let _ = socket.send_to(&buf[..n], from);
        }
    });
    (addr, seen)
}

fn setup(name: &str) -> (ScratchDir, Setup, Arc<Sources>) {
    let scratch = ScratchDir::new(&format!("upgrade-{name}"));
    let (udp_backend, seen) = udp_echo();
    let setup = Setup {
        tcp: free_tcp(),
        udp: free_udp(),
        admin: free_tcp(),
        tcp_backend: tcp_echo(),
        udp_backend,
        control: scratch.path().join("run/control.sock"),
    };
    (scratch, setup, seen)
}

fn status(admin: SocketAddr) -> Option<serde_json::Value> {
    serde_json::from_str(&admin_get(admin, "/status")?).ok()
}

/// Waits until `/status` answers with a document `accept` takes; fails the
/// test when `lb` exits first, or with `missing` past PATIENCE.
fn wait_status(
    admin: SocketAddr,
    lb: &mut Lb,
    missing: &str,
    accept: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(status) = status(admin).filter(|s| accept(s)) {
            return status;
        }
        if let Some(code) = lb.exited() {
            panic!("l4lb {} exited with {code}: {}", lb.pid(), lb.log());
        }
        assert!(Instant::now() < deadline, "{missing}: {}", lb.log());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until `/status` is answered by a process that upgraded from `from`.
fn wait_upgraded(admin: SocketAddr, from: u32, new: &mut Lb) -> serde_json::Value {
    let missing = format!("no upgrade from {from}");
    wait_status(admin, new, &missing, |s| {
        s["upgrade"]["predecessor"]["pid"] == from
    })
}

fn wait_serving(admin: SocketAddr, lb: &mut Lb) {
    wait_status(admin, lb, "l4lb never served", |_| true);
}

/// Writes `lb.toml` with `workers` workers, starts l4lb on it (logging to
/// `log`) and waits until it serves.
fn start_serving(scratch: &ScratchDir, setup: &Setup, workers: usize, log: &str) -> (PathBuf, Lb) {
    let config = scratch.path().join("lb.toml");
    std::fs::write(&config, setup.config(workers, "")).expect("config");
    let mut lb = Lb::start(&config, false, scratch.path().join(log));
    wait_serving(setup.admin, &mut lb);
    (config, lb)
}

/// Client load running until `stop`; what it saw.
#[derive(Default)]
struct Load {
    short_ok: AtomicU64,
    short_failed: AtomicU64,
    /// Microseconds: the slowest connect + round trip of a short connection.
    short_worst_us: AtomicU64,
    udp_ok: AtomicU64,
    udp_lost: AtomicU64,
    udp_worst_us: AtomicU64,
    failures: Mutex<Vec<String>>,
}

impl Load {
    fn fail(&self, what: String) {
        let mut failures = self.failures.lock().expect("lock");
        if failures.len() < 20 {
            failures.push(what);
        }
    }
}

/// Short TCP connections, one every 4 ms (250/s at most): connect, one round trip, close.
fn short_connections(to: SocketAddr, load: Arc<Load>, stop: Arc<AtomicBool>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut next = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            let started = Instant::now();
            match round_trip(to) {
                Ok(()) => {
                    load.short_ok.fetch_add(1, Ordering::Relaxed);
                    let us = started.elapsed().as_micros() as u64;
                    load.short_worst_us.fetch_max(us, Ordering::Relaxed);
                }
                Err(e) => {
                    load.short_failed.fetch_add(1, Ordering::Relaxed);
                    load.fail(format!("short connection: {e}"));
                }
            }
            next += Duration::from_millis(4);
            if let Some(wait) = next.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
    })
}

fn round_trip(to: SocketAddr) -> std::io::Result<()> {
    let mut stream = TcpStream::connect_timeout(&to, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(b"ping")?;
    let mut reply = [0u8; 4];
    stream.read_exact(&mut reply)?;
    if &reply != b"ping" {
        return Err(std::io::Error::other("wrong reply"));
    }
    Ok(())
}

/// A long TCP session sending 4 KiB every 20 ms until `stop`, reading the echo;
/// whether the SHA-256 of what came back is that of what was sent.
fn long_session(
    to: SocketAddr,
    seed: u8,
    load: Arc<Load>,
    stop: Arc<AtomicBool>,
) -> JoinHandle<bool> {
    std::thread::spawn(move || {
        let run = || -> std::io::Result<bool> {
            let mut stream = TcpStream::connect(to)?;
            stream.set_read_timeout(Some(Duration::from_secs(10)))?;
            let (mut sent, mut received) = (Sha256::new(), Sha256::new());
            let mut chunk = vec![0u8; 4096];
            let mut counter = seed as u64;
            while !stop.load(Ordering::Relaxed) {
                for byte in chunk.iter_mut() {
                    counter = counter
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    *byte = (counter >> 56) as u8;
                }
                stream.write_all(&chunk)?;
                sent.update(&chunk);
                let mut echo = vec![0u8; chunk.len()];
                stream.read_exact(&mut echo)?;
                received.update(&echo);
                std::thread::sleep(Duration::from_millis(20));
            }
            Ok(sent.finalize() == received.finalize())
        };
        match run() {
            Ok(intact) => intact,
            Err(e) => {
                load.fail(format!("long session {seed}: {e}"));
                false
            }
        }
    })
}

/// A UDP flow pinging every 20 ms until `stop`, each ping waiting for its reply.
fn udp_flow(to: SocketAddr, flow: usize, load: Arc<Load>, stop: Arc<AtomicBool>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("client");
        socket.connect(to).expect("connect");
        socket
            .set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let mut buf = [0u8; 256];
        let mut seq = 0u64;
        while !stop.load(Ordering::Relaxed) {
            seq += 1;
            let ping = format!("{flow}:{seq}");
            let started = Instant::now();
            if socket.send(ping.as_bytes()).is_err() {
                load.udp_lost.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let deadline = Instant::now() + Duration::from_secs(2);
            let mut answered = false;
            while Instant::now() < deadline {
                match socket.recv(&mut buf) {
                    Ok(n) if buf[..n] == *ping.as_bytes() => {
                        answered = true;
                        break;
                    }
                    Ok(_) => continue, // a late reply to an earlier ping
                    Err(_) => break,
                }
            }
            if answered {
                load.udp_ok.fetch_add(1, Ordering::Relaxed);
                let us = started.elapsed().as_micros() as u64;
                load.udp_worst_us.fetch_max(us, Ordering::Relaxed);
            } else {
                load.udp_lost.fetch_add(1, Ordering::Relaxed);
                load.fail(format!("udp flow {flow}: ping {seq} unanswered"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    })
}

/// The load of the upgrade tests, started.
struct Running {
    load: Arc<Load>,
    stop: Arc<AtomicBool>,
    short: JoinHandle<()>,
    long: Vec<JoinHandle<bool>>,
    udp: Vec<JoinHandle<()>>,
}

fn start_load(setup: &Setup, long: usize, flows: usize) -> Running {
    let load = Arc::new(Load::default());
    let stop = Arc::new(AtomicBool::new(false));
    let short = short_connections(setup.tcp, Arc::clone(&load), Arc::clone(&stop));
    let long = (0..long)
        .map(|i| long_session(setup.tcp, i as u8, Arc::clone(&load), Arc::clone(&stop)))
        .collect();
    let udp = (0..flows)
        .map(|i| udp_flow(setup.udp, i, Arc::clone(&load), Arc::clone(&stop)))
        .collect();
    Running {
        load,
        stop,
        short,
        long,
        udp,
    }
}

impl Running {
    /// Stops the load; how many long sessions kept their bytes intact.
    fn finish(self) -> (Arc<Load>, usize) {
        self.stop.store(true, Ordering::Relaxed);
        self.short.join().expect("short connections");
        for flow in self.udp {
            flow.join().expect("udp flow");
        }
        let intact = self
            .long
            .into_iter()
            .map(|h| h.join().expect("long session"))
            .filter(|&ok| ok)
            .count();
        (self.load, intact)
    }
}

fn assert_nothing_dropped(load: &Load, intact: usize, long: usize) {
    let failures = load.failures.lock().expect("lock").clone();
    assert_eq!(load.short_failed.load(Ordering::Relaxed), 0, "{failures:?}");
    assert_eq!(load.udp_lost.load(Ordering::Relaxed), 0, "{failures:?}");
    assert_eq!(intact, long, "long sessions intact; {failures:?}");
    assert!(load.short_ok.load(Ordering::Relaxed) > 0);
    assert!(load.udp_ok.load(Ordering::Relaxed) > 0);
}

/// Each UDP flow reached its backend from exactly one source address:port.
fn assert_one_source_per_flow(seen: &Sources, flows: usize) {
    let seen = seen.lock().expect("lock");
    assert_eq!(seen.len(), flows, "every flow reached the backend");
    for (flow, sources) in seen.iter() {
        assert_eq!(sources.len(), 1, "flow {flow} came from {sources:?}");
    }
}

fn report(name: &str, load: &Load) {
    eprintln!(
        "{name}: short connections ok {} failed {}, slowest {} ms; udp pings ok {} lost {}, slowest {} ms",
        load.short_ok.load(Ordering::Relaxed),
        load.short_failed.load(Ordering::Relaxed),
        load.short_worst_us.load(Ordering::Relaxed) as f64 / 1000.0,
        load.udp_ok.load(Ordering::Relaxed),
        load.udp_lost.load(Ordering::Relaxed),
        load.udp_worst_us.load(Ordering::Relaxed) as f64 / 1000.0,
    );
}

const LONG_SESSIONS: usize = 50;
const UDP_FLOWS: usize = 50;

#[test]
fn five_successive_upgrades_under_load_drop_nothing_and_keep_every_udp_source_port() {
    let (scratch, setup, seen) = setup("five");
    let (config, mut current) = start_serving(&scratch, &setup, 2, "lb-0.log");
    let running = start_load(&setup, LONG_SESSIONS, UDP_FLOWS);
    std::thread::sleep(Duration::from_millis(500));
    let mut previous = Vec::new();
    for round in 1..=5 {
        let mut next = Lb::start(
            &config,
            true,
            scratch.path().join(format!("lb-{round}.log")),
        );
        let status = wait_upgraded(setup.admin, current.pid(), &mut next);
        let flows = status["upgrade"]["predecessor"]["udp_flows"].as_u64();
        assert_eq!(flows, Some(UDP_FLOWS as u64), "round {round}: {status}");
        previous.push(std::mem::replace(&mut current, next));
        std::thread::sleep(Duration::from_millis(600));
    }
    let (load, intact) = running.finish();
    report("five upgrades", &load);
    assert_nothing_dropped(&load, intact, LONG_SESSIONS);
    assert_one_source_per_flow(&seen, UDP_FLOWS);
    for mut old in previous {
        assert_eq!(old.wait_exit(), 0, "{}", old.log());
    }
    current.stop();
}

#[test]
fn workers_one_to_two_via_upgrade_under_load_drops_nothing() {
    let (scratch, setup, seen) = setup("workers");
    let one = scratch.path().join("one.toml");
    let two = scratch.path().join("two.toml");
    std::fs::write(&one, setup.config(1, "")).expect("config");
    std::fs::write(&two, setup.config(2, "")).expect("config");
    let mut old = Lb::start(&one, false, scratch.path().join("old.log"));
    wait_serving(setup.admin, &mut old);
    let running = start_load(&setup, 10, 20);
    std::thread::sleep(Duration::from_millis(500));
    let mut new = Lb::start(&two, true, scratch.path().join("new.log"));
    let status = wait_upgraded(setup.admin, old.pid(), &mut new);
    std::thread::sleep(Duration::from_millis(800));
    let (load, intact) = running.finish();
    report("workers 1 -> 2", &load);
    assert_nothing_dropped(&load, intact, 10);
    assert_one_source_per_flow(&seen, 20);
    let listeners = &status["upgrade"]["listeners"];
    assert_eq!(
        listeners[0]["sockets"],
        serde_json::json!(["predecessor", "bound"]),
        "{status}"
    );
    assert_eq!(
        listeners[1]["sockets"],
        serde_json::json!(["predecessor"]),
        "{status}"
    );
    assert_eq!(old.wait_exit(), 0, "{}", old.log());
    new.stop();
}

/// One UDP client's flow, checked to still reach the backend from one source.
fn udp_ping(client: &UdpSocket, text: &str) {
    client.send(text.as_bytes()).expect("send");
    let mut buf = [0u8; 256];
    let n = client.recv(&mut buf).expect("udp reply");
    assert_eq!(&buf[..n], text.as_bytes());
}

/// A UDP client to `to` whose flow has made its first round trip ("f:1").
fn udp_client(to: SocketAddr) -> UdpSocket {
    let client = UdpSocket::bind("127.0.0.1:0").expect("client");
    client.connect(to).expect("connect");
    client.set_read_timeout(Some(PATIENCE)).expect("timeout");
    udp_ping(&client, "f:1");
    client
}

#[test]
fn an_upgrade_that_cannot_bind_or_is_invalid_leaves_the_old_process_serving() {
    let (scratch, setup, seen) = setup("refused");
    let (_, mut old) = start_serving(&scratch, &setup, 1, "old.log");
    let client = udp_client(setup.udp);

    let taken = TcpListener::bind("127.0.0.1:0").expect("a plain listener");
    let extra = format!(
        "[[service]]\nname = \"extra\"\nlisten = \"{}\"\n[[service.backend]]\naddress = \"{}\"\n",
        taken.local_addr().expect("address"),
        setup.tcp_backend
    );
    let unbindable = scratch.path().join("unbindable.toml");
    std::fs::write(&unbindable, setup.config(1, &extra)).expect("config");
    let mut new = Lb::start(&unbindable, true, scratch.path().join("unbindable.log"));
    assert_eq!(new.wait_exit(), 1);
    let stderr = new.log();
    assert!(
        stderr.contains("service \"extra\": cannot listen on"),
        "{stderr}"
    );
    assert!(
        stderr.contains("the running l4lb keeps serving"),
        "{stderr}"
    );

    let invalid = scratch.path().join("invalid.toml");
    std::fs::write(&invalid, setup.config(1, "[global.typo]\n")).expect("config");
    let mut new = Lb::start(&invalid, true, scratch.path().join("invalid.log"));
    assert_eq!(new.wait_exit(), 1);

    assert!(old.exited().is_none(), "the old process still runs");
    round_trip(setup.tcp).expect("the old process still serves tcp");
    udp_ping(&client, "f:2");
    let status = status(setup.admin).expect("status");
    assert_eq!(status["upgrade"]["failed_attempts"], 1, "{status}");
    assert!(status["upgrade"]["successor"].is_null());
    assert_one_source_per_flow(&seen, 1);
    old.stop();
}

#[test]
fn a_successor_that_gives_up_after_pausing_udp_or_speaks_another_version_changes_nothing() {
    let (scratch, setup, seen) = setup("gives-up");
    let (_, mut old) = start_serving(&scratch, &setup, 1, "old.log");
    let client = udp_client(setup.udp);

    // A peer that takes the sockets and the flows (the old process stops
    // reading UDP), then disappears without READY.
    let stream = UnixStream::connect(&setup.control).expect("control socket");
    stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
    protocol::write(&stream, &protocol::hello(Path::new("/elsewhere.toml"))).expect("hello");
    assert!(matches!(
        protocol::read(&stream),
        Ok(protocol::Message::Hello { .. })
    ));
    protocol::write(&stream, &protocol::Message::SendSockets).expect("ask");
    let protocol::Message::Sockets { sockets } = protocol::read(&stream).expect("sockets") else {
        panic!("no sockets");
    };
    assert_eq!(sockets.len(), 3, "tcp, udp and admin: {sockets:?}");
    let received = fds::recv_all(&stream, sockets.len()).expect("descriptors");
    protocol::write(&stream, &protocol::Message::SendFlows).expect("ask");
    let protocol::Message::Flows { flows } = protocol::read(&stream).expect("flows") else {
        panic!("no flows");
    };
    assert_eq!(flows.len(), 1);
    let flow_fds = fds::recv_all(&stream, flows.len()).expect("descriptors");
    // While paused, a datagram waits in the kernel...
    client.send(b"f:2").expect("send");
    drop((stream, received, flow_fds));
    // ...and is answered once the old process resumes.
    let mut buf = [0u8; 64];
    let n = client.recv(&mut buf).expect("answered after the resume");
    assert_eq!(&buf[..n], b"f:2");

    let stream = UnixStream::connect(&setup.control).expect("control socket");
    stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
    let future = protocol::Message::Hello {
        protocol_version: protocol::PROTOCOL_VERSION + 1,
        pid: 1,
        version: "99.0.0".to_string(),
        config: PathBuf::new(),
        net_namespace: String::new(),
    };
    protocol::write(&stream, &future).expect("hello");
    let answer = protocol::read(&stream).expect("answer");
    let protocol::Message::Refused { reason } = answer else {
        panic!("not refused: {answer:?}");
    };
    assert!(reason.contains("version"), "{reason}");

    round_trip(setup.tcp).expect("tcp still served");
    udp_ping(&client, "f:3");
    assert_one_source_per_flow(&seen, 1);
    let status = status(setup.admin).expect("status");
    assert_eq!(status["upgrade"]["failed_attempts"], 2, "{status}");
    old.stop();
    assert!(
        old.log()
            .contains("binary upgrade failed before the new process was ready")
    );
}

#[test]
fn run_upgrade_without_a_predecessor_fails_and_plain_run_starts_fresh() {
    let (scratch, setup, _seen) = setup("alone");
    let config = scratch.path().join("lb.toml");
    std::fs::write(&config, setup.config(1, "")).expect("config");
    let mut lonely = Lb::start(&config, true, scratch.path().join("lonely.log"));
    assert_eq!(lonely.wait_exit(), 1);
    assert!(
        lonely
            .log()
            .contains("no running l4lb accepts on the control socket"),
        "{}",
        lonely.log()
    );
    let (_, mut first) = start_serving(&scratch, &setup, 1, "first.log");
    let mode = std::fs::metadata(&setup.control).map(|m| {
        use std::os::unix::fs::PermissionsExt;
        m.permissions().mode() & 0o777
    });
    assert_eq!(mode.ok(), Some(0o600));
    let status = status(setup.admin).expect("status");
    assert!(status["upgrade"]["predecessor"].is_null(), "{status}");
    // `check` of a changed file tells what an upgrade would reuse, bind and close.
    let moved = scratch.path().join("moved.toml");
    let elsewhere = free_udp();
    let text = setup
        .config(1, "")
        .replace(&setup.udp.to_string(), &elsewhere.to_string());
    std::fs::write(&moved, text).expect("config");
    let out = Command::new(BIN)
        .arg("check")
        .arg(&moved)
        .output()
        .expect("check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "l4lb {} (pid {}",
            env!("CARGO_PKG_VERSION"),
            first.pid()
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("reuse tcp {} (service \"tcp\")", setup.tcp)),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("reuse tcp {} (admin)", setup.admin)),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("bind  udp {elsewhere} (service \"udp\"): new")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("close udp {}", setup.udp)),
        "{stdout}"
    );
    let status = self::status(setup.admin).expect("status");
    assert_eq!(
        status["upgrade"]["failed_attempts"], 0,
        "a check is no failed upgrade: {status}"
    );
    first.stop();
    assert!(
        !setup.control.exists(),
        "its own socket file is removed at exit"
    );
}

#[test]
fn sigusr2_starts_the_new_binary_which_takes_over_and_becomes_the_main_pid() {
    let (scratch, setup, seen) = setup("usr2");
    let config = scratch.path().join("lb.toml");
    std::fs::write(&config, setup.config(1, "")).expect("config");
    let notify_path = scratch.path().join("notify.sock");
    let notify = std::os::unix::net::UnixDatagram::bind(&notify_path).expect("notify socket");
    notify
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let env = [("NOTIFY_SOCKET", notify_path.as_os_str())];
    let mut old = Lb::start_with_env(&config, false, scratch.path().join("old.log"), &env);
    notifications_until(&notify, "READY=1");
    let client = udp_client(setup.udp);

    signal(&old.child, "USR2");
    let main_pid = |t: &str| {
        t.lines()
            .find_map(|l| l.strip_prefix("MAINPID="))
            .and_then(|p| p.parse::<u32>().ok())
    };
    let seen_notes = notifications_until_match(&notify, "MAINPID=", |t| main_pid(t).is_some());
    let ready = seen_notes.last().expect("a notification");
    assert!(ready.lines().any(|l| l == "READY=1"), "{ready}");
    let new_pid = main_pid(ready).expect("MAINPID");
    assert_ne!(new_pid, old.pid());
    let _new = KillPid(new_pid);
    assert_eq!(old.wait_exit(), 0, "{}", old.log());

    let status = status(setup.admin).expect("the new process answers /status");
    assert_eq!(
        status["upgrade"]["predecessor"]["pid"],
        old.pid(),
        "{status}"
    );
    udp_ping(&client, "f:2");
    round_trip(setup.tcp).expect("tcp served by the new process");
    assert_one_source_per_flow(&seen, 1);

    let _ = Command::new("kill")
        .args(["-TERM", &new_pid.to_string()])
        .status();
    let proc_dir = PathBuf::from(format!("/proc/{new_pid}"));
    let deadline = Instant::now() + PATIENCE;
    while proc_dir.exists() && status_of(&proc_dir) != Some('Z') {
        assert!(Instant::now() < deadline, "the new process did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Kills a process that is not this test's child when dropped (a failed test
/// leaves nothing running).
struct KillPid(u32);

impl Drop for KillPid {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", &self.0.to_string()])
            .stderr(Stdio::null())
            .status();
    }
}

/// The state letter of a process (`Z` for a zombie waiting for its parent).
fn status_of(proc_dir: &Path) -> Option<char> {
    let stat = std::fs::read_to_string(proc_dir.join("stat")).ok()?;
    stat.rsplit(')').next()?.trim().chars().next()
}
