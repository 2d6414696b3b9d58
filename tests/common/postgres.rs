//! A real PostgreSQL server for tests: `initdb` into a scratch directory (as
//! the `postgres` user when running as root), started with `pg_ctl` on a
//! loopback port with trust authentication, stopped at drop.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;

use super::ports::free_port;
use super::servers::{ScratchDir, find_binary, run, wait_for_tcp};

const BIN_DIRS: &[&str] = &[
    "/usr/lib/postgresql/17/bin",
    "/usr/lib/postgresql/16/bin",
    "/usr/lib/postgresql/15/bin",
];

pub struct Postgres {
    pub addr: SocketAddr,
    bin: PathBuf,
    data: PathBuf,
    _dir: ScratchDir,
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

impl Postgres {
    /// A new cluster, started; `None` when PostgreSQL is not installed.
    pub async fn start() -> Option<Postgres> {
        let initdb = find_binary("initdb", BIN_DIRS)?;
        let bin = initdb.parent()?.to_path_buf();
        let dir = ScratchDir::new("pg");
        let data = dir.path().join("data");
        if running_as_root() {
            run(Command::new("chown").arg("postgres").arg(dir.path()));
        }
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let server = Postgres {
            addr,
            bin,
            data,
            _dir: dir,
        };
        run(server
            .command("initdb")
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"])
            .arg(&server.data));
        server.start_again().await;
        Some(server)
    }

    /// `name` from the PostgreSQL binaries, run as `postgres` when we are root.
    fn command(&self, name: &str) -> Command {
        let program = self.bin.join(name);
        if running_as_root() {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(program);
            command
        } else {
            Command::new(program)
        }
    }

    /// Starts the server (after `stop`), waiting until it listens.
    pub async fn start_again(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.addr.port(),
            self.data.display()
        );
        let log = self.data.join("server.log");
        run(self
            .command("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(["-o", &options, "-l"])
            .arg(log)
            .args(["-w", "-t", "20", "start"]));
        wait_for_tcp(self.addr).await;
    }

    /// `pg_ctl stop -m MODE` without waiting for the shutdown to finish.
    pub fn begin_stop(&self, mode: &str) {
        run(self
            .command("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(["-m", mode, "-W", "stop"]));
    }

    /// Stops, waiting until it is down.
    pub fn stop(&self) {
        run(self
            .command("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "fast", "-w", "-t", "20", "stop"]));
    }

    /// Makes the next start a standby (in recovery, read-only).
    pub fn become_standby(&self) {
        std::fs::write(self.data.join("standby.signal"), b"").expect("standby.signal");
    }

    /// A logged-in session (as `postgres`), kept open while the returned task runs.
    pub async fn session(&self) -> (tokio_postgres::Client, tokio::task::JoinHandle<()>) {
        let url = format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres",
            self.addr.port()
        );
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .expect("open a session");
        let task = tokio::spawn(async move {
            let _ = connection.await;
        });
        (client, task)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "-w", "-t", "20", "stop"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}
