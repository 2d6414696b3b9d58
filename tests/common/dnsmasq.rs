//! A real DNS server for tests: `dnsmasq` on a loopback UDP port, with no
//! upstream servers and no hosts file, answering only the names it is given
//! (every other query is REFUSED); killed at drop. [`Zone`] is one that serves
//! a hosts file the test rewrites (re-read on SIGHUP) and SRV records, and
//! answers NXDOMAIN for any other name under `.test`.

use std::net::SocketAddr;
use std::process::Command;

use super::servers::{ChildServer, find_binary};

pub struct Dnsmasq {
    pub addr: SocketAddr,
    _process: ChildServer,
}

impl Dnsmasq {
    /// Answers each of `names` with 127.0.0.9 on `port`; `None` when dnsmasq
    /// is not installed.
    pub async fn start(port: u16, names: &[&str]) -> Option<Dnsmasq> {
        let binary = find_binary("dnsmasq", &[])?;
        let mut command = Command::new(binary);
        command
            .args([
                "--no-daemon",
                "--conf-file=/dev/null",
                "--no-resolv",
                "--no-hosts",
            ])
            .args([
                "--listen-address=127.0.0.1",
                "--bind-interfaces",
                "--user=root",
            ])
            .arg(format!("--port={port}"))
            .arg(format!(
                "--pid-file={}",
                std::env::temp_dir()
                    .join(format!("l4lb-dnsmasq-{}-{port}.pid", std::process::id()))
                    .display()
            ));
        for name in names {
            command.arg(format!("--address=/{name}/127.0.0.9"));
        }
        let process = ChildServer::spawn(&mut command);
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        wait_for_udp_answer(addr).await;
        Some(Dnsmasq {
            addr,
            _process: process,
        })
    }
}

/// dnsmasq serving `hosts` (re-read on [`Zone::reload`]) with TTL 0, the SRV
/// records in `srv` (`--srv-host` values), and NXDOMAIN for other `.test` names.
pub struct Zone {
    pub addr: SocketAddr,
    pub hosts: std::path::PathBuf,
    process: ChildServer,
    _dir: super::servers::ScratchDir,
}

impl Zone {
    /// Starts dnsmasq with `hosts` (lines of a hosts file); panics when it is
    /// not installed (`scripts/test.sh` installs it).
    pub async fn start(hosts: &str, srv: &[String]) -> Zone {
        let binary = find_binary("dnsmasq", &[]).expect("dnsmasq (scripts/test.sh installs it)");
        let dir = super::servers::ScratchDir::new("zone");
        let hosts_path = dir.path().join("hosts");
        std::fs::write(&hosts_path, hosts).expect("write hosts file");
        let port = super::ports::free_port();
        let mut command = Command::new(binary);
        command
            .args([
                "--no-daemon",
                "--conf-file=/dev/null",
                "--no-resolv",
                "--no-hosts",
            ])
            .args([
                "--listen-address=127.0.0.1",
                "--bind-interfaces",
                "--user=root",
            ])
            .args(["--local=/test/", "--local-ttl=0", "--no-negcache"])
            .arg(format!("--addn-hosts={}", hosts_path.display()))
            .arg(format!("--port={port}"))
            .arg(format!("--pid-file={}", dir.path().join("pid").display()));
        for record in srv {
            command.arg(format!("--srv-host={record}"));
        }
        let process = ChildServer::spawn(&mut command);
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        wait_for_udp_answer(addr).await;
        Zone {
            addr,
            hosts: hosts_path,
            process,
            _dir: dir,
        }
    }

    /// Rewrites the hosts file and has dnsmasq read it again (SIGHUP).
    pub fn set_hosts(&self, hosts: &str) {
        std::fs::write(&self.hosts, hosts).expect("rewrite hosts file");
        let pid = self.process.id() as i32;
        // SAFETY: kill(2) on a child process this zone started and still owns.
        let sent = unsafe { libc::kill(pid, libc::SIGHUP) };
        assert_eq!(sent, 0, "SIGHUP to dnsmasq");
    }
}

/// A DNS query for `name` (type A, ID 0x1234), as bytes.
pub fn query(name: &str) -> Vec<u8> {
    let mut message = vec![0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.') {
        message.push(label.len() as u8);
        message.extend_from_slice(label.as_bytes());
    }
    message.extend_from_slice(&[0, 0, 1, 0, 1]);
    message
}

/// Waits (bounded) until the server answers a query.
async fn wait_for_udp_answer(addr: SocketAddr) {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    socket.connect(addr).await.expect("connect");
    let mut reply = [0u8; 512];
    for _ in 0..200 {
        let _ = socket.send(&query("probe.test")).await;
        let answer = tokio::time::timeout(
            std::time::Duration::from_millis(100),
            socket.recv(&mut reply),
        );
        if matches!(answer.await, Ok(Ok(_))) {
            return;
        }
        // Before it listens, the refusal comes back at once: pace the retries.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("dnsmasq on {addr} never answered");
}
