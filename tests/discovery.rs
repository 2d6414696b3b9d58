//! DNS and SRV discovery against a real DNS server (`dnsmasq`, serving a hosts
//! file the tests rewrite and reload with SIGHUP, and SRV records), sometimes
//! behind a relay that slows it down or stops it, with a real l4lb in process
//! and real backends on several loopback addresses.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::Value;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use common::dns_relay::DnsRelay;
use common::dnsmasq::Zone;
use common::ports::free_port;
use common::{Behaviour, PATIENCE, TestBackend, TestProxy, get_ok, http, samples};

/// Backends tagged with their address, on 127.0.0.{2..} and one shared port.
async fn backends_on(port: u16, last_octets: &[u8]) -> Vec<TestBackend> {
    let mut backends = Vec::new();
    for &last in last_octets {
        let addr = SocketAddr::from(([127, 0, 0, last], port));
        backends.push(TestBackend::start_at(&addr.to_string(), Behaviour::Tagged, addr).await);
    }
    backends
}

fn hosts(name: &str, last_octets: &[u8]) -> String {
    last_octets
        .iter()
        .map(|l| format!("127.0.0.{l} {name}\n"))
        .collect()
}

fn config(group: &str) -> String {
    format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n\n[[service]]\nname = \"pg\"\n\
         listen = \"127.0.0.1:0\"\n\n[[service.discover]]\n{group}\n"
    )
}

/// A `[[service.discover]]` body: `pg.test` on `port`, asked of `resolver`.
fn pg_group(port: u16, resolver: SocketAddr, refresh: &str) -> String {
    format!(
        "dns = \"pg.test\"\nport = {port}\nresolvers = [\"{resolver}\"]\nrefresh = \"{refresh}\""
    )
}

async fn status(proxy: &TestProxy) -> Value {
    let admin = proxy.admin.expect("admin endpoint");
    serde_json::from_str(&get_ok(admin, "/status").await).expect("status is JSON")
}

/// The backends `/status` lists for service `pg` (including draining ones).
async fn listed(proxy: &TestProxy) -> BTreeSet<String> {
    let status = status(proxy).await;
    status["services"][0]["backends"]
        .as_array()
        .expect("backends")
        .iter()
        .filter(|b| b["state"] != "draining")
        .map(|b| b["address"].as_str().unwrap_or_default().to_string())
        .collect()
}

async fn group_status(proxy: &TestProxy) -> Value {
    status(proxy).await["services"][0]["discovery"][0].clone()
}

fn set_of(port: u16, last_octets: &[u8]) -> BTreeSet<String> {
    last_octets
        .iter()
        .map(|l| format!("127.0.0.{l}:{port}"))
        .collect()
}

/// Polls `/status` until the listed set is `want` (bounded by PATIENCE).
async fn wait_for_set(proxy: &TestProxy, want: &BTreeSet<String>) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let got = listed(proxy).await;
        if &got == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "backend set never became {want:?}; last {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Clients that connect, read the backend's tag and close, over and over,
