//! Transparent mode and source control, end to end: the real l4lb binary runs
//! in a network namespace between a clients namespace (50 IPv4 and 10 IPv6
//! addresses) and a backends namespace whose route back to the clients goes
//! through l4lb (see `transparent/lab.rs`). The return path is set up by the
//! shipped `scripts/transparent-setup.sh`, run in l4lb's namespace.
//!
//! Building namespaces needs root; where that fails the namespace tests say
//! so and pass without running. The capability test needs no namespace.

#[path = "transparent/lab.rs"]
mod lab;
#[path = "transparent/peers.rs"]
mod peers;
#[path = "common/ports.rs"]
mod ports;

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lab::{
    BACKEND_V4, BACKEND_V6, CLIENTS_V4, CLIENTS_V6, LB_BACKEND_SIDE_V4, LB_CLIENT_SIDE_V4,
    LB_CLIENT_SIDE_V6, LB_SECOND_V4, Lab, client_v4, client_v6, spawn_in,
};
use peers::{PATIENCE, Seen, payload, tcp_backend, tcp_session, udp_backend, udp_exchange};

const BIN: &str = env!("CARGO_BIN_EXE_l4lb");

/// The lab, or `None` (with the reason printed) where namespaces cannot be made.
fn lab_or_skip(tag: &str) -> Option<Lab> {
    match Lab::build(tag) {
        Ok(lab) => Some(lab),
        Err(why) => {
            eprintln!("skipped: cannot create network namespaces (needs root): {why}");
            None
        }
    }
}

/// A running l4lb, killed (by its pid) when dropped.
struct Running {
    child: Child,
    log: PathBuf,
}

