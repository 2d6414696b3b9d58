//! Health checks that speak the backend's protocol, against real servers
//! (PostgreSQL, Redis, MariaDB, dnsmasq, an HTTP endpoint, an agent): each
//! passes on a working server, then fails the way production fails, while a
//! plain connect check on the same backend stays up. A test whose server is
//! not installed says so and is skipped.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use common::dnsmasq::{self, Dnsmasq};
use common::mariadb::{self, MariaDb};
use common::ports::free_port;
use common::postgres::Postgres;
use common::redis::Redis;
use common::{PATIENCE, TestProxy, get_ok, wait_until};
use l4lb::backend::Backend;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

/// Probes every 100 ms; two failures mark down, two successes up.
const FAST: &str = "interval = \"100ms\"\ntimeout = \"100ms\"\nrise = 2\nfall = 2";

/// One service per `(name, protocol, backend, health keys)`, plus an admin endpoint.
fn services(entries: &[(&str, &str, SocketAddr, String)]) -> String {
    let mut toml = String::from("[admin]\nlisten = \"127.0.0.1:0\"\n");
    for (name, protocol, backend, health) in entries {
        toml.push_str(&format!(
            "[[service]]\nname = \"{name}\"\nprotocol = \"{protocol}\"\nlisten = \"127.0.0.1:0\"\n\
             [service.health]\n{FAST}\n{health}\n[[service.backend]]\naddress = \"{backend}\"\n"
        ));
    }
    toml
}

fn backend(proxy: &TestProxy, service: &str) -> Arc<Backend> {
    Arc::clone(&proxy.service(service).backends()[0])
}

fn passed(backend: &Backend) -> u64 {
    backend.health_snapshot(Instant::now()).passed
}

fn last_error(backend: &Backend) -> Option<String> {
    backend.health_snapshot(Instant::now()).last_error
}

/// Waits until `backend` has passed `n` more probes than it had.
async fn passes_more(what: &str, backend: &Backend, n: u64) {
    let from = passed(backend);
    wait_until(what, || passed(backend) >= from + n).await;
}

/// Waits until `backend` is marked down; returns its last error.
async fn marked_down(what: &str, backend: &Backend) -> String {
    wait_until(what, || !backend.is_healthy()).await;
    last_error(backend).unwrap_or_default()
}

