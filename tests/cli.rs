//! The `l4lb` binary itself: `check`, `--version`, and `run` with real signals.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::binary::{BIN, l4lb_within_patience, signal};
use common::ports::free_port;

fn l4lb(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("run l4lb")
}

fn write_config(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("l4lb-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write config");
    path
}

#[test]
fn check_accepts_the_shipped_example_and_summarises_each_service() {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("lb.toml");
    let out = l4lb(&["check", shipped.to_str().expect("utf-8 path")]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.lines().any(|l| l.starts_with("service \"")),
        "{stdout}"
    );
    assert!(stdout.contains("configuration is valid"), "{stdout}");
}

#[test]
fn check_reports_every_mistake_with_its_line_and_exits_1() {
    let path = write_config(
        "bad.toml",
        r#"[[service]]
name = "pg"
listen = "127.0.0.1:6432"
strategy = "fastest"
connect_timeout = "soon"

[[service.backend]]
address = "127.0.0.1:5432"
weight = 0

[[service]]
name = "pg"
listen = "127.0.0.1:6433"
"#,
    );
    let out = l4lb(&["check", path.to_str().expect("utf-8 path")]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let expected_lines = [
        ("bad.toml:4:", "strategy"),
        ("bad.toml:5:", "connect_timeout"),
        ("bad.toml:9:", "weight"),
        ("bad.toml:12:", "pg"),
    ];
    for (location, key) in expected_lines {
        assert!(
            stderr
                .lines()
                .any(|l| l.contains(location) && l.contains(key)),
            "missing {location} {key} in:\n{stderr}"
        );
    }
    assert!(
        stderr.contains("backend"),
        "the second service has no backend:\n{stderr}"
    );
}

#[test]
fn check_names_a_missing_file() {
    let out = l4lb(&["check", "/nonexistent/lb.toml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/lb.toml"));
}

#[test]
fn version_prints_the_package_version() {
    let out = l4lb(&["--version"]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("l4lb {}", env!("CARGO_PKG_VERSION"))
    );
}

/// Starts `l4lb run` and waits until `addr` accepts connections.
fn spawn_run(config: &Path, addr: SocketAddr) -> Child {
    let child = Command::new(BIN)
        .args(["run", config.to_str().expect("utf-8 path")])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn l4lb run");
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "l4lb never listened on {addr}");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        assert!(Instant::now() < deadline, "l4lb did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// An echo server on 127.0.0.1 that serves every client on its own thread, for the
/// life of the test process.
fn start_echo_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("backend");
    let addr = listener.local_addr().expect("address");
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut buf = [0u8; 1024];
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

fn round_trip(session: &mut TcpStream, payload: &[u8]) {
    session.write_all(payload).expect("send");
    let mut echo = vec![0u8; payload.len()];
    session.read_exact(&mut echo).expect("echo");
    assert_eq!(echo, payload);
}

#[test]
fn run_serves_and_sigterm_lets_an_open_session_finish_then_exits_0() {
    let backend_addr = start_echo_backend();
    let listen: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let path = write_config(
        "run.toml",
        &format!(
            "[global]\nshutdown_grace = \"20s\"\n[[service]]\nname = \"svc\"\nlisten = \"{listen}\"\n\
             [[service.backend]]\naddress = \"{backend_addr}\"\n"
        ),
    );
    let mut child = spawn_run(&path, listen);
    let mut session = TcpStream::connect(listen).expect("connect");
    session
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    round_trip(&mut session, b"before");

    signal(&child, "TERM");
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        child.try_wait().expect("wait").is_none(),
        "exited with a session open"
    );
    round_trip(&mut session, b"while draining");
    drop(session);
    let status = wait_exit(&mut child);
    assert_eq!(status.code(), Some(0));
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        pipe.read_to_string(&mut stderr).expect("stderr");
    }
    assert!(stderr.contains("drain complete"), "{stderr}");
}

#[test]
fn run_exits_1_when_a_listen_address_is_taken() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("address");
    let path = write_config(
        "taken.toml",
        &format!(
            "[[service]]\nname = \"svc\"\nlisten = \"{addr}\"\n\
             [[service.backend]]\naddress = \"127.0.0.1:9\"\n"
        ),
    );
    let out = l4lb(&["run", path.to_str().expect("utf-8 path")]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&addr.to_string()) && stderr.contains("svc"),
        "{stderr}"
    );
}

