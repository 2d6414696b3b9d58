//! The real binary under systemd's conventions. Socket activation: listening
//! sockets passed as descriptors 3, 4, … with `LISTEN_PID`, `LISTEN_FDS` and
//! `LISTEN_FDNAMES` — by `systemd-socket-activate` from the systemd package,
//! and by this test acting as systemd, including its file-descriptor store
//! across a restart. Upgrades by SIGUSR2: the successor the process starts
//! itself becomes the service's main process (`MAINPID=`).
//!
//! The sockets the test passes are bound without SO_REUSEPORT, so an l4lb that
//! bound its own socket instead of using the passed one could not start at all.

use std::io::{IoSliceMut, Read};
use std::mem::MaybeUninit;
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, recvmsg};

mod common;

use common::PATIENCE;
use common::binary::{
    BIN, admin_get, output_within_patience, signal, tag_server, tag_via, temp_dir, wait_for_tag,
};
use common::ports::free_port;

const ACTIVATE: &str = "/usr/bin/systemd-socket-activate";

/// A UDP backend that answers every datagram with `tag:` and the datagram.
fn udp_tag_server(tag: &'static str) -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("udp backend");
    let addr = socket.local_addr().expect("address");
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while let Ok((len, peer)) = socket.recv_from(&mut buf) {
            let mut reply = format!("{tag}:").into_bytes();
            reply.extend_from_slice(&buf[..len]);
            let _ = socket.send_to(&reply, peer);
        }
    });
    addr
}

/// Writes `dir/lb.toml`: `workers` workers, the admin endpoint on `admin`, and
/// one service per `(name, protocol, listen, backend)`.
fn write_config(
    dir: &Path,
    admin: u16,
    workers: usize,
    services: &[(&str, &str, SocketAddr, SocketAddr)],
) -> PathBuf {
    let control = dir.join("control.sock");
    let mut text = format!(
        "[global]\nshutdown_grace = \"2s\"\nworkers = {workers}\ncontrol_socket = \"{}\"\n\
         [admin]\nlisten = \"127.0.0.1:{admin}\"\n",
        control.display()
    );
    for (name, protocol, listen, backend) in services {
        text.push_str(&format!(
            "[[service]]\nname = \"{name}\"\nprotocol = \"{protocol}\"\nlisten = \"{listen}\"\n\
             [[service.backend]]\naddress = \"{backend}\"\n"
        ));
    }
    let path = dir.join("lb.toml");
    std::fs::write(&path, text).expect("config");
    path
}

/// Starts l4lb with `fds` as descriptors 3, 4, … and `LISTEN_PID` set to its
/// own pid, as systemd does (a shell sets `LISTEN_PID=$$` and execs l4lb, so
/// the pid is l4lb's).
fn spawn_with_fds(
    config: &Path,
    fds: &[RawFd],
    names: &str,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Child {
    let script = format!("LISTEN_PID=$$ exec \"$0\" run {} \"$1\"", extra.join(" "));
    let mut command = Command::new("/bin/sh");
    command
        .args(["-c", &script, BIN, config.to_str().expect("utf-8 path")])
        .env("LISTEN_FDS", fds.len().to_string())
        .env("LISTEN_FDNAMES", names)
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let fds = fds.to_vec();
    // SAFETY: between fork and exec only async-signal-safe calls (fcntl, dup2)
    // are made, on descriptors the parent keeps open for the whole call.
    unsafe {
        command.pre_exec(move || place_descriptors(&fds));
    }
    command.spawn().expect("spawn l4lb")
}

/// Moves `fds` to 3, 4, … without close-on-exec: first out of the way (to 100
/// and up, so no source is overwritten), then into place.
fn place_descriptors(fds: &[RawFd]) -> std::io::Result<()> {
    let mut moved = Vec::with_capacity(fds.len());
    for &fd in fds {
        // SAFETY: F_DUPFD_CLOEXEC on an open descriptor only creates a new one.
        let copy = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 100) };
        if copy < 0 {
            return Err(std::io::Error::last_os_error());
        }
        moved.push(copy);
    }
    for (target, copy) in (3..).zip(moved) {
        // SAFETY: dup2 onto a fixed number; the copies live at 100 and up.
        if unsafe { libc::dup2(copy, target) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// SIGTERM to the child, which must then exit 0; what it wrote to stderr.
fn stop(child: Child) -> String {
    signal(&child, "TERM");
    let output = output_within_patience(child, "l4lb");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(
        output.status.code(),
        Some(0),
        "l4lb did not stop cleanly: {stderr}"
    );
    stderr
}

fn udp_round_trip(to: SocketAddr, payload: &str) -> Option<String> {
    let socket = UdpSocket::bind("127.0.0.1:0").ok()?;
    socket
        .set_read_timeout(Some(Duration::from_millis(300)))
        .ok()?;
    socket.send_to(payload.as_bytes(), to).ok()?;
    let mut buf = [0u8; 1500];
    let len = socket.recv(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..len]).into_owned())
}

