//! `--log-target syslog` with the real binary and a real unix datagram socket
//! the test binds (named by `L4LB_SYSLOG_SOCKET`, as `/dev/log` would be):
//! RFC 3164 lines with the level's severity (facility daemon), text and JSON,
//! and a clear error naming a socket that is not there.

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::binary::{BIN, temp_dir};

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs l4lb logging to syslog at `socket`, with a backend whose checks fail.
fn start(dir: &Path, socket: &Path, format: &str) -> Killed {
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let config = dir.join("lb.toml");
    let toml = format!(
        "[global]\ncontrol_socket = \"{}\"\n[[service]]\nname = \"svc\"\nlisten = \"127.0.0.1:0\"\n\
         [service.health]\ninterval = \"100ms\"\ntimeout = \"100ms\"\nfall = 1\n\
         [[service.backend]]\naddress = \"{dead}\"\n",
        dir.join("control.sock").display()
    );
    std::fs::write(&config, toml).expect("config");
    let child = Command::new(BIN)
        .args(["--log-target", "syslog", "--log-format", format, "run"])
        .arg(&config)
        .env("L4LB_SYSLOG_SOCKET", socket)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn l4lb");
    Killed(child)
}

/// Datagrams received until one contains `wanted` (bounded); all of them.
fn lines_until(socket: &UnixDatagram, wanted: &str) -> Vec<String> {
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let deadline = Instant::now() + common::PATIENCE;
    let mut lines = Vec::new();
    let mut buf = vec![0u8; 65_536];
    while Instant::now() < deadline {
        if let Ok(len) = socket.recv(&mut buf) {
            lines.push(String::from_utf8_lossy(&buf[..len]).into_owned());
            if lines.last().is_some_and(|l| l.contains(wanted)) {
                return lines;
            }
        }
    }
    panic!("no syslog line with {wanted:?}; got {lines:?}");
}

/// Splits `<PRI>Mmm dd hh:mm:ss l4lb[PID]: message` into (PRI, PID, message).
fn rfc3164(line: &str) -> (u32, u32, String) {
    let rest = line.strip_prefix('<').expect("starts with <PRI>");
    let (pri, rest) = rest.split_once('>').expect("<PRI>");
    // "Mmm dd hh:mm:ss " is 16 bytes; the day is space-padded or two digits.
    let (stamp, rest) = rest.split_at(16);
    assert!(
        stamp.as_bytes()[3] == b' ' && &stamp[9..10] == ":",
        "timestamp {stamp:?}"
    );
    let rest = rest.strip_prefix("l4lb[").expect("l4lb[PID]");
    let (pid, message) = rest.split_once("]: ").expect("]: ");
    (
        pri.parse().expect("PRI"),
        pid.parse().expect("PID"),
        message.to_string(),
    )
}

#[test]
fn text_lines_go_to_syslog_with_their_severity() {
    let dir = temp_dir("syslog-text");
    let path = dir.join("log.sock");
    let socket = UnixDatagram::bind(&path).expect("bind the syslog socket");
    let l4lb = start(&dir, &path, "text");
    let lines = lines_until(&socket, "backend down");
    let started = lines
        .iter()
        .find(|l| l.contains("l4lb started"))
        .expect("the start line");
    let (pri, pid, message) = rfc3164(started);
    assert_eq!(pri, 3 * 8 + 6, "daemon.info: {started}");
    assert_eq!(pid, l4lb.0.id());
    assert!(
        message.starts_with(" INFO l4lb: l4lb started"),
        "{message:?}"
    );
    let (pri, _, message) = rfc3164(lines.last().expect("a line"));
    assert_eq!(pri, 3 * 8 + 4, "daemon.warning: {message}");
    assert!(
        message.contains("WARN") && !message.contains('\x1b'),
        "{message}"
    );
    drop(l4lb);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn json_lines_go_to_syslog_as_json() {
    let dir = temp_dir("syslog-json");
    let path = dir.join("log.sock");
    let socket = UnixDatagram::bind(&path).expect("bind the syslog socket");
    let l4lb = start(&dir, &path, "json");
    let lines = lines_until(&socket, "l4lb started");
    let (pri, _, message) = rfc3164(lines.last().expect("a line"));
    assert_eq!(pri, 30);
    let event: serde_json::Value = serde_json::from_str(&message).expect("a JSON event");
    assert_eq!(event["level"], "INFO");
    assert_eq!(event["target"], "l4lb");
    assert_eq!(event["message"], "l4lb started");
    assert_eq!(event["services"], 1);
    assert!(event["timestamp"].is_string(), "{event}");
    drop(l4lb);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_missing_syslog_socket_is_named() {
    let out = Command::new(BIN)
        .args(["--log-target", "syslog", "check", "/nonexistent.toml"])
        .env("L4LB_SYSLOG_SOCKET", "/nonexistent/log.sock")
        .output()
        .expect("run l4lb");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with(
            "l4lb: --log-target syslog: cannot send to /nonexistent/log.sock: No such file or directory"
        ),
        "{stderr}"
    );
}
