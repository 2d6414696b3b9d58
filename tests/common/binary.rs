//! The real `l4lb` binary as a child process: started on a configuration
//! written to a temporary directory, waited for until its admin endpoint
//! answers, and killed (by its own pid) when dropped. Also the blocking helpers
//! the tests of the binary share: running it to its end within [`PATIENCE`],
//! signalling it and waiting for its exit code, reading its sd_notify
//! datagrams, and a backend that tags what it serves, to see through l4lb.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::PATIENCE;

pub const BIN: &str = env!("CARGO_BIN_EXE_l4lb");

use super::ports::free_port;

/// A fresh directory for one test's files.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("l4lb-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// A running `l4lb run`.
pub struct RunningL4lb {
    pub child: Child,
    pub admin: SocketAddr,
    pub dir: PathBuf,
}

impl RunningL4lb {
    /// Runs `l4lb run` on `body` preceded by an `[admin]` table on a free port
    /// (with `token` when not empty); returns once `/healthz` answers.
    pub fn start(name: &str, body: &str, token: &str) -> RunningL4lb {
        let dir = temp_dir(name);
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let control = dir.join("control.sock");
        let config = dir.join("lb.toml");
        let toml = format!(
            "[admin]\nlisten = \"{admin}\"\ntoken = \"{token}\"\n[global]\ncontrol_socket = \"{}\"\n\
             shutdown_grace = \"1s\"\n{body}",
            control.display()
        );
        std::fs::write(&config, toml).expect("write config");
        let log = std::fs::File::create(dir.join("l4lb.log")).expect("log file");
        let child = Command::new(BIN)
            .arg("run")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn l4lb");
        let running = RunningL4lb { child, admin, dir };
        running.wait_for_admin();
        running
    }

    fn wait_for_admin(&self) {
        let deadline = Instant::now() + PATIENCE;
        while admin_get(self.admin, "/healthz").is_none() {
            let log = std::fs::read_to_string(self.dir.join("l4lb.log")).unwrap_or_default();
            assert!(
                Instant::now() < deadline,
                "l4lb's admin endpoint never answered:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// `GET path` on `admin` over a fresh connection (5 s to answer): the body when
/// the status is 200. Readiness asks `/healthz` this way, not whether a connect
/// succeeds: the answer proves it is l4lb, and that it serves.
pub fn admin_get(admin: SocketAddr, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(admin).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: l4lb\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_string())
}

impl Drop for RunningL4lb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Sends the signal `name` (`TERM`, `HUP`, ...) to `child`, which must work.
pub fn signal(child: &Child, name: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .expect("kill")
        .success();
    assert!(ok, "kill -{name}");
}

/// The exit code of `child` (-1 when a signal ended it); fails the test when
/// it has not exited within [`PATIENCE`].
pub fn wait_exit(child: &mut Child) -> i32 {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status.code().unwrap_or(-1);
        }
        assert!(
            Instant::now() < deadline,
            "l4lb {} did not exit",
            child.id()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Reads all of `pipe` on its own thread (so a full pipe never stalls the child).
fn drain(pipe: Option<impl Read + Send + 'static>) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes);
        }
        bytes
    })
}

/// What `child` wrote to its piped stdout and stderr (empty where not piped)
/// once it has exited; kills it and fails the test, naming it `what`, when it
/// has not exited within [`PATIENCE`].
pub fn output_within_patience(mut child: Child, what: &str) -> Output {
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let deadline = Instant::now() + PATIENCE;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not exit within {PATIENCE:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

/// Runs `l4lb args` with `env` added to its environment, to its end, like
/// [`output_within_patience`].
pub fn l4lb_within_patience(args: &[&str], env: &[(&str, &str)]) -> Output {
    let child = Command::new(BIN)
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn l4lb");
    output_within_patience(child, &format!("l4lb {args:?}"))
}

/// Datagrams from the notify `socket` (which has a read timeout) until one
/// has the line `wanted`; every one seen. Fails the test past [`PATIENCE`].
pub fn notifications_until(socket: &UnixDatagram, wanted: &str) -> Vec<String> {
    notifications_until_match(socket, wanted, |text| text.lines().any(|l| l == wanted))
}

/// Datagrams from the notify `socket` until one satisfies `done`; every one
/// seen. Fails the test past [`PATIENCE`], naming the notification `what`.
pub fn notifications_until_match(
    socket: &UnixDatagram,
    what: &str,
    done: impl Fn(&str) -> bool,
) -> Vec<String> {
    let mut seen = Vec::new();
    let deadline = Instant::now() + PATIENCE;
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        if let Ok(len) = socket.recv(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..len]).into_owned();
            let finished = done(&text);
            seen.push(text);
            if finished {
                return seen;
            }
        }
    }
    panic!("no {what} notification; saw {seen:?}");
}

/// A backend that writes `tag` and a newline to every client, then closes.
pub fn tag_server(tag: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("backend");
    let addr = listener.local_addr().expect("address");
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let _ = stream.write_all(format!("{tag}\n").as_bytes());
        }
    });
    addr
}

/// Connects and reads the backend's tag; `None` when the connection fails.
pub fn tag_via(addr: SocketAddr) -> Option<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(PATIENCE)).ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    Some(text.trim().to_string()).filter(|t| !t.is_empty())
}

/// Waits until a connection to `addr` is served by the backend tagged `tag`.
pub fn wait_for_tag(addr: SocketAddr, tag: &str) {
    let deadline = Instant::now() + PATIENCE;
    while tag_via(addr).as_deref() != Some(tag) {
        assert!(Instant::now() < deadline, "{addr} never served by {tag}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
