//! Three network namespaces made by a test and removed (by name) when it ends,
//! even when it fails: clients, l4lb in the middle, backends behind it.
//!
//! ```text
//!  clients ns            l4lb ns                     backends ns
//!  10.77.1.10-59 ─ c0 ── l0 10.77.1.1   l1 10.77.2.1 ── b0 10.77.2.2
//!  fd77:1::10-..         fd77:1::1      fd77:2::1          fd77:2::2
//!                                       10.77.2.9          default via l4lb
//! ```
//!
//! The backends' only route to the clients is through the l4lb namespace, as
//! on a real network where l4lb is the backends' gateway. Every name starts
//! with `l4tp`. Sockets are made in a namespace by a thread that joined it
//! (`setns` changes the calling thread's network namespace only).

use std::fs::File;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};

/// Number of IPv4 client addresses, 10.77.1.10 and up.
pub const CLIENTS_V4: u8 = 50;
/// Number of IPv6 client addresses, fd77:1::10 and up.
pub const CLIENTS_V6: u16 = 10;
pub const LB_CLIENT_SIDE_V4: Ipv4Addr = Ipv4Addr::new(10, 77, 1, 1);
pub const LB_CLIENT_SIDE_V6: Ipv6Addr = Ipv6Addr::new(0xfd77, 1, 0, 0, 0, 0, 0, 1);
/// l4lb's own address towards the backends (where health probes come from).
pub const LB_BACKEND_SIDE_V4: Ipv4Addr = Ipv4Addr::new(10, 77, 2, 1);
/// A second address of l4lb towards the backends, for `source = "IP"`.
pub const LB_SECOND_V4: Ipv4Addr = Ipv4Addr::new(10, 77, 2, 9);
pub const BACKEND_V4: Ipv4Addr = Ipv4Addr::new(10, 77, 2, 2);
pub const BACKEND_V6: Ipv6Addr = Ipv6Addr::new(0xfd77, 2, 0, 0, 0, 0, 0, 2);

pub fn client_v4(i: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 77, 1, 10 + i))
}

pub fn client_v6(i: u16) -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(0xfd77, 1, 0, 0, 0, 0, 0, 0x10 + i))
}

/// The three namespaces; dropping it deletes them.
pub struct Lab {
    pub clients: String,
    pub lb: String,
    pub backends: String,
}

impl Lab {
    /// Builds the namespaces for test `tag`; `Err` when namespaces cannot be
    /// created here (not root), with the reason.
    pub fn build(tag: &str) -> Result<Lab, String> {
        let prefix = format!("l4tp{}{tag}", std::process::id());
        let lab = Lab {
            clients: format!("{prefix}-c"),
            lb: format!("{prefix}-l"),
            backends: format!("{prefix}-b"),
        };
        lab.remove();
        for ns in lab.names() {
            let out = Command::new("ip").args(["netns", "add", ns]).output();
            match out {
                Ok(out) if out.status.success() => {}
                Ok(out) => return Err(String::from_utf8_lossy(&out.stderr).trim().to_string()),
                Err(e) => return Err(format!("cannot run ip: {e}")),
            }
        }
        lab.wire();
        Ok(lab)
    }

    fn names(&self) -> [&str; 3] {
        [&self.clients, &self.lb, &self.backends]
    }

    fn remove(&self) {
        for ns in self.names() {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
    }

    /// Links, addresses and routes (see the module doc).
    fn wire(&self) {
        let (c, l, b) = (&self.clients, &self.lb, &self.backends);
        for ns in self.names() {
            // No duplicate address detection: addresses are usable at once.
            self.batch(ns, &["link set lo up"]);
            sysctl(ns, "net.ipv6.conf.all.accept_dad=0");
            sysctl(ns, "net.ipv6.conf.default.accept_dad=0");
        }
        self.batch(
            l,
            &[&format!("link add l0 type veth peer name c0 netns {c}")],
        );
        self.batch(
            l,
            &[&format!("link add l1 type veth peer name b0 netns {b}")],
        );
        self.batch(
            l,
            &[
                "addr add 10.77.1.1/24 dev l0",
                "addr add fd77:1::1/64 dev l0 nodad",
                "addr add 10.77.2.1/24 dev l1",
                "addr add 10.77.2.9/24 dev l1",
                "addr add fd77:2::1/64 dev l1 nodad",
                "link set l0 up",
                "link set l1 up",
            ],
        );
        self.batch(
            b,
            &[
                "addr add 10.77.2.2/24 dev b0",
                "addr add fd77:2::2/64 dev b0 nodad",
                "link set b0 up",
                "route add default via 10.77.2.1",
                "route add default via fd77:2::1",
            ],
        );
        let mut client_lines = vec!["link set c0 up".to_string()];
        client_lines
            .extend((0..CLIENTS_V4).map(|i| format!("addr add {}/24 dev c0", client_v4(i))));
        client_lines
            .extend((0..CLIENTS_V6).map(|i| format!("addr add {}/64 dev c0 nodad", client_v6(i))));
        let lines: Vec<&str> = client_lines.iter().map(String::as_str).collect();
        self.batch(c, &lines);
    }

    /// Runs `ip -batch` in namespace `ns`; panics on any failing line.
    pub fn batch(&self, ns: &str, lines: &[&str]) {
        let mut child = Command::new("ip")
            .args(["-n", ns, "-batch", "-"])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run ip -batch");
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(lines.join("\n").as_bytes())
            .expect("write batch");
        drop(stdin);
        let out = child.wait_with_output().expect("ip -batch");
        assert!(
            out.status.success(),
            "ip -n {ns} -batch failed: {}\n{lines:#?}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Runs `program args` inside namespace `ns` and returns its stdout; panics
    /// when it fails.
    pub fn run(&self, ns: &str, program: &str, args: &[&str]) -> String {
        let out = Command::new("ip")
            .args(["netns", "exec", ns, program])
            .args(args)
            .output()
            .expect("ip netns exec");
        assert!(
            out.status.success(),
            "{program} {args:?} in {ns} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.remove();
    }
}

fn sysctl(ns: &str, setting: &str) {
    let ok = Command::new("ip")
        .args(["netns", "exec", ns, "sysctl", "-q", "-w", setting])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "sysctl {setting} in {ns}");
}

/// Moves the calling thread into network namespace `ns` (sockets it makes
/// from now on belong there).
pub fn enter(ns: &str) {
    let file = File::open(format!("/run/netns/{ns}")).expect("open the namespace");
    // SAFETY: a valid descriptor of a network namespace, for this thread only.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns {ns}: {}", std::io::Error::last_os_error());
}

/// Runs `work` on a new thread inside namespace `ns`.
pub fn spawn_in<T: Send + 'static>(
    ns: &str,
    work: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    let ns = ns.to_string();
    std::thread::spawn(move || {
        enter(&ns);
        work()
    })
}
