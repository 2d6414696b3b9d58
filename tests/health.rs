//! Health: active probes, passive ejection, backups, fail-open and close-on-down,
//! with real backends that are really stopped and restarted.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::{
    Behaviour, TestBackend, TestProxy, echo_round_trip, read_tag, read_until_closed,
    refusing_addrs, tag_of_new_connection, wait_until,
};
use l4lb::service::RejectReason;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// A service "svc" with `keys`, a `[service.health]` table with `health`, and backends.
fn config(keys: &str, health: &str, backends: &[(std::net::SocketAddr, &str)]) -> String {
    let blocks: String = backends
        .iter()
        .map(|(addr, extra)| format!("[[service.backend]]\naddress = \"{addr}\"\n{extra}\n"))
        .collect();
    let health = if health.is_empty() {
        String::new()
    } else {
        format!("[service.health]\n{health}\n")
    };
    format!("[[service]]\nname = \"svc\"\nlisten = \"127.0.0.1:0\"\n{keys}\n{health}{blocks}")
}

const FAST_CHECKS: &str = "interval = \"50ms\"\ntimeout = \"50ms\"\nrise = 2\nfall = 2";

/// Connects over and over until told to stop; counts clients that were not served.
struct ClientLoop {
    stop: Arc<AtomicBool>,
    errors: Arc<AtomicUsize>,
    served: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl ClientLoop {
    fn start(addr: std::net::SocketAddr) -> ClientLoop {
        let stop = Arc::new(AtomicBool::new(false));
        let errors = Arc::new(AtomicUsize::new(0));
        let served = Arc::new(AtomicUsize::new(0));
        let (s, e, n) = (stop.clone(), errors.clone(), served.clone());
        let task = tokio::spawn(async move {
            while !s.load(Ordering::SeqCst) {
                match TcpStream::connect(addr).await {
                    Ok(mut stream) => {
                        let mut tag = [0u8; 2];
                        match stream.read_exact(&mut tag).await {
                            Ok(_) => n.fetch_add(1, Ordering::SeqCst),
                            Err(_) => e.fetch_add(1, Ordering::SeqCst),
                        };
                    }
                    Err(_) => {
                        e.fetch_add(1, Ordering::SeqCst);
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        ClientLoop {
            stop,
            errors,
            served,
            task,
        }
    }

    /// Stops the loop; returns (served, errors).
    async fn finish(self) -> (usize, usize) {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.expect("client loop");
        (
            self.served.load(Ordering::SeqCst),
            self.errors.load(Ordering::SeqCst),
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_backend_is_marked_down_clients_never_notice_and_it_comes_back() {
    let a = TestBackend::start("a", Behaviour::Tagged).await;
    let b = TestBackend::start("b", Behaviour::Tagged).await;
    let toml = config(
        "connect_attempts = 2",
        FAST_CHECKS,
        &[(a.addr, ""), (b.addr, "")],
    );
    let proxy = TestProxy::start(&toml).await;
    let addr = proxy.addr("svc");
    let backend_a = Arc::clone(&proxy.service("svc").backends()[0]);
    let clients = ClientLoop::start(addr);

    a.stop();
    wait_until("a marked down", || !backend_a.is_healthy()).await;
    let accepted_while_down = a.accepted();
    for _ in 0..20 {
        assert_eq!(tag_of_new_connection(addr).await, "b");
    }
    assert_eq!(a.accepted(), accepted_while_down);

    let a_again = TestBackend::start_at("a", Behaviour::Tagged, a.addr).await;
    wait_until("a marked up", || backend_a.is_healthy()).await;
    let mut tags = Vec::new();
    for _ in 0..10 {
        tags.push(tag_of_new_connection(addr).await);
    }
    assert!(
        tags.iter().any(|t| t == "a"),
        "a gets clients again: {tags:?}"
    );
    assert!(a_again.accepted() > 0);

    let (served, errors) = clients.finish().await;
    assert!(served > 0);
    assert_eq!(errors, 0, "a client saw an error while a went down and up");
    let health = backend_a.health_snapshot(std::time::Instant::now());
    assert_eq!((health.marked_down, health.marked_up), (1, 1));
    proxy.assert_drained().await;
}

#[tokio::test]
async fn one_failed_probe_among_successes_does_not_mark_down() {
    let a = TestBackend::start("a", Behaviour::Tagged).await;
    let checks = "interval = \"100ms\"\ntimeout = \"50ms\"\nrise = 1\nfall = 5";
    let proxy = TestProxy::start(&config("", checks, &[(a.addr, "")])).await;
    let backend = Arc::clone(&proxy.service("svc").backends()[0]);
    let now = std::time::Instant::now;

    a.stop();
    wait_until("one failed probe", || {
        backend.health_snapshot(now()).consecutive_failures >= 1
    })
    .await;
    let _back = TestBackend::start_at("a", Behaviour::Tagged, a.addr).await;
    wait_until("a successful probe again", || {
        backend.health_snapshot(now()).consecutive_successes >= 1
    })
    .await;
    let health = backend.health_snapshot(now());
    assert!(health.failed >= 1);
    assert_eq!(health.marked_down, 0);
    assert!(backend.is_healthy());
}

#[tokio::test]
async fn backup_serves_only_while_every_primary_is_down() {
    let primary = TestBackend::start("p", Behaviour::Tagged).await;
    let backup = TestBackend::start("k", Behaviour::Tagged).await;
    let checks = "interval = \"50ms\"\ntimeout = \"50ms\"\nrise = 1\nfall = 1";
    let toml = config(
        "",
        checks,
        &[(primary.addr, ""), (backup.addr, "backup = true")],
    );
    let proxy = TestProxy::start(&toml).await;
    let addr = proxy.addr("svc");
    let p = Arc::clone(&proxy.service("svc").backends()[0]);
    for _ in 0..10 {
        assert_eq!(tag_of_new_connection(addr).await, "p");
    }
    primary.stop();
    wait_until("primary down", || !p.is_healthy()).await;
    for _ in 0..10 {
        assert_eq!(tag_of_new_connection(addr).await, "k");
    }
    let _primary = TestBackend::start_at("p", Behaviour::Tagged, primary.addr).await;
    wait_until("primary up", || p.is_healthy()).await;
    for _ in 0..10 {
        assert_eq!(tag_of_new_connection(addr).await, "p");
    }
    proxy.assert_drained().await;
}

#[tokio::test]
async fn refusing_backend_is_ejected_by_real_traffic_then_offered_again() {
    let good = TestBackend::start("g", Behaviour::Tagged).await;
    let [dead] = refusing_addrs::<1>().await;
    let keys = "connect_attempts = 2\n\
                [service.outlier]\nconsecutive_failures = 2\nejection_time = \"400ms\"";
    let toml = config(keys, "", &[(dead, ""), (good.addr, "")]);
    let proxy = TestProxy::start(&toml).await;
    let addr = proxy.addr("svc");
    let dead_backend = Arc::clone(&proxy.service("svc").backends()[0]);

    for _ in 0..10 {
        assert_eq!(tag_of_new_connection(addr).await, "g");
    }
    // Round robin offered it to the first two clients; then it was out.
    assert_eq!(dead_backend.connect_failures(), 2);
    assert_eq!(dead_backend.ejections(), 1);
    assert!(dead_backend.is_ejected(std::time::Instant::now()));

    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!dead_backend.is_ejected(std::time::Instant::now()));
    for _ in 0..4 {
        assert_eq!(tag_of_new_connection(addr).await, "g");
    }
    assert_eq!(
        dead_backend.connect_failures(),
        4,
        "offered again after ejection_time"
    );
    assert_eq!(dead_backend.ejections(), 2);
    proxy.assert_drained().await;
}

/// Opens a session to backend "a", stops a's listener (the session's own socket
/// stays open) and waits until a is marked down. Returns the still-open session.
async fn session_when_backend_goes_down(close_on_down: bool) -> (TcpStream, TestProxy) {
    let a = TestBackend::start("a", Behaviour::Tagged).await;
    let checks = "interval = \"50ms\"\ntimeout = \"50ms\"\nrise = 1\nfall = 1";
    let keys = format!("close_on_down = {close_on_down}");
    let proxy = TestProxy::start(&config(&keys, checks, &[(a.addr, "")])).await;
    let mut session = TcpStream::connect(proxy.addr("svc"))
        .await
        .expect("connect");
    assert_eq!(read_tag(&mut session).await, "a");
    echo_round_trip(&mut session, b"ping").await;
    a.stop();
    let backend = Arc::clone(&proxy.service("svc").backends()[0]);
    wait_until("a marked down", || !backend.is_healthy()).await;
    (session, proxy)
}

#[tokio::test]
async fn close_on_down_closes_the_sessions_of_a_backend_marked_down() {
    let (mut session, proxy) = session_when_backend_goes_down(true).await;
    let _ = read_until_closed(&mut session).await;
    proxy.assert_drained().await;
}

#[tokio::test]
async fn without_close_on_down_sessions_of_a_down_backend_carry_on() {
    let (mut session, proxy) = session_when_backend_goes_down(false).await;
    for _ in 0..3 {
        echo_round_trip(&mut session, b"ping").await;
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    drop(session);
    proxy.assert_drained().await;
}

/// A backend that serves traffic but whose health port is dead, so checks mark it down.
async fn all_down_service(on_all_down: &str) -> (TestProxy, TestBackend) {
    let backend = TestBackend::start("a", Behaviour::Tagged).await;
    let [dead] = refusing_addrs::<1>().await;
    let checks = format!(
        "interval = \"50ms\"\ntimeout = \"50ms\"\nrise = 1\nfall = 1\nport = {}",
        dead.port()
    );
    let keys = format!("on_all_down = \"{on_all_down}\"");
    let proxy = TestProxy::start(&config(&keys, &checks, &[(backend.addr, "")])).await;
    let b = Arc::clone(&proxy.service("svc").backends()[0]);
    wait_until("marked down", || !b.is_healthy()).await;
    (proxy, backend)
}

#[tokio::test]
async fn on_all_down_reject_closes_new_clients_and_counts_no_backend() {
    let (proxy, backend) = all_down_service("reject").await;
    let mut stream = TcpStream::connect(proxy.addr("svc"))
        .await
        .expect("connect");
    assert!(
        read_until_closed(&mut stream)
            .await
            .expect("closed")
            .is_empty()
    );
    assert_eq!(backend.accepted(), 0);
    assert_eq!(proxy.service("svc").rejections(RejectReason::NoBackend), 1);
    proxy.assert_drained().await;
}

#[tokio::test]
async fn on_all_down_use_all_fails_open() {
    let (proxy, backend) = all_down_service("use_all").await;
    assert_eq!(tag_of_new_connection(proxy.addr("svc")).await, "a");
    assert_eq!(backend.accepted(), 1);
    assert_eq!(proxy.service("svc").rejections(RejectReason::NoBackend), 0);
    proxy.assert_drained().await;
}

#[tokio::test]
async fn probes_run_one_per_backend_and_stop_at_shutdown() {
    let a = TestBackend::start("a", Behaviour::Tagged).await;
    let b = TestBackend::start("b", Behaviour::Tagged).await;
    let proxy = TestProxy::start(&config("", FAST_CHECKS, &[(a.addr, ""), (b.addr, "")])).await;
    let probes = proxy.probes.clone();
    wait_until("probes started", || probes.running() == 2).await;
    proxy.stop().await;
    assert_eq!(probes.running(), 0);
}

#[tokio::test]
async fn a_backend_back_up_slow_starts_with_a_small_share() {
    let a = TestBackend::start("a", Behaviour::Tagged).await;
    let b = TestBackend::start("b", Behaviour::Tagged).await;
    let checks = "interval = \"50ms\"\ntimeout = \"50ms\"\nrise = 1\nfall = 1";
    let toml = config("", checks, &[(a.addr, "slow_start = \"1h\""), (b.addr, "")]);
    let proxy = TestProxy::start(&toml).await;
    let addr = proxy.addr("svc");
    let backend_a = Arc::clone(&proxy.service("svc").backends()[0]);
    a.stop();
    wait_until("a down", || !backend_a.is_healthy()).await;
    let _a = TestBackend::start_at("a", Behaviour::Tagged, a.addr).await;
    wait_until("a up", || backend_a.is_healthy()).await;
    assert!(backend_a.weight_share(std::time::Instant::now()) < 0.5);

    let mut to_a = 0;
    for _ in 0..200 {
        if tag_of_new_connection(addr).await == "a" {
            to_a += 1;
        }
    }
    // Without slow start round robin would give it exactly 100 of 200.
    assert!(to_a <= 40, "a got {to_a} of 200 while ramping from 5%");
    proxy.assert_drained().await;
}

#[tokio::test]
async fn a_backend_override_probes_its_own_port_while_the_others_use_the_services_check() {
    let a = TestBackend::start("a", Behaviour::Tagged).await;
    let b = TestBackend::start("b", Behaviour::Tagged).await;
    let [dead] = refusing_addrs::<1>().await;
    let checks = "interval = \"50ms\"\ntimeout = \"50ms\"\nrise = 1\nfall = 1";
    let override_port = format!("[service.backend.health]\nport = {}", dead.port());
    let toml = config("", checks, &[(a.addr, &override_port), (b.addr, "")]);
    let proxy = TestProxy::start(&toml).await;
    let backends = proxy.service("svc").backends();
    let (backend_a, backend_b) = (Arc::clone(&backends[0]), Arc::clone(&backends[1]));
    wait_until("a marked down by its own port", || !backend_a.is_healthy()).await;
    let now = std::time::Instant::now;
    let error = backend_a
        .health_snapshot(now())
        .last_error
        .unwrap_or_default();
    assert!(error.starts_with("tcp: connect: "), "{error}");
    wait_until("b passes", || backend_b.health_snapshot(now()).passed >= 2).await;
    assert!(backend_b.is_healthy());
    for _ in 0..5 {
        assert_eq!(tag_of_new_connection(proxy.addr("svc")).await, "b");
    }
    proxy.assert_drained().await;
}