fn wait_for_udp(to: SocketAddr, payload: &str, expected: &str) {
    let deadline = Instant::now() + PATIENCE;
    while udp_round_trip(to, payload).as_deref() != Some(expected) {
        assert!(Instant::now() < deadline, "{to} never answered {expected}");
    }
}

#[test]
fn systemd_socket_activate_passes_a_listener_that_every_worker_serves() {
    if !Path::new(ACTIVATE).exists() {
        eprintln!("skipped: {ACTIVATE} (Debian package systemd) is not installed");
        return;
    }
    let dir = temp_dir("activation-activate");
    let listen: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let admin = free_port();
    let config = write_config(&dir, admin, 2, &[("pg", "tcp", listen, tag_server("pg"))]);
    let child = Command::new(ACTIVATE)
        .args(["-l", &listen.to_string(), "--fdname=pg", BIN, "run"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("systemd-socket-activate");
    // systemd-socket-activate binds, then starts l4lb on the first client.
    wait_for_tag(listen, "pg");
    for _ in 0..50 {
        assert_eq!(tag_via(listen).as_deref(), Some("pg"));
    }
    let status = admin_get(([127, 0, 0, 1], admin).into(), "/status").expect("admin answers");
    assert!(
        status.contains("\"systemd\""),
        "/status names the origin: {status}"
    );
    let stderr = stop(child);
    assert!(stderr.contains("passed by systemd"), "{stderr}");
}

#[test]
fn tcp_and_udp_sockets_passed_like_systemd_are_served_and_strays_are_named() {
    let dir = temp_dir("activation-harness");
    let tcp = TcpListener::bind("127.0.0.1:0").expect("tcp");
    let udp = UdpSocket::bind("127.0.0.1:0").expect("udp");
    let stray = UdpSocket::bind("127.0.0.1:0").expect("stray");
    let (tcp_addr, udp_addr) = (tcp.local_addr().expect("a"), udp.local_addr().expect("a"));
    let config = write_config(
        &dir,
        free_port(),
        2,
        &[
            ("pg", "tcp", tcp_addr, tag_server("pg")),
            ("dns", "udp", udp_addr, udp_tag_server("dns")),
        ],
    );
    let fds = [tcp.as_raw_fd(), udp.as_raw_fd(), stray.as_raw_fd()];
    let child = spawn_with_fds(&config, &fds, "pg:dns:stray", &[], &[]);
    wait_for_tag(tcp_addr, "pg");
    wait_for_udp(udp_addr, "ping", "dns:ping");
    for n in 0..20 {
        let payload = format!("q{n}");
        assert_eq!(
            udp_round_trip(udp_addr, &payload),
            Some(format!("dns:{payload}"))
        );
    }
    let stderr = stop(child);
    let stray_addr = stray.local_addr().expect("a").to_string();
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("name=stray") && l.contains(&stray_addr)),
        "every passed socket is logged with its name: {stderr}"
    );
    assert!(
        stderr.lines().any(|l| l.contains("WARN")
            && l.contains("not in the configuration")
            && l.contains(&stray_addr)),
        "a passed socket no service listens on is named in a warning: {stderr}"
    );
}

