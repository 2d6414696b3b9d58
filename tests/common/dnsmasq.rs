//! A real DNS server for tests: `dnsmasq` on a loopback UDP port, with no
//! upstream servers and no hosts file, answering only the names it is given
//! (every other query is REFUSED); killed at drop.

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