/// counting errors and which backend served them.
struct Traffic {
    stop: Arc<AtomicBool>,
    errors: Arc<AtomicUsize>,
    served: Arc<std::sync::Mutex<HashMap<String, usize>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Traffic {
    fn start(to: SocketAddr) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let errors = Arc::new(AtomicUsize::new(0));
        let served = Arc::new(std::sync::Mutex::new(HashMap::new()));
        let (s, e, d) = (Arc::clone(&stop), Arc::clone(&errors), Arc::clone(&served));
        let task = tokio::spawn(async move {
            while !s.load(Ordering::SeqCst) {
                match tokio::time::timeout(PATIENCE, tag_from(to)).await {
                    Ok(Some(tag)) => *d.lock().unwrap().entry(tag).or_insert(0) += 1,
                    _ => {
                        e.fetch_add(1, Ordering::SeqCst);
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        Traffic {
            stop,
            errors,
            served,
            task,
        }
    }

    fn served_by(&self, tag: &str) -> usize {
        self.served.lock().unwrap().get(tag).copied().unwrap_or(0)
    }

    async fn stop(self) -> usize {
        self.stop.store(true, Ordering::SeqCst);
        tokio::time::timeout(PATIENCE, self.task)
            .await
            .expect("traffic stops")
            .expect("traffic task");
        self.errors.load(Ordering::SeqCst)
    }
}

async fn tag_from(to: SocketAddr) -> Option<String> {
    let mut stream = TcpStream::connect(to).await.ok()?;
    let mut tag = Vec::new();
    let mut byte = [0u8; 1];
    while stream.read_exact(&mut byte).await.is_ok() && byte[0] != b'\n' {
        tag.push(byte[0]);
    }
    (!tag.is_empty()).then(|| String::from_utf8_lossy(&tag).into_owned())
}

#[tokio::test]
async fn addresses_join_and_leave_while_clients_keep_being_served() {
    let port = free_port();
    let _backends = backends_on(port, &[2, 3, 4]).await;
    let zone = Zone::start(&hosts("pg.test", &[2, 3]), &[]).await;
    let group = pg_group(port, zone.addr, "ttl");
    let proxy = TestProxy::start(&config(&group)).await;
    wait_for_set(&proxy, &set_of(port, &[2, 3])).await;
    let traffic = Traffic::start(proxy.addr("pg"));
    let first = format!("127.0.0.2:{port}");
    let joined = format!("127.0.0.4:{port}");
    common::wait_until("127.0.0.2 serves clients", || traffic.served_by(&first) > 0).await;

    zone.set_hosts(&hosts("pg.test", &[3, 4]));
    wait_for_set(&proxy, &set_of(port, &[3, 4])).await;
    let before = traffic.served_by(&first);
    common::wait_until("the new address serves clients", || {
        traffic.served_by(&joined) > 0
    })
    .await;
    let served_after_leaving = traffic.served_by(&first) - before;
    let errors = traffic.stop().await;
    assert_eq!(errors, 0, "no client saw an error");
    assert_eq!(
        served_after_leaving, 0,
        "a removed address takes no new client"
    );

    // The removed address leaves /metrics once its sessions are over.
    let admin = proxy.admin.unwrap();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let scrape = get_ok(admin, "/metrics").await;
        let gone = samples(&scrape, "l4lb_backend_up", &[("backend", first.as_str())]).is_empty();
        if gone {
            let errors = samples(&scrape, "l4lb_discovery_errors_total", &[("service", "pg")]);
            assert_eq!(errors.len(), 1, "the error counter is there from the start");
            assert_eq!(errors[0].1, 0.0);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{first} never left /metrics"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let group = group_status(&proxy).await;
    assert_eq!(group["name"], "pg.test");
    assert_eq!(group["kind"], "dns");
    assert!(group["last_error"].is_null());
    proxy.stop().await;
}

#[tokio::test]
async fn a_stopped_resolver_changes_nothing_and_is_counted() {
    let port = free_port();
    let _backends = backends_on(port, &[2, 3]).await;
    let zone = Zone::start(&hosts("pg.test", &[2, 3]), &[]).await;
    let relay = DnsRelay::start(zone.addr).await;
    let group = format!("{}\ntimeout = \"300ms\"", pg_group(port, relay.addr, "1s"));
    let proxy = TestProxy::start(&config(&group)).await;
    let set = set_of(port, &[2, 3]);
    wait_for_set(&proxy, &set).await;
    let traffic = Traffic::start(proxy.addr("pg"));

    relay.set_down(true);
    // Down for 6 refresh intervals (1 s each, backing off): several lookups fail.
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(listed(&proxy).await, set, "the set stays while DNS is down");
    }
    let group = group_status(&proxy).await;
    assert!(group["last_error"].as_str().is_some(), "{group}");
    assert!(group["errors"].as_u64().unwrap() >= 2, "{group}");
    assert!(group["age_seconds"].as_f64().unwrap() > 2.0, "{group}");
    let scrape = get_ok(proxy.admin.unwrap(), "/metrics").await;
    let counted = samples(&scrape, "l4lb_discovery_errors_total", &[("service", "pg")]);
    assert!(counted[0].1 >= 2.0, "{counted:?}");

    relay.set_down(false);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !group_status(&proxy).await["last_error"].is_null() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "lookups never recovered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(listed(&proxy).await, set);
    assert_eq!(traffic.stop().await, 0, "no client saw an error");
    proxy.stop().await;
}

#[tokio::test]
async fn one_nxdomain_changes_nothing_three_in_a_row_empty_the_group() {
    let port = free_port();
    let _backends = backends_on(port, &[2, 3]).await;
    let zone = Zone::start(&hosts("pg.test", &[2, 3]), &[]).await;
    let group = pg_group(port, zone.addr, "1s");
    let proxy = TestProxy::start(&config(&group)).await;
    let set = set_of(port, &[2, 3]);
    wait_for_set(&proxy, &set).await;

    zone.set_hosts("");
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let group = group_status(&proxy).await;
        if group["empty_answers_in_a_row"].as_u64() >= Some(1) {
            assert!(
                group["last_error"].as_str().unwrap().contains("NXDOMAIN"),
                "{group}"
            );
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no NXDOMAIN seen");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    zone.set_hosts(&hosts("pg.test", &[2, 3]));
    assert_eq!(listed(&proxy).await, set, "one NXDOMAIN empties nothing");
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while group_status(&proxy).await["empty_answers_in_a_row"] != 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "records never came back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(listed(&proxy).await, set);

    zone.set_hosts("");
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        // The set first: a count read before it could predate the answer that emptied it.
        let now_listed = listed(&proxy).await;
        let group = group_status(&proxy).await;
        let in_a_row = group["empty_answers_in_a_row"].as_u64().unwrap();
        if now_listed.is_empty() {
            assert!(in_a_row >= 3, "emptied after {in_a_row} empty answers");
            break;
        }
        assert_eq!(now_listed, set, "the set is whole until it is emptied");
        assert!(tokio::time::Instant::now() < deadline, "never emptied");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    proxy.stop().await;
}

#[tokio::test]
async fn srv_weights_become_weights_and_priorities_backup_tiers() {
    let [a, b, c] = [
        TestBackend::start("a", Behaviour::Tagged).await,
        TestBackend::start("b", Behaviour::Tagged).await,
        TestBackend::start("c", Behaviour::Tagged).await,
    ];
    let srv = vec![
        format!("_pg._tcp.pg.test,a.pg.test,{},0,3", a.addr.port()),
        format!("_pg._tcp.pg.test,b.pg.test,{},0,1", b.addr.port()),
        format!("_pg._tcp.pg.test,c.pg.test,{},1,5", c.addr.port()),
    ];
    let names = "127.0.0.1 a.pg.test\n127.0.0.1 b.pg.test\n127.0.0.1 c.pg.test\n";
    let zone = Zone::start(names, &srv).await;
    let group = format!(
        "srv = \"_pg._tcp.pg.test\"\nresolvers = [\"{}\"]",
        zone.addr
    );
    let proxy = TestProxy::start(&config(&group)).await;
    let all: BTreeSet<String> = [&a, &b, &c].iter().map(|x| x.addr.to_string()).collect();
    wait_for_set(&proxy, &all).await;

    let status = status(&proxy).await;
    let backends = status["services"][0]["backends"].as_array().unwrap();
    let of = |addr: SocketAddr| {
        let b = backends.iter().find(|b| b["address"] == addr.to_string());
        let b = b.expect("listed");
        (
            b["weight"].as_u64().unwrap(),
            b["backup"].as_bool().unwrap(),
        )
    };
    assert_eq!(of(a.addr), (3, false));
    assert_eq!(of(b.addr), (1, false));
    assert_eq!(of(c.addr), (5, true), "a higher priority value is a backup");

    let mut served: HashMap<String, usize> = HashMap::new();
    for _ in 0..40 {
        let tag = tag_from(proxy.addr("pg")).await.expect("served");
        *served.entry(tag).or_insert(0) += 1;
    }
    assert_eq!(served.get("a"), Some(&30), "{served:?}");
    assert_eq!(served.get("b"), Some(&10), "{served:?}");
    assert_eq!(
        served.get("c"),
        None,
        "the backup is idle while primaries serve"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn a_ttl_of_zero_is_clamped_to_one_second() {
    let port = free_port();
    let _backends = backends_on(port, &[2]).await;
    let zone = Zone::start(&hosts("pg.test", &[2]), &[]).await;
    let relay = DnsRelay::start(zone.addr).await;
    let group = pg_group(port, relay.addr, "ttl");
    let proxy = TestProxy::start(&config(&group)).await;
    wait_for_set(&proxy, &set_of(port, &[2])).await;
    let start = relay.queries();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let asked = relay.queries() - start;
    eprintln!("TTL 0: {asked} DNS queries in 3 s");
    // dnsmasq answers with TTL 0; one lookup (A + AAAA) per second is about 6
    // queries in 3 s, and a lookup loop that honoured TTL 0 would ask thousands.
    assert!(asked >= 2, "the group kept asking: {asked}");
    assert!(asked <= 20, "TTL 0 was not clamped: {asked} queries in 3 s");
    let next = group_status(&proxy).await["next_refresh_seconds"].as_f64();
    assert!(next.is_none_or(|n| n <= 1.0), "{next:?}");
    proxy.stop().await;
}

#[tokio::test]
async fn a_slow_resolver_never_delays_healthz() {
    let port = free_port();
    let _backends = backends_on(port, &[2]).await;
    let zone = Zone::start(&hosts("pg.test", &[2]), &[]).await;
    let relay = DnsRelay::start(zone.addr).await;
    relay.set_delay(Duration::from_secs(2));
    let group = pg_group(port, relay.addr, "1s");
    let proxy = TestProxy::start(&config(&group)).await;
    let admin = proxy.admin.unwrap();
    common::wait_until("a lookup is in flight", || relay.pending() > 0).await;
    let mut answered_while_pending = 0;
    for _ in 0..20 {
        let (status, body) = http(admin, "GET", "/healthz").await;
        assert_eq!((status, body.trim()), (200, "ok"));
        if relay.pending() > 0 {
            answered_while_pending += 1;
        }
    }
    eprintln!("/healthz: {answered_while_pending} of 20 answers came while a lookup waited");
    assert!(
        answered_while_pending > 0,
        "/healthz waited for the resolver"
    );
    // The slow answers still arrive and are used.
    wait_for_set(&proxy, &set_of(port, &[2])).await;
    proxy.stop().await;
}

#[tokio::test]
async fn a_reload_keeps_a_groups_set_and_static_backends_mix_with_it() {
    let port = free_port();
    let _backends = backends_on(port, &[2, 3, 4]).await;
    let zone = Zone::start(&hosts("pg.test", &[2, 3]), &[]).await;
    let relay = DnsRelay::start(zone.addr).await;
    // The static backend is also in DNS: it is listed once.
    let text = format!(
        "{}\n[[service.backend]]\naddress = \"127.0.0.3:{port}\"\n\
         [[service.backend]]\naddress = \"127.0.0.4:{port}\"\n",
        config(&pg_group(port, relay.addr, "1s"))
    );
    let proxy = TestProxy::start(&text).await;
    let all = set_of(port, &[2, 3, 4]);
    wait_for_set(&proxy, &all).await;

    // With DNS down, a reload of the same file keeps the discovered address.
    relay.set_down(true);
    proxy.reload(&text).await.expect("reload");
    assert_eq!(listed(&proxy).await, all, "the reload kept the group's set");
    let status = status(&proxy).await;
    let listed_twice = status["services"][0]["backends"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["address"] == format!("127.0.0.3:{port}"))
        .count();
    assert_eq!(listed_twice, 1);
    proxy.stop().await;
}

#[tokio::test]
/// `consistent_hash`, whose ring loses only the vanished address's points (a
/// rebuilt `maglev` table also moves a few other clients, by design).
async fn a_hashing_strategy_moves_only_the_clients_of_a_vanished_address() {
    let port = free_port();
    let _backends = backends_on(port, &[2, 3, 4]).await;
    let zone = Zone::start(&hosts("pg.test", &[2, 3, 4]), &[]).await;
    let group = pg_group(port, zone.addr, "1s");
    let text = config(&group).replace(
        "name = \"pg\"\n",
        "name = \"pg\"\nstrategy = \"consistent_hash\"\n",
    );
    let proxy = TestProxy::start(&text).await;
    wait_for_set(&proxy, &set_of(port, &[2, 3, 4])).await;
    let to = proxy.addr("pg");
    let clients: Vec<[u8; 4]> = (1..=40).map(|i| [127, 1, 0, i]).collect();
    let mut before = HashMap::new();
    for &source in &clients {
        let mut stream = common::connect_from(source, to).await;
        before.insert(source, common::read_tag(&mut stream).await);
    }
    let removed = format!("127.0.0.4:{port}");
    assert!(before.values().any(|t| *t == removed), "{before:?}");

    zone.set_hosts(&hosts("pg.test", &[2, 3]));
    wait_for_set(&proxy, &set_of(port, &[2, 3])).await;
    for &source in &clients {
        let mut stream = common::connect_from(source, to).await;
        let now = common::read_tag(&mut stream).await;
        if before[&source] == removed {
            assert_ne!(now, removed, "{source:?} moved off the vanished address");
        } else {
            assert_eq!(now, before[&source], "{source:?} stayed on its backend");
        }
    }
    proxy.stop().await;
}

#[tokio::test]
async fn an_address_that_leads_back_into_l4lb_is_left_out() {
    let port = free_port();
    let _backends = backends_on(port, &[2, 3]).await;
    // 127.0.0.1:port is the service's own listener.
    let zone = Zone::start(&hosts("pg.test", &[1, 2, 3]), &[]).await;
    let group = pg_group(port, zone.addr, "1s");
    let text = config(&group).replace(
        "name = \"pg\"\nlisten = \"127.0.0.1:0\"",
        &format!("name = \"pg\"\nlisten = \"127.0.0.1:{port}\""),
    );
    let proxy = TestProxy::start(&text).await;
    wait_for_set(&proxy, &set_of(port, &[2, 3])).await;
    let to = proxy.addr("pg");
    for _ in 0..10 {
        let mut stream = tokio::net::TcpStream::connect(to).await.expect("connect");
        let tag = common::read_tag(&mut stream).await;
        assert!(set_of(port, &[2, 3]).contains(&tag), "served by {tag}");
    }
    proxy.stop().await;
}
