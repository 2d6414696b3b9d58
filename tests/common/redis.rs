//! Real Redis servers for tests: `redis-server` on a loopback port with no
//! persistence, optionally a replica of another or with a password; killed at
//! drop.

use std::net::SocketAddr;
use std::process::Command;

use super::ports::free_port;
use super::servers::{ChildServer, ScratchDir, find_binary, wait_for_tcp};

pub struct Redis {
    pub addr: SocketAddr,
    _process: ChildServer,
    _dir: ScratchDir,
}

impl Redis {
    /// A server with `extra` arguments (e.g. `["--requirepass", "x"]`);
    /// `None` when Redis is not installed.
    pub async fn start(extra: &[String]) -> Option<Redis> {
        let binary = find_binary("redis-server", &[])?;
        let dir = ScratchDir::new("redis");
        let port = free_port();
        let process = ChildServer::spawn(
            Command::new(binary)
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no", "--dir"])
                .arg(dir.path())
                .args(extra),
        );
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        wait_for_tcp(addr).await;
        Some(Redis {
            addr,
            _process: process,
            _dir: dir,
        })
    }

    /// A replica of `master`.
    pub async fn replica_of(master: &Redis) -> Option<Redis> {
        let port = master.addr.port().to_string();
        Redis::start(&["--replicaof".into(), "127.0.0.1".into(), port]).await
    }
}
