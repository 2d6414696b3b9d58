//! A real MariaDB (or MySQL) server for tests: `mariadb-install-db` into a
//! scratch directory, then `mariadbd` on a loopback port with the smallest
//! `max_connections` (10) so a test can fill it; killed at drop.

use std::net::SocketAddr;
use std::process::Command;

use super::ports::free_port;
use super::servers::{ChildServer, ScratchDir, find_binary, run, wait_for_tcp};

/// The fewest connections MariaDB accepts as `max_connections`.
pub const MAX_CONNECTIONS: usize = 10;

pub struct MariaDb {
    pub addr: SocketAddr,
    _process: ChildServer,
    _dir: ScratchDir,
}

impl MariaDb {
    /// `None` when MariaDB is not installed.
    pub async fn start() -> Option<MariaDb> {
        let install = find_binary("mariadb-install-db", &[])?;
        let server = find_binary("mariadbd", &[])?;
        let dir = ScratchDir::new("mariadb");
        let data = dir.path().join("data");
        run(Command::new(install)
            .arg(format!("--datadir={}", data.display()))
            .args([
                "--user=root",
                "--skip-test-db",
                "--auth-root-authentication-method=normal",
            ]));
        let port = free_port();
        let process = ChildServer::spawn(
            Command::new(server)
                .arg("--no-defaults")
                .arg(format!("--datadir={}", data.display()))
                .arg(format!("--socket={}", dir.path().join("sock").display()))
                .arg(format!("--pid-file={}", dir.path().join("pid").display()))
                .arg(format!(
                    "--log-error={}",
                    dir.path().join("err.log").display()
                ))
                .arg(format!("--port={port}"))
                .arg(format!("--max-connections={MAX_CONNECTIONS}"))
                .args([
                    "--bind-address=127.0.0.1",
                    "--user=root",
                    "--skip-grant-tables",
                ])
                .args(["--skip-name-resolve", "--connect-timeout=60"])
                .args(["--innodb-buffer-pool-size=8M", "--skip-log-bin"]),
        );
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        wait_for_tcp(addr).await;
        Some(MariaDb {
            addr,
            _process: process,
            _dir: dir,
        })
    }
}