impl Running {
    /// `l4lb run` with `config` inside namespace `ns`, after the return-path
    /// script has set that namespace up.
    fn start(lab: &Lab, name: &str, config: &str) -> Running {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/transparent-setup.sh");
        lab.run(&lab.lb, "bash", &[script]);
        // Twice: the script is idempotent (a second run adds no second rule).
        lab.run(&lab.lb, "bash", &[script]);
        let rules = lab.run(&lab.lb, "ip", &["-4", "rule", "show"]);
        assert_eq!(rules.matches("fwmark 0x1 lookup 100").count(), 1, "{rules}");
        let dir = std::env::temp_dir().join(format!("l4tp-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("lb.toml");
        std::fs::write(&path, config).expect("write config");
        let log = dir.join("stderr.log");
        let child = Command::new("ip")
            .args(["netns", "exec", &lab.lb, BIN, "run"])
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start l4lb");
        Running { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for `seen` to record `count` health probes from `from` (which also
    /// shows l4lb is up), failing with l4lb's log if it exits meanwhile.
    fn wait_for_probes(&mut self, seen: &Seen, from: IpAddr, count: usize) {
        let deadline = Instant::now() + PATIENCE;
        while seen.all().iter().filter(|p| p.ip() == from).count() < count {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("l4lb exited with {status}:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "no probes from {from}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(dir) = self.log.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Probes every 200ms (rise and fall stay at their defaults). The tcp probe
/// reads the backend's greeting: a check that only connects would never be
/// accepted by the backend (it ends before the handshake's last ACK), and the
/// backends here record their peers as they accept them.
fn health(protocol: &str) -> &'static str {
    match protocol {
        "udp" => "[service.health]\ninterval = \"200ms\"\ntimeout = \"200ms\"\nsend = \"ping\"\n",
        _ => "[service.health]\ninterval = \"200ms\"\ntimeout = \"200ms\"\nexpect = \"peer=\"\n",
    }
}

/// One service block: `keys` are its extra lines.
fn service(
    name: &str,
    protocol: &str,
    listen: SocketAddr,
    backend: SocketAddr,
    keys: &str,
) -> String {
    format!(
        "[[service]]\nname = \"{name}\"\nprotocol = \"{protocol}\"\nlisten = \"{listen}\"\n{keys}\n{}\
         [[service.backend]]\naddress = \"{backend}\"\n",
        health(protocol)
    )
}

fn at(ip: impl Into<IpAddr>, port: u16) -> SocketAddr {
    SocketAddr::new(ip.into(), port)
}

/// Runs `session` for each client address concurrently, each on a thread in
/// the clients' namespace; the results in client order.
fn from_each_client<T: Send + 'static>(
    lab: &Lab,
    clients: Vec<IpAddr>,
    session: fn(usize, IpAddr) -> T,
) -> Vec<T> {
    let threads: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, ip)| spawn_in(&lab.clients, move || session(i, ip)))
        .collect();
    threads
        .into_iter()
        .map(|t| t.join().expect("client thread"))
        .collect()
}

fn tcp4_session(i: usize, ip: IpAddr) -> peers::TcpOutcome {
    tcp_session(
        at(ip, 0),
        at(LB_CLIENT_SIDE_V4, 7000),
        &payload(i as u32, 100_000),
    )
}

fn tcp6_session(i: usize, ip: IpAddr) -> peers::TcpOutcome {
    tcp_session(
        at(ip, 0),
        at(LB_CLIENT_SIDE_V6, 7000),
        &payload(1000 + i as u32, 100_000),
    )
}

fn udp6_exchange(i: usize, ip: IpAddr) -> (Vec<u8>, Vec<u8>, SocketAddr) {
    let sent = format!("datagram from IPv6 client {i}").into_bytes();
    let (reply, local) = udp_exchange(at(ip, 0), at(LB_CLIENT_SIDE_V6, 7002), &sent);
    (sent, reply, local)
}

fn udp4_exchange(i: usize, ip: IpAddr) -> (Vec<u8>, Vec<u8>, SocketAddr) {
    let sent = format!("datagram from client {i}").into_bytes();
    let (reply, local) = udp_exchange(at(ip, 0), at(LB_CLIENT_SIDE_V4, 7002), &sent);
    (sent, reply, local)
}

/// Every peer a backend saw is a client's or l4lb's own (the probes), and
/// every client address is among them.
fn assert_peers(seen: &Seen, clients: &[IpAddr], own: IpAddr) {
    let peers = seen.all();
    let known: HashSet<IpAddr> = clients.iter().copied().collect();
    let strangers: Vec<_> = peers
        .iter()
        .filter(|p| p.ip() != own && !known.contains(&p.ip()))
        .collect();
    assert!(
        strangers.is_empty(),
        "peers neither clients nor l4lb: {strangers:?}"
    );
    let from_clients: HashSet<IpAddr> = peers
        .iter()
        .map(|p| p.ip())
        .filter(|ip| known.contains(ip))
        .collect();
    assert_eq!(
        from_clients.len(),
        clients.len(),
        "every client address reached the backend"
    );
}

#[test]
fn backends_see_each_of_50_ipv4_clients_own_address_and_port_over_tcp_and_udp() {
    let Some(lab) = lab_or_skip("a") else { return };
    let tcp = tcp_backend(&lab.backends, at(BACKEND_V4, 7001));
    let udp = udp_backend(&lab.backends, at(BACKEND_V4, 7003));
    let keys = "source = \"client\"\nsource_port = \"client\"";
    let lb = LB_CLIENT_SIDE_V4;
    let config = [
        service("tcp4", "tcp", at(lb, 7000), at(BACKEND_V4, 7001), keys),
        service("udp4", "udp", at(lb, 7002), at(BACKEND_V4, 7003), keys),
    ]
    .concat();
    let mut l4lb = Running::start(&lab, "clients4", &config);
    let own = IpAddr::from(LB_BACKEND_SIDE_V4);
    l4lb.wait_for_probes(&tcp, own, 2);
    l4lb.wait_for_probes(&udp, own, 2);

    let clients: Vec<IpAddr> = (0..CLIENTS_V4).map(client_v4).collect();
    for outcome in from_each_client(&lab, clients.clone(), tcp4_session) {
        // source_port = "client": the port too.
        let local = outcome.local.to_string();
        assert_eq!(outcome.backend_saw, local, "{outcome:?}");
        assert!(outcome.echoed_exactly, "{outcome:?}");
    }
    for (sent, reply, local) in from_each_client(&lab, clients.clone(), udp4_exchange) {
        let expected = format!("peer={local} {}", String::from_utf8_lossy(&sent));
        assert_eq!(String::from_utf8_lossy(&reply), expected);
    }
    assert_peers(&tcp, &clients, own);
    assert_peers(&udp, &clients, own);
}

#[test]
fn backends_see_each_ipv6_clients_own_address_over_tcp_and_udp() {
    let Some(lab) = lab_or_skip("6") else { return };
    let tcp = tcp_backend(&lab.backends, at(BACKEND_V6, 7001));
    let udp = udp_backend(&lab.backends, at(BACKEND_V6, 7003));
    let keys = "source = \"client\"";
    let lb = LB_CLIENT_SIDE_V6;
    let config = [
        service("tcp6", "tcp", at(lb, 7000), at(BACKEND_V6, 7001), keys),
        service("udp6", "udp", at(lb, 7002), at(BACKEND_V6, 7003), keys),
    ]
    .concat();
    let mut l4lb = Running::start(&lab, "clients6", &config);
    let own: IpAddr = "fd77:2::1".parse().expect("literal");
    l4lb.wait_for_probes(&tcp, own, 2);
    l4lb.wait_for_probes(&udp, own, 2);

    let clients: Vec<IpAddr> = (0..CLIENTS_V6).map(client_v6).collect();
    for outcome in from_each_client(&lab, clients.clone(), tcp6_session) {
        // source_port = "any": the client's address, a port of the kernel's choice.
        let saw: SocketAddr = outcome.backend_saw.parse().expect("a socket address");
        assert_eq!(saw.ip(), outcome.local.ip(), "{outcome:?}");
        assert!(outcome.echoed_exactly, "{outcome:?}");
    }
    for (sent, reply, local) in from_each_client(&lab, clients.clone(), udp6_exchange) {
        let reply = String::from_utf8_lossy(&reply).into_owned();
        let (peer, rest) = reply.split_once(' ').expect("peer and datagram");
        let peer: SocketAddr = peer
            .trim_start_matches("peer=")
            .parse()
            .expect("an address");
        assert_eq!(peer.ip(), local.ip(), "{reply}");
        assert_eq!(rest.as_bytes(), &sent[..], "{reply}");
    }
    assert_peers(&tcp, &clients, own);
    assert_peers(&udp, &clients, own);
}

/// Packets l4lb's namespace sent with firewall mark 42, as an nftables counter.
fn marked_packets(lab: &Lab) -> u64 {
    let listing = lab.run(
        &lab.lb,
        "nft",
        &["list", "chain", "inet", "l4tpcount", "out"],
    );
    listing
        .split("packets ")
        .skip(1)
        .filter_map(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

#[test]
fn a_fixed_source_address_and_a_mark_reach_the_backends() {
    let Some(lab) = lab_or_skip("b") else { return };
    let tcp = tcp_backend(&lab.backends, at(BACKEND_V4, 7001));
    let udp = udp_backend(&lab.backends, at(BACKEND_V4, 7003));
    lab.run(
        &lab.lb,
        "nft",
        &["add table inet l4tpcount; \
             add chain inet l4tpcount out { type filter hook output priority 0; policy accept; }; \
             add rule inet l4tpcount out meta mark 42 ip daddr 10.77.2.2 counter"],
    );
    let keys = format!("source = \"{LB_SECOND_V4}\"\nmark = 42");
    let config = [
        service(
            "fixed",
            "tcp",
            at(LB_CLIENT_SIDE_V4, 7000),
            at(BACKEND_V4, 7001),
            &keys,
        ),
        service(
            "fixedudp",
            "udp",
            at(LB_CLIENT_SIDE_V4, 7002),
            at(BACKEND_V4, 7003),
            &keys,
        ),
    ]
    .concat();
    let mut l4lb = Running::start(&lab, "fixed", &config);
    l4lb.wait_for_probes(&tcp, LB_BACKEND_SIDE_V4.into(), 2);
    l4lb.wait_for_probes(&udp, LB_BACKEND_SIDE_V4.into(), 2);
    // Health probes carry neither the source nor the mark.
    assert_eq!(marked_packets(&lab), 0);

    let clients: Vec<IpAddr> = (0..5).map(client_v4).collect();
    for outcome in from_each_client(&lab, clients.clone(), tcp4_session) {
        let saw: SocketAddr = outcome.backend_saw.parse().expect("a socket address");
        assert_eq!(saw.ip(), IpAddr::from(LB_SECOND_V4), "{outcome:?}");
        assert!(outcome.echoed_exactly, "{outcome:?}");
    }
    for (sent, reply, _) in from_each_client(&lab, clients, udp4_exchange) {
        let text = String::from_utf8_lossy(&reply).into_owned();
        let expected_tail = format!(" {}", String::from_utf8_lossy(&sent));
        assert!(text.starts_with(&format!("peer={LB_SECOND_V4}:")), "{text}");
        assert!(text.ends_with(&expected_tail), "{text}");
    }
    assert!(marked_packets(&lab) > 0, "backend traffic carries mark 42");
}

/// `l4lb` with `args`, without CAP_NET_ADMIN and CAP_NET_RAW: through `capsh`
/// when running as root (`exec`, so the child is l4lb itself), directly
/// otherwise (an ordinary user has neither).
fn without_network_capabilities(args: &[&str]) -> Command {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false);
    let mut command = if root {
        let mut c = Command::new("capsh");
        c.args([
            "--drop=cap_net_admin,cap_net_raw",
            "--",
            "-c",
            "exec \"$0\" \"$@\"",
            BIN,
        ]);
        c
    } else {
        Command::new(BIN)
    };
    command.args(args);
    command
}

fn output_without_network_capabilities(args: &[&str]) -> std::process::Output {
    without_network_capabilities(args)
        .output()
        .expect("run l4lb without the capabilities")
}

#[test]
fn without_the_capability_run_refuses_to_start_and_check_warns() {
    let dir = std::env::temp_dir().join(format!("l4tp-{}-nocap", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("lb.toml");
    let config = "[[service]]\nname = \"pg\"\nlisten = \"127.0.0.1:0\"\nsource = \"client\"\n\
                  [[service.backend]]\naddress = \"127.0.0.1:5432\"\n\
                  [[service]]\nname = \"marked\"\nlisten = \"127.0.0.1:0\"\nmark = 42\n\
                  [[service.backend]]\naddress = \"127.0.0.1:5433\"\n";
    std::fs::write(&path, config).expect("write config");
    let path = path.to_str().expect("utf-8 path");

    let run = output_without_network_capabilities(&["run", path]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "service \"pg\": source = \"client\" needs CAP_NET_RAW or CAP_NET_ADMIN to set \
             IP_TRANSPARENT, and this process does not have it"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("service \"marked\": mark = 42 needs CAP_NET_ADMIN to set SO_MARK"),
        "{stderr}"
    );

    let check = output_without_network_capabilities(&["check", path]);
    let stderr = String::from_utf8_lossy(&check.stderr);
    assert_eq!(check.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("warning: service \"pg\": source = \"client\" needs"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A backend on loopback that writes `a` to every client and closes.
fn tag_backend() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("backend");
    let addr = listener.local_addr().expect("address");
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let _ = std::io::Write::write_all(&mut stream, b"a\n");
        }
    });
    addr
}

/// The tag a new connection to `addr` reads; `None` when it fails.
fn tag_via(addr: SocketAddr) -> Option<String> {
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(PATIENCE)).ok()?;
    let mut text = String::new();
    std::io::Read::read_to_string(&mut stream, &mut text).ok()?;
    Some(text.trim().to_string()).filter(|t| !t.is_empty())
}

#[test]
fn a_reload_that_turns_on_client_source_without_the_capability_is_refused() {
    let dir = std::env::temp_dir().join(format!("l4tp-{}-reload", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let listen = SocketAddr::from(([127, 0, 0, 1], ports::free_port()));
    let backend = tag_backend();
    let plain = format!(
        "[[service]]\nname = \"pg\"\nlisten = \"{listen}\"\n\
         [[service.backend]]\naddress = \"{backend}\"\n"
    );
    let path = dir.join("lb.toml");
    std::fs::write(&path, &plain).expect("write config");
    let log = dir.join("stderr.log");
    let child = without_network_capabilities(&["run", path.to_str().expect("utf-8 path")])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("start l4lb");
    let mut l4lb = Running { child, log };
    let deadline = Instant::now() + PATIENCE;
    while tag_via(listen).as_deref() != Some("a") {
        if let Ok(Some(status)) = l4lb.child.try_wait() {
            panic!("l4lb exited with {status}:\n{}", l4lb.log());
        }
        assert!(Instant::now() < deadline, "never served:\n{}", l4lb.log());
        std::thread::sleep(Duration::from_millis(20));
    }

    let transparent = plain.replacen(
        "\n[[service.backend]]",
        "\nsource = \"client\"\n[[service.backend]]",
        1,
    );
    std::fs::write(&path, transparent).expect("rewrite config");
    let hup = Command::new("kill")
        .args(["-HUP", &l4lb.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(hup.success());
    let deadline = Instant::now() + PATIENCE;
    while !l4lb.log().contains("reload refused") {
        assert!(Instant::now() < deadline, "no refusal:\n{}", l4lb.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    let log = l4lb.log();
    let refusal = "service \"pg\": source = \"client\" needs CAP_NET_RAW or CAP_NET_ADMIN";
    assert!(log.contains(refusal), "{log}");
    assert_eq!(
        tag_via(listen).as_deref(),
        Some("a"),
        "the old configuration still serves"
    );
    assert!(
        l4lb.child.try_wait().expect("wait").is_none(),
        "l4lb still runs"
    );
}