#[test]
fn run_exits_1_on_an_invalid_config() {
    let path = write_config("invalid.toml", "[[service]]\nname = \"x\"\n");
    let out = l4lb(&["run", path.to_str().expect("utf-8 path")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid.toml"));
}

#[test]
fn json_logs_carry_one_structured_access_line_per_session() {
    let backend_addr = start_echo_backend();
    let listen: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let path = write_config(
        "json.toml",
        &format!(
            "[[service]]\nname = \"svc\"\nlisten = \"{listen}\"\n\
             [[service.backend]]\naddress = \"{backend_addr}\"\n"
        ),
    );
    let mut child = Command::new(BIN)
        .args([
            "--log-format",
            "json",
            "run",
            path.to_str().expect("utf-8 path"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn l4lb run");
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut session = loop {
        if let Ok(stream) = TcpStream::connect(listen) {
            break stream;
        }
        assert!(Instant::now() < deadline, "l4lb never listened");
        std::thread::sleep(Duration::from_millis(20));
    };
    session
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    round_trip(&mut session, b"twelve bytes");
    drop(session);
    std::thread::sleep(Duration::from_millis(200));
    let stderr = stop_and_read_logs(&mut child);
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let access: Vec<_> = lines
        .iter()
        .filter(|l| l["message"] == "session closed")
        .collect();
    assert_eq!(access.len(), 1, "{stderr}");
    let line = access[0];
    assert_eq!(line["target"], "l4lb::access");
    assert_eq!(line["service"], "svc");
    assert_eq!(line["backend"], backend_addr.to_string());
    assert_eq!(line["bytes_up"], 12);
    assert_eq!(line["bytes_down"], 12);
    assert_eq!(line["end"], "client_closed");
    assert!(
        line["client"]
            .as_str()
            .is_some_and(|c| c.starts_with("127.0.0.1:"))
    );
    assert!(line["duration_ms"].is_f64());
    let raw = stderr
        .lines()
        .find(|l| l.contains("\"session closed\""))
        .expect("access line");
    let duration = raw
        .split("\"duration_ms\":")
        .nth(1)
        .and_then(|rest| rest.split([',', '}']).next())
        .expect("duration_ms field");
    let decimals = duration.split_once('.').map_or(0, |(_, d)| d.len());
    assert!(decimals <= 3, "duration_ms={duration} in {raw}");
}

#[test]
fn check_refuses_a_fifo_at_once_naming_it() {
    let path = write_config("fifo-target.toml", "");
    let fifo = path.with_file_name("lb.fifo");
    let _ = std::fs::remove_file(&fifo);
    let made = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(made.success());
    let fifo_text = fifo.to_str().expect("utf-8 path");
    let out = l4lb_within_patience(&["check", fifo_text], &[]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "{fifo_text}: cannot use a FIFO (named pipe) as the configuration file: \
             it must be a regular file"
        )),
        "{stderr}"
    );
}

#[test]
fn an_unknown_log_level_is_an_error_saying_what_is_accepted() {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("lb.toml");
    let shipped = shipped.to_str().expect("utf-8 path");
    let out = l4lb_within_patience(&["--log-level", "inof", "check", shipped], &[]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--log-level \"inof\": \"inof\" is not a log level; expected a level (off, error, warn or warning, info, debug, trace)"),
        "{stderr}"
    );
    let out = l4lb_within_patience(&["check", shipped], &[("RUST_LOG", "l4lb=loud")]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("RUST_LOG=\"l4lb=loud\": \"l4lb=loud\": \"loud\" is not a log level"),
        "{stderr}"
    );
}

#[test]
fn log_level_warning_keeps_warnings_and_piped_logs_have_no_colour_codes() {
    let listen: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let path = write_config(
        "warning.toml",
        &format!(
            "[global]\nmax_connections = 100000000\n[[service]]\nname = \"svc\"\n\
             listen = \"{listen}\"\n[[service.backend]]\naddress = \"127.0.0.1:9\"\n"
        ),
    );
    let mut child = Command::new(BIN)
        .args(["--log-level", "warning", "run"])
        .arg(&path)
        .env_remove("NO_COLOR")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn l4lb run");
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(listen).is_err() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("l4lb never listened on {listen}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let stderr = stop_and_read_logs(&mut child);
    assert!(
        stderr.contains("WARN") && stderr.contains("raise LimitNOFILE"),
        "the warning is missing:\n{stderr}"
    );
    assert!(
        !stderr.contains("INFO"),
        "info lines at warn level:\n{stderr}"
    );
    assert!(
        !stderr.contains('\u{1b}'),
        "colour codes in piped logs:\n{stderr:?}"
    );
}

#[test]
fn logs_written_to_a_pipe_carry_no_colour_codes() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("address");
    let path = write_config(
        "colour.toml",
        &format!(
            "[[service]]\nname = \"svc\"\nlisten = \"{addr}\"\n\
             [[service.backend]]\naddress = \"127.0.0.1:9\"\n"
        ),
    );
    let out = Command::new(BIN)
        .arg("run")
        .arg(&path)
        .env_remove("NO_COLOR")
        .output()
        .expect("run l4lb");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("ERROR"), "{stderr}");
    assert!(!stderr.contains('\u{1b}'), "colour codes: {stderr:?}");
}

#[test]
fn check_prints_the_first_100_errors_and_counts_the_rest() {
    let mut text = String::from("[[service]]\nname = \"big\"\nlisten = \"127.0.0.1:0\"\n");
    for i in 0..3000 {
        text.push_str(&format!(
            "[[service.backend]]\naddress = \"10.0.{}.{}:80\"\nweight = 0\n",
            i / 256,
            i % 256
        ));
    }
    let path = write_config("many-errors.toml", &text);
    let out = l4lb_within_patience(&["check", path.to_str().expect("utf-8 path")], &[]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 102, "{stderr}");
    assert!(
        lines[..100]
            .iter()
            .all(|l| l.contains(".weight: must be between 1 and 1000, got 0")),
        "{stderr}"
    );
    assert_eq!(lines[100], "… and 2900 more errors");
    assert!(
        lines[101].ends_with("many-errors.toml: 3000 error(s); configuration is invalid"),
        "{}",
        lines[101]
    );
}

/// A UDP echo server on 127.0.0.1 for the life of the test process.
fn start_udp_echo() -> SocketAddr {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp backend");
    let addr = socket.local_addr().expect("address");
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = socket.recv_from(&mut buf) {
            let _ = socket.send_to(&buf[..n], from);
        }
    });
    addr
}