/// The plain check on the same backend kept passing and never went down.
async fn stays_up(plain: &Backend) {
    passes_more("the plain check passes meanwhile", plain, 3).await;
    let health = plain.health_snapshot(Instant::now());
    assert!(plain.is_healthy());
    assert_eq!((health.marked_down, health.consecutive_failures), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_shutting_down_with_a_session_open_is_marked_down_while_tcp_stays_up() {
    let Some(pg) = Postgres::start().await else {
        return;
    };
    let proxy = TestProxy::start(&services(&[
        (
            "pg",
            "tcp",
            pg.addr,
            "kind = \"postgres\"\nuser = \"postgres\"".into(),
        ),
        ("tcp", "tcp", pg.addr, String::new()),
    ]))
    .await;
    let (checked, plain) = (backend(&proxy, "pg"), backend(&proxy, "tcp"));
    passes_more("postgres check passes", &checked, 2).await;

    let (session, _task) = pg.session().await;
    // A smart shutdown waits for the session: the port stays open while every
    // new connection is refused with 57P03.
    pg.begin_stop("smart");
    let error = marked_down("postgres marked down", &checked).await;
    assert_eq!(
        error,
        "postgres: 57P03 the database system is shutting down"
    );
    stays_up(&plain).await;

    let status = get_ok(proxy.admin.expect("admin"), "/status").await;
    assert!(
        status.contains("\"last_error\":\"postgres: 57P03 the database system is shutting down\""),
        "{status}"
    );
    drop(session);
    proxy.assert_drained().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_role_primary_marks_a_standby_down_while_a_plain_postgres_check_passes() {
    let Some(pg) = Postgres::start().await else {
        return;
    };
    let primary = "kind = \"postgres\"\nuser = \"postgres\"\nrole = \"primary\"";
    let proxy = TestProxy::start(&services(&[
        ("primary", "tcp", pg.addr, primary.into()),
        (
            "any",
            "tcp",
            pg.addr,
            "kind = \"postgres\"\nuser = \"postgres\"".into(),
        ),
    ]))
    .await;
    let (checked, plain) = (backend(&proxy, "primary"), backend(&proxy, "any"));
    passes_more("role = primary passes on a primary", &checked, 2).await;

    pg.stop();
    pg.become_standby();
    pg.start_again().await;
    // While it restarted, probes failed to connect; once it is up, they fail
    // because it is a standby.
    let standby = "postgres: in recovery (a standby), and role = \"primary\" is required";
    wait_until("the standby is refused as a primary", || {
        last_error(&checked).as_deref() == Some(standby)
    })
    .await;
    assert!(!checked.is_healthy());
    wait_until("the plain check is back up", || plain.is_healthy()).await;
    passes_more("the plain postgres check passes on the standby", &plain, 2).await;
    assert!(!checked.is_healthy());
    proxy.assert_drained().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_role_master_marks_a_replica_down_while_tcp_stays_up() {
    let Some(master) = Redis::start(&[]).await else {
        return;
    };
    let Some(replica) = Redis::replica_of(&master).await else {
        return;
    };
    let wants_master = "kind = \"redis\"\nrole = \"master\"";
    let proxy = TestProxy::start(&services(&[
        ("master", "tcp", master.addr, wants_master.into()),
        ("replica", "tcp", replica.addr, wants_master.into()),
        ("ping", "tcp", replica.addr, "kind = \"redis\"".into()),
        ("tcp", "tcp", replica.addr, String::new()),
    ]))
    .await;
    let error = marked_down("the replica marked down", &backend(&proxy, "replica")).await;
    assert_eq!(
        error,
        "redis: role:slave, and role = \"master\" is required"
    );
    passes_more("the master passes", &backend(&proxy, "master"), 3).await;
    assert!(backend(&proxy, "master").is_healthy());
    passes_more("PING passes on the replica", &backend(&proxy, "ping"), 3).await;
    stays_up(&backend(&proxy, "tcp")).await;
    proxy.assert_drained().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_password_and_a_tcp_send_expect_exchange() {
    let Some(redis) = Redis::start(&["--requirepass".into(), "s3cret".into()]).await else {
        return;
    };
    let ping = "send = \"PING\\r\\n\"\nexpect = \"+PONG\"";
    let proxy = TestProxy::start(&services(&[
        (
            "auth",
            "tcp",
            redis.addr,
            "kind = \"redis\"\npassword = \"s3cret\"".into(),
        ),
        ("noauth", "tcp", redis.addr, "kind = \"redis\"".into()),
        ("expect", "tcp", redis.addr, ping.into()),
        ("tcp", "tcp", redis.addr, String::new()),
    ]))
    .await;
    passes_more("AUTH then PING passes", &backend(&proxy, "auth"), 3).await;
    let error = marked_down("PING without AUTH fails", &backend(&proxy, "noauth")).await;
    assert!(
        error.starts_with("redis: PING answered \"-NOAUTH"),
        "{error}"
    );
    let error = marked_down("tcp expect +PONG fails", &backend(&proxy, "expect")).await;
    assert_eq!(error, "tcp: reply \"-NOAU\" does not start with \"+PONG\"");
    stays_up(&backend(&proxy, "tcp")).await;
    assert!(backend(&proxy, "auth").is_healthy());
    proxy.assert_drained().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tcp_send_expect_exchange_passes_on_the_right_reply() {
    let Some(redis) = Redis::start(&[]).await else {
        return;
    };
    let ping = "send_hex = \"50494e470d0a\"\nexpect_hex = \"2b504f4e47\"";
    let proxy = TestProxy::start(&services(&[("expect", "tcp", redis.addr, ping.into())])).await;
    passes_more("PING gets +PONG", &backend(&proxy, "expect"), 3).await;
    assert_eq!(last_error(&backend(&proxy, "expect")), None);
    proxy.assert_drained().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_full_of_connections_is_marked_down_while_tcp_stays_up() {
    let Some(db) = MariaDb::start().await else {
        return;
    };
    let proxy = TestProxy::start(&services(&[
        ("mysql", "tcp", db.addr, "kind = \"mysql\"".into()),
        ("tcp", "tcp", db.addr, String::new()),
    ]))
    .await;
    let checked = backend(&proxy, "mysql");
    passes_more("the greeting passes", &checked, 2).await;

    // Fill the server: its port stays open, but new connections get an error
    // packet instead of a greeting. Slots a probe frees are taken again.
    let mut held = Vec::new();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while checked.is_healthy() && held.len() < mariadb::MAX_CONNECTIONS + 20 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "mysql never marked down"
        );
        held.push(TcpStream::connect(db.addr).await.expect("connect"));
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    }
    wait_until("mysql marked down", || !checked.is_healthy()).await;
    assert_eq!(
        last_error(&checked).as_deref(),
        Some("mysql: 1040 Too many connections")
    );
    stays_up(&backend(&proxy, "tcp")).await;
    drop(held);
    proxy.assert_drained().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_refused_is_marked_down_while_a_udp_check_stays_up() {
    let port = free_port();
    let Some(answering) = Dnsmasq::start(port, &["ok.test"]).await else {
        return;
    };
    let addr = answering.addr;
    let udp = format!("send_hex = \"{}\"", hex_of(&dnsmasq::query("ok.test")));
    let proxy = TestProxy::start(&services(&[
        (
            "dns",
            "udp",
            addr,
            "kind = \"dns\"\nquery = \"ok.test\"".into(),
        ),
        ("udp", "udp", addr, udp),
    ]))
    .await;
    let (checked, plain) = (backend(&proxy, "dns"), backend(&proxy, "udp"));
    passes_more("ok.test answers NOERROR", &checked, 2).await;

    // The same server without the name: it answers REFUSED.
    drop(answering);
    let _refusing = Dnsmasq::start(port, &[]).await;
    let error = marked_down("REFUSED marks it down", &checked).await;
    assert_eq!(error, "dns: REFUSED for ok.test (allowed: NOERROR)");
    stays_up(&plain).await;
    proxy.assert_drained().await;
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_checks_the_status_of_a_real_endpoint() {
    // Another l4lb's admin endpoint is the HTTP server: /healthz answers 200,
    // an unknown path 404.
    let web = TestProxy::start(&services(&[(
        "web",
        "tcp",
        free_addr().await,
        String::new(),
    )]))
    .await;
    let admin = web.admin.expect("admin");
    let [plain_port] = [free_port()];
    let _listener = TcpListener::bind(("127.0.0.1", plain_port))
        .await
        .expect("bind");
    let target = SocketAddr::from(([127, 0, 0, 1], plain_port));
    let http = |path: &str| {
        format!(
            "kind = \"http\"\npath = \"{path}\"\nport = {}\nhost = \"lb.test\"",
            admin.port()
        )
    };
    let proxy = TestProxy::start(&services(&[
        ("ok", "tcp", target, http("/healthz")),
        ("missing", "tcp", target, http("/missing")),
    ]))
    .await;
    let ok = backend(&proxy, "ok");
    wait_until("a first /healthz probe", || {
        ok.health_snapshot(Instant::now()).last_result.is_some()
    })
    .await;
    assert_eq!(last_error(&ok), None);
    passes_more("GET /healthz passes", &ok, 3).await;
    let error = marked_down("a 404 marks it down", &backend(&proxy, "missing")).await;
    assert_eq!(error, "http: status 404 for GET /missing, expected 200-399");
    assert!(backend(&proxy, "ok").is_healthy());
    proxy.assert_drained().await;
    web.assert_drained().await;
}

async fn free_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// An agent that answers every connection with the current `reply` line.
async fn agent(reply: Arc<Mutex<String>>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind agent");
    let port = listener.local_addr().expect("agent address").port();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let line = reply.lock().map(|r| r.clone()).unwrap_or_default();
            let _ = stream.write_all(format!("{line}\n").as_bytes()).await;
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_sets_the_weight_and_drains_the_backend_while_tcp_stays_up() {
    let service = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let target = service.local_addr().expect("address");
    let reply = Arc::new(Mutex::new("up 100%".to_string()));
    let port = agent(Arc::clone(&reply)).await;
    let proxy = TestProxy::start(&services(&[
        (
            "agent",
            "tcp",
            target,
            format!("kind = \"agent\"\nagent_port = {port}"),
        ),
        ("tcp", "tcp", target, String::new()),
    ]))
    .await;
    let checked = backend(&proxy, "agent");
    passes_more("up passes", &checked, 2).await;
    assert_eq!(checked.agent_weight(), 100);

    *reply.lock().expect("reply") = "ready 40%".into();
    wait_until("the weight follows the agent", || {
        checked.agent_weight() == 40
    })
    .await;
    assert!(checked.is_healthy());
    assert!((checked.weight_share(Instant::now()) - 0.4).abs() < 1e-9);

    *reply.lock().expect("reply") = "drain".into();
    let error = marked_down("drain marks it down", &checked).await;
    assert_eq!(error, "agent: drain");
    stays_up(&backend(&proxy, "tcp")).await;
    proxy.assert_drained().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_accepts_but_never_answers_times_out_each_probe() {
    let silent = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let target = silent.local_addr().expect("address");
    let held = Arc::new(Mutex::new(Vec::new()));
    let keep = Arc::clone(&held);
    tokio::spawn(async move {
        while let Ok((stream, _)) = silent.accept().await {
            if let Ok(mut streams) = keep.lock() {
                streams.push(stream);
            }
        }
    });
    let proxy = TestProxy::start(&services(&[
        ("redis", "tcp", target, "kind = \"redis\"".into()),
        ("tcp", "tcp", target, String::new()),
    ]))
    .await;
    let checked = backend(&proxy, "redis");
    let error = marked_down("the silent backend marked down", &checked).await;
    assert_eq!(error, "redis: no answer within 100ms");
    assert!(checked.health_snapshot(Instant::now()).timed_out >= 2);
    stays_up(&backend(&proxy, "tcp")).await;
    proxy.assert_drained().await;
}
