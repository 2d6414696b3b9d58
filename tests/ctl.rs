//! `l4lb status` and `l4lb backend` against the real binary's admin endpoint:
//! the table, `--json`, `--watch`, the runtime-API actions with the token from
//! a file or the environment, and the errors (unreachable endpoint, 401, 404).

mod common;

use std::net::SocketAddr;
use std::process::{Command, Output};

use common::binary::{BIN, RunningL4lb};
use common::ports::free_port;
use common::{Behaviour, TestBackend, get_ok, wait_until_async};

fn l4lb(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("L4LB_TOKEN")
        .env_remove("L4LB_ADMIN")
        .envs(env.iter().copied())
        .output()
        .expect("run l4lb")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn config(backends: &[SocketAddr]) -> String {
    let mut toml = String::from(
        "[[service]]\nname = \"pg\"\nlisten = \"127.0.0.1:0\"\n\
         [service.health]\ninterval = \"200ms\"\ntimeout = \"100ms\"\nrise = 1\nfall = 1\n",
    );
    for addr in backends {
        toml.push_str(&format!("[[service.backend]]\naddress = \"{addr}\"\n"));
    }
    toml
}

async fn state_of(admin: SocketAddr, backend: SocketAddr) -> String {
    let status: serde_json::Value =
        serde_json::from_str(&get_ok(admin, "/status").await).expect("JSON");
    status["services"][0]["backends"]
        .as_array()
        .expect("backends")
        .iter()
        .find(|b| b["address"] == backend.to_string())
        .and_then(|b| b["state"].as_str())
        .expect("backend listed")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_prints_a_table_json_and_watches() {
    let a = TestBackend::start("a", Behaviour::Echo).await;
    let dead = common::refusing_addrs::<1>().await[0];
    let running = RunningL4lb::start("ctl-status", &config(&[a.addr, dead]), "");
    let admin = running.admin.to_string();
    wait_until_async("dead backend down", || async {
        state_of(running.admin, dead).await == "down"
    })
    .await;

    let out = l4lb(&["status", "--admin", &admin], &[]);
    let table = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(table.starts_with("l4lb 0.1.0 · up "), "{table}");
    assert!(table.contains("service pg · tcp 127.0.0.1:"), "{table}");
    assert!(table.contains("· 1/2 backends up"), "{table}");
    let row = |addr: SocketAddr| {
        table
            .lines()
            .find(|l| l.trim_start().starts_with(&addr.to_string()))
            .unwrap_or_else(|| panic!("no row for {addr}:\n{table}"))
            .split_whitespace()
            .nth(1)
            .map(str::to_owned)
    };
    assert_eq!(row(a.addr).as_deref(), Some("up"), "{table}");
    assert_eq!(row(dead).as_deref(), Some("down"), "{table}");
    assert!(table.contains("Connection refused"), "{table}");
    assert!(!table.contains('\x1b'), "no colour into a pipe: {table}");

    let out = l4lb(&["status", "--json"], &[("L4LB_ADMIN", admin.as_str())]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("--json is JSON");
    assert_eq!(json["services"][0]["name"], "pg");
    assert_eq!(json["services"][0]["backends"][1]["state"], "down");

    let out = l4lb(
        &["status", "--admin", &admin, "--watch", "--count", "2"],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).matches("service pg ·").count(), 2);
}

#[test]
fn status_names_an_admin_address_nobody_listens_on() {
    let admin = format!("127.0.0.1:{}", free_port());
    let out = l4lb(&["status", "--admin", &admin], &[]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with(&format!(
            "l4lb status: cannot reach the admin endpoint at {admin}: "
        )),
        "{stderr}"
    );
    assert!(stderr.contains("Connection refused"), "{stderr}");
    assert!(out.stdout.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_drains_and_readies_with_the_token() {
    let a = TestBackend::start("a", Behaviour::Echo).await;
    let b = TestBackend::start("b", Behaviour::Echo).await;
    let running = RunningL4lb::start("ctl-backend", &config(&[a.addr, b.addr]), "s3cret");
    let admin = running.admin.to_string();
    let token_file = running.dir.join("token");
    std::fs::write(&token_file, "s3cret\n").expect("token file");
    let token_file = token_file.to_str().expect("utf-8 path");
    let addr = a.addr.to_string();

    let out = l4lb(&["backend", "drain", "pg", &addr, "--admin", &admin], &[]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with(&format!(
            "l4lb backend drain: admin endpoint {admin} answered 401: missing or wrong bearer token"
        )),
        "{stderr}"
    );
    assert_eq!(state_of(running.admin, a.addr).await, "up");

    let out = l4lb(
        &[
            "backend",
            "drain",
            "pg",
            &addr,
            "--admin",
            &admin,
            "--token-file",
            token_file,
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), format!("pg {addr}: up -> draining\n"));
    assert_eq!(state_of(running.admin, a.addr).await, "draining");

    let env = [("L4LB_TOKEN", "s3cret"), ("L4LB_ADMIN", admin.as_str())];
    let out = l4lb(&["backend", "maint", "pg", &addr], &env);
    assert_eq!(text(&out.stdout), format!("pg {addr}: draining -> maint\n"));
    let out = l4lb(&["backend", "ready", "pg", &addr], &env);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), format!("pg {addr}: maint -> up\n"));
    assert_eq!(state_of(running.admin, a.addr).await, "up");

    let out = l4lb(&["backend", "drain", "nope", &addr], &env);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert_eq!(
        stderr,
        format!("l4lb backend drain: admin endpoint {admin} answered 404: no service \"nope\"\n")
    );
    let out = l4lb(&["backend", "drain", "pg", "10.9.9.9:1"], &env);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("answered 404: "),
        "{}",
        text(&out.stderr)
    );
    drop(b);
}

#[test]
fn backend_refuses_a_missing_token_file_and_an_unknown_action() {
    let out = l4lb(
        &[
            "backend",
            "drain",
            "pg",
            "127.0.0.1:1",
            "--token-file",
            "/nonexistent/token",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with("l4lb backend drain: --token-file /nonexistent/token: No such file"),
        "{stderr}"
    );
    let out = l4lb(&["backend", "pause", "pg", "127.0.0.1:1"], &[]);
    assert_eq!(out.status.code(), Some(2), "clap's usage error");
    assert!(
        text(&out.stderr).contains("invalid value 'pause'"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_ends_on_ctrl_c_with_exit_code_0() {
    use std::io::{BufRead, BufReader};
    let a = TestBackend::start("a", Behaviour::Echo).await;
    let running = RunningL4lb::start("ctl-watch", &config(&[a.addr]), "");
    let mut watch = Command::new(BIN)
        .args(["status", "--watch", "--admin", &running.admin.to_string()])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn l4lb status --watch");
    let mut lines = BufReader::new(watch.stdout.take().expect("stdout")).lines();
    let first = lines.next().expect("a line").expect("read");
    assert!(first.starts_with("l4lb 0.1.0 · up "), "{first}");
    let sent = Command::new("kill")
        .args(["-INT", &watch.id().to_string()])
        .status()
        .expect("kill");
    assert!(sent.success());
    let deadline = std::time::Instant::now() + common::PATIENCE;
    let status = loop {
        if let Some(status) = watch.try_wait().expect("wait") {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "--watch kept running after SIGINT"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0), "{status}");
}