/// One datagram through `to` and its echo, from a fresh port.
fn udp_round_trip(to: SocketAddr) {
    let client = std::net::UdpSocket::bind("127.0.0.1:0").expect("client");
    client
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    client.send_to(b"ping", to).expect("send");
    let mut buf = [0u8; 16];
    let (n, _) = client.recv_from(&mut buf).expect("echo");
    assert_eq!(&buf[..n], b"ping");
}

#[test]
fn access_log_errors_and_off_keep_ordinary_sessions_and_flows_out_of_the_log() {
    let (tcp_backend, udp_backend) = (start_echo_backend(), start_udp_echo());
    let ports: Vec<u16> = (0..4).map(|_| free_port()).collect();
    let at = |i: usize| SocketAddr::from(([127, 0, 0, 1], ports[i]));
    let service = |name: &str, protocol: &str, i: usize, log: &str, backend: SocketAddr| {
        format!(
            "[[service]]\nname = \"{name}\"\nprotocol = \"{protocol}\"\nlisten = \"{}\"\n{log}\n\
             [[service.backend]]\naddress = \"{backend}\"\n",
            at(i)
        )
    };
    let text = [
        service("tcp-all", "tcp", 0, "", tcp_backend),
        service(
            "tcp-errors",
            "tcp",
            1,
            "access_log = \"errors\"",
            tcp_backend,
        ),
        service("udp-all", "udp", 2, "", udp_backend),
        service("udp-off", "udp", 3, "access_log = \"off\"", udp_backend),
    ]
    .concat();
    let path = write_config("access_log.toml", &text);
    let mut child = spawn_run(&path, at(1));
    for i in [0, 1] {
        let mut session = TcpStream::connect(at(i)).expect("connect");
        session
            .set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        round_trip(&mut session, b"hello");
    }
    udp_round_trip(at(2));
    udp_round_trip(at(3));
    std::thread::sleep(Duration::from_millis(200));
    signal(&child, "TERM");
    assert_eq!(wait_exit(&mut child).code(), Some(0));
    let mut stderr = String::new();
    let mut pipe = child.stderr.take().expect("stderr");
    pipe.read_to_string(&mut stderr).expect("read logs");
    let logged = |service: &str| {
        stderr
            .lines()
            .filter(|l| l.contains("l4lb::access") && l.contains(&format!("service=\"{service}\"")))
            .count()
    };
    assert_eq!(logged("tcp-all"), 1, "{stderr}");
    assert_eq!(logged("udp-all"), 1, "{stderr}");
    assert_eq!(
        logged("tcp-errors"),
        0,
        "a clean session is no error: {stderr}"
    );
    assert_eq!(logged("udp-off"), 0, "{stderr}");
}

/// Stops `child` with SIGTERM, expects a clean exit, and returns what it logged.
fn stop_and_read_logs(child: &mut Child) -> String {
    signal(child, "TERM");
    assert_eq!(wait_exit(child).code(), Some(0));
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("read logs");
    stderr
}
