//! The real binary under a process supervisor's eyes: sd_notify messages on a
//! real NOTIFY_SOCKET, SIGHUP reloads, two processes sharing one address
//! (SO_REUSEPORT) for a binary upgrade, and the admin address that two
//! processes never share.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::PATIENCE;
use common::binary::{
    BIN, notifications_until, signal, tag_server, tag_via, temp_dir, wait_exit, wait_for_tag,
};
use common::ports::free_port;

fn service_config(listen: SocketAddr, backend: SocketAddr) -> String {
    format!(
        "[global]\nshutdown_grace = \"5s\"\n[[service]]\nname = \"svc\"\nlisten = \"{listen}\"\n\
         [[service.backend]]\naddress = \"{backend}\"\n"
    )
}

/// Writes `dir/lb.toml`: the admin endpoint on `admin`, then [`service_config`].
fn config_with_admin(
    dir: &Path,
    admin: SocketAddr,
    listen: SocketAddr,
    backend: SocketAddr,
) -> PathBuf {
    let config = dir.join("lb.toml");
    let text = format!(
        "[admin]\nlisten = \"{admin}\"\n{}",
        service_config(listen, backend)
    );
    std::fs::write(&config, text).expect("config");
    config
}

/// SIGTERM to `child`, which must then exit 0.
fn stop(child: &mut Child) {
    signal(child, "TERM");
    assert_eq!(wait_exit(child), 0);
}

fn spawn(config: &Path, env: &[(&str, &str)]) -> Child {
    Command::new(BIN)
        .args(["run", config.to_str().expect("utf-8 path")])
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn l4lb")
}

#[test]
fn sd_notify_ready_reloading_watchdog_and_stopping_on_a_real_socket() {
    let dir = temp_dir("process-notify");
    let socket_path = dir.join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("notify socket");
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let listen: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let config = dir.join("lb.toml");
    std::fs::write(&config, service_config(listen, tag_server("a"))).expect("config");
    let notify = socket_path.to_str().expect("utf-8 path");
    let mut child = spawn(
        &config,
        &[("NOTIFY_SOCKET", notify), ("WATCHDOG_USEC", "200000")],
    );

    let ready = notifications_until(&socket, "READY=1");
    assert!(ready.iter().any(|m| m.contains("STATUS=")), "{ready:?}");
    notifications_until(&socket, "WATCHDOG=1");
    signal(&child, "HUP");
    let reload = notifications_until(&socket, "RELOADING=1");
    let message = reload.last().expect("reloading message");
    let usec = message
        .lines()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .and_then(|v| v.parse::<u64>().ok());
    assert!(usec.is_some_and(|v| v > 0), "{message}");
    notifications_until(&socket, "READY=1");
    signal(&child, "TERM");
    notifications_until(&socket, "STOPPING=1");
    assert_eq!(wait_exit(&mut child), 0);
}

#[test]
fn sighup_applies_the_edited_file_and_keeps_serving_on_a_broken_one() {
    let dir = temp_dir("process-hup");
    let listen: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let config = dir.join("lb.toml");
    std::fs::write(&config, service_config(listen, tag_server("old"))).expect("config");
    let mut child = spawn(&config, &[]);
    wait_for_tag(listen, "old");

    std::fs::write(&config, service_config(listen, tag_server("new"))).expect("edit");
    signal(&child, "HUP");
    wait_for_tag(listen, "new");

    std::fs::write(&config, "[[service]]\nname = broken").expect("break the file");
    signal(&child, "HUP");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        tag_via(listen).as_deref(),
        Some("new"),
        "the old config keeps serving"
    );
    stop(&mut child);
}

#[test]
fn a_second_process_takes_over_the_same_address_while_the_first_drains() {
    let dir = temp_dir("process-upgrade");
    let listen: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let old_config = dir.join("old.toml");
    let new_config = dir.join("new.toml");
    std::fs::write(&old_config, service_config(listen, tag_server("old"))).expect("config");
    std::fs::write(&new_config, service_config(listen, tag_server("new"))).expect("config");
    let mut old = spawn(&old_config, &[]);
    wait_for_tag(listen, "old");

    let mut new = spawn(&new_config, &[]);
    wait_for_tag(listen, "new");
    stop(&mut old);
    for _ in 0..20 {
        assert_eq!(tag_via(listen).as_deref(), Some("new"));
    }
    stop(&mut new);
}

/// Kills the child it holds when dropped, so a test that fails while l4lb is
/// stuck leaves nothing running.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `GET path` on the admin endpoint; `None` when it does not answer within a second.
fn admin_get(admin: SocketAddr, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect_timeout(&admin, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: l4lb\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply).ok()?;
    Some(reply)
}

fn make_fifo(path: &Path) {
    let _ = std::fs::remove_file(path);
    let ok = Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("mkfifo")
        .success();
    assert!(ok, "mkfifo {}", path.display());
}

#[test]
fn sighup_on_a_fifo_refuses_the_reload_and_the_admin_endpoint_keeps_answering() {
    let dir = temp_dir("process-fifo");
    let listen: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let admin: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let config = config_with_admin(&dir, admin, listen, tag_server("old"));
    let mut child = KillOnDrop(spawn(&config, &[]));
    wait_for_tag(listen, "old");

    make_fifo(&config);
    signal(&child.0, "HUP");
    let failed_reload = "l4lb_config_reloads_total{result=\"failure\"} 1";
    let deadline = Instant::now() + PATIENCE;
    loop {
        let metrics = admin_get(admin, "/metrics");
        if metrics
            .as_deref()
            .is_some_and(|m| m.contains(failed_reload))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the reload was never refused; last /metrics answer: {metrics:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(tag_via(listen).as_deref(), Some("old"));
    stop(&mut child.0);
}

/// The status code of `GET path` on the admin endpoint; `None` when it does not answer.
fn admin_status(admin: SocketAddr, path: &str) -> Option<u16> {
    admin_get(admin, path)?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[test]
fn a_second_process_on_the_same_admin_address_refuses_to_start() {
    let dir = temp_dir("process-admin-exclusive");
    let listen: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let admin: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let config = config_with_admin(&dir, admin, listen, tag_server("first"));
    let mut first = KillOnDrop(spawn(&config, &[]));
    wait_for_tag(listen, "first");
    let deadline = Instant::now() + PATIENCE;
    while admin_status(admin, "/healthz") != Some(200) {
        assert!(Instant::now() < deadline, "the first l4lb never answered");
        std::thread::sleep(Duration::from_millis(20));
    }

    // A copy of the file: a second `run` of the very same file would upgrade
    // from the first instead (see tests/upgrade.rs).
    let copy = dir.join("copy.toml");
    std::fs::copy(&config, &copy).expect("copy");
    let log = dir.join("second.log");
    let second = Command::new(BIN)
        .args(["run", copy.to_str().expect("utf-8 path")])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("spawn the second l4lb");
    let mut second = KillOnDrop(second);
    assert_eq!(
        wait_exit(&mut second.0),
        1,
        "the second l4lb must not start"
    );
    let stderr = std::fs::read_to_string(&log).expect("second log");
    assert!(
        stderr.contains(&format!("admin: cannot listen on {admin}")),
        "the error names the admin address: {stderr}"
    );
    assert!(stderr.contains("in use"), "and says why: {stderr}");

    for _ in 0..20 {
        assert_eq!(admin_status(admin, "/status"), Some(200));
        assert_eq!(tag_via(listen).as_deref(), Some("first"));
    }
    stop(&mut first.0);
}
