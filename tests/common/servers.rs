//! Starting real server programs (PostgreSQL, Redis, MariaDB, dnsmasq) for
//! tests: finding their binaries, a child process killed when dropped, a
//! scratch directory removed when dropped, and a bounded wait for a port.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::PATIENCE;

/// `name` as found on `PATH` or in `extra` directories; `None` (and a note on
/// stderr saying the test is skipped) when it is not installed.
pub fn find_binary(name: &str, extra: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .chain(extra.iter().map(PathBuf::from))
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file());
    if found.is_none() {
        eprintln!("SKIPPED: {name} is not installed (scripts/test.sh installs it)");
    }
    found
}

/// A server process, killed and reaped when dropped.
pub struct ChildServer {
    child: Child,
}

impl ChildServer {
    pub fn spawn(command: &mut Command) -> ChildServer {
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {command:?}: {e}"));
        ChildServer { child }
    }

    /// The process id (to send it signals).
    pub fn id(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fresh directory under the temp dir, removed with everything in it when dropped.
pub struct ScratchDir(pub PathBuf);

impl ScratchDir {
    pub fn new(what: &str) -> ScratchDir {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("l4lb-{what}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        ScratchDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `command` to completion (bounded by `PATIENCE`), panicking with its
/// output when it fails.
pub fn run(command: &mut Command) {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {command:?}: {e}"));
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        match child.try_wait().expect("wait") {
            Some(status) if status.success() => return,
            Some(status) => {
                let output = child.wait_with_output().expect("output");
                panic!(
                    "{command:?} failed ({status}): {}{}",
                    String::from_utf8_lossy(&output.stdout),
                    String::from_utf8_lossy(&output.stderr)
                );
            }
            None if std::time::Instant::now() > deadline => {
                let _ = child.kill();
                panic!("{command:?} did not finish within {PATIENCE:?}");
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Waits (bounded by `PATIENCE`) until a TCP connect to `addr` succeeds.
pub async fn wait_for_tcp(addr: SocketAddr) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "nothing listened on {addr} within {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
