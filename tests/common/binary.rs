//! The real `l4lb` binary as a child process: started on a configuration
//! written to a temporary directory, waited for until its admin endpoint
//! answers, and killed (by its own pid) when dropped.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_l4lb");

/// A port on 127.0.0.1 that nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

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
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(self.admin).is_err() {
            let log = std::fs::read_to_string(self.dir.join("l4lb.log")).unwrap_or_default();
            assert!(
                Instant::now() < deadline,
                "l4lb's admin endpoint never answered:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RunningL4lb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