#[test]
fn a_passed_descriptor_l4lb_cannot_serve_stops_the_start_naming_it() {
    let dir = temp_dir("activation-bad");
    let listener = TcpListener::bind("127.0.0.1:0").expect("tcp");
    let connected = TcpStream::connect(listener.local_addr().expect("a")).expect("connect");
    let listen: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let pg = [("pg", "tcp", listen, tag_server("pg"))];
    let config = write_config(&dir, free_port(), 1, &pg);
    let child = spawn_with_fds(&config, &[connected.as_raw_fd()], "oops", &[], &[]);
    let output = output_within_patience(child, "l4lb");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("passed descriptor 3 (oops)") && stderr.contains("is not listening"),
        "{stderr}"
    );
    assert!(tag_via(listen).is_none(), "nothing was served");
}

/// systemd's side of the notify socket: every message, and every descriptor
/// sent with `FDSTORE=1`.
struct FakeSystemd {
    socket: UnixDatagram,
    path: PathBuf,
    stored: Vec<OwnedFd>,
    /// Every message received, in order.
    seen: Vec<String>,
}

impl FakeSystemd {
    fn new(dir: &Path) -> FakeSystemd {
        let path = dir.join("notify.sock");
        let socket = UnixDatagram::bind(&path).expect("notify socket");
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        FakeSystemd {
            socket,
            path,
            stored: Vec::new(),
            seen: Vec::new(),
        }
    }

    /// Reads messages until one has the line `wanted`, keeping stored descriptors.
    fn until(&mut self, wanted: &str) {
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            let mut buf = [0u8; 4096];
            let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(64))];
            let mut control = RecvAncillaryBuffer::new(&mut space);
            let mut iov = [IoSliceMut::new(&mut buf)];
            let Ok(msg) = recvmsg(&self.socket, &mut iov, &mut control, RecvFlags::empty()) else {
                continue;
            };
            let len = msg.bytes;
            let mut fds = Vec::new();
            for message in control.drain() {
                if let RecvAncillaryMessage::ScmRights(rights) = message {
                    fds.extend(rights);
                }
            }
            let text = String::from_utf8_lossy(&buf[..len]).into_owned();
            if text.lines().any(|l| l == "FDSTORE=1") {
                self.stored.extend(fds);
            }
            let done = text.lines().any(|l| l == wanted || l.starts_with(wanted));
            self.seen.push(text);
            if done {
                return;
            }
        }
        panic!("no {wanted} notification; saw {:?}", self.seen);
    }
}

#[test]
fn the_fd_store_keeps_listeners_across_a_restart_and_queued_clients_are_served() {
    let dir = temp_dir("activation-fdstore");
    let mut systemd = FakeSystemd::new(&dir);
    let notify = systemd.path.to_str().expect("utf-8").to_string();
    let listen: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let pg = [("pg", "tcp", listen, tag_server("pg"))];
    let config = write_config(&dir, free_port(), 2, &pg);

    let first = spawn_with_fds(
        &config,
        &[],
        "",
        &["--fd-store"],
        &[("NOTIFY_SOCKET", &notify)],
    );
    systemd.until("READY=1");
    wait_for_tag(listen, "pg");
    assert_eq!(systemd.stored.len(), 2, "one stored socket per worker");
    stop(first);

    // Between the two processes the stored sockets still queue clients.
    let mut waiting = TcpStream::connect_timeout(&listen, Duration::from_secs(2))
        .expect("the stored listener accepts into its queue while no l4lb runs");
    waiting.set_read_timeout(Some(PATIENCE)).expect("timeout");

    let fds: Vec<RawFd> = systemd.stored.iter().map(AsRawFd::as_raw_fd).collect();
    let second = spawn_with_fds(
        &config,
        &fds,
        "tcp-x:tcp-x",
        &["--fd-store"],
        &[("NOTIFY_SOCKET", &notify)],
    );
    let mut tag = String::new();
    waiting
        .read_to_string(&mut tag)
        .expect("the queued client is served");
    assert_eq!(tag.trim(), "pg");
    wait_for_tag(listen, "pg");
    stop(second);
}
