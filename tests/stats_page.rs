//! The stats page (`GET /`, `GET /stats`) in a real browser: headless
//! Chromium loads it from the real binary's admin endpoint, lets its script
//! poll `/status`, and the DOM it built must show each backend in the state
//! `/status` gives — also after a backend is killed. The runtime-API buttons
//! are there only when a token is configured, and clicking them (Chromium
//! driven over the DevTools protocol) asks for the token and sends it to the
//! runtime API. Writes a screenshot to
//! `target/stats-page.png` (or to `$L4LB_SCREENSHOT`, e.g. docs/stats-page.png).

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use common::binary::RunningL4lb;
use common::chromium::{attribute_pairs, dump_dom, screenshot};
use common::{Behaviour, TestBackend, get_ok, http, wait_until_async};
use tokio::io::AsyncReadExt;

fn config(web: &[SocketAddr], udp: SocketAddr) -> String {
    let mut toml = String::from(
        "[[service]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\nstrategy = \"least_connections\"\n\
         [service.health]\ninterval = \"200ms\"\ntimeout = \"100ms\"\nrise = 1\nfall = 1\n",
    );
    for (i, addr) in web.iter().enumerate() {
        let backup = i == web.len() - 1;
        toml.push_str(&format!(
            "[[service.backend]]\naddress = \"{addr}\"\nweight = {}\nbackup = {backup}\n",
            i + 1
        ));
    }
    toml.push_str(&format!(
        "[[service]]\nname = \"dns\"\nprotocol = \"udp\"\nlisten = \"127.0.0.1:0\"\n\
         [[service.backend]]\naddress = \"{udp}\"\n"
    ));
    toml
}

async fn status(admin: SocketAddr) -> serde_json::Value {
    serde_json::from_str(&get_ok(admin, "/status").await).expect("/status is JSON")
}

/// Every backend's state as `/status` gives it, by address.
fn states(status: &serde_json::Value) -> BTreeMap<String, String> {
    let mut states = BTreeMap::new();
    for service in status["services"].as_array().expect("services") {
        for backend in service["backends"].as_array().expect("backends") {
            let address = backend["address"].as_str().expect("address");
            let state = backend["state"].as_str().expect("state");
            states.insert(address.to_string(), state.to_string());
        }
    }
    states
}

/// The page's DOM after its script polled, with every backend row's state.
async fn page(
    admin: SocketAddr,
    path: &str,
    profile: PathBuf,
) -> (String, BTreeMap<String, String>) {
    let url = format!("http://{admin}{path}");
    let dom = tokio::task::spawn_blocking(move || dump_dom(&profile, &url))
        .await
        .expect("chromium task");
    let body = attribute_pairs(&dom, "data-polls", "data-last-poll");
    let polls: u32 = body.first().map_or(0, |(n, _)| n.parse().unwrap_or(0));
    assert!(polls >= 2, "the page polled /status {polls} times:\n{dom}");
    assert_eq!(body[0].1, "ok", "the last poll failed:\n{dom}");
    let rows = attribute_pairs(&dom, "data-backend", "data-state")
        .into_iter()
        .collect();
    (dom, rows)
}

/// Sends one datagram through the UDP service, so the page has a flow to show.
async fn one_udp_flow(listen: &str) {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("udp client");
    socket.send_to(b"ping", listen).await.expect("send");
    let mut reply = [0u8; 16];
    let got = tokio::time::timeout(common::PATIENCE, socket.recv(&mut reply)).await;
    assert!(matches!(got, Ok(Ok(4))), "no udp echo: {got:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_what_status_says_before_and_after_a_backend_dies() {
    let a = TestBackend::start("a", Behaviour::Tagged).await;
    let b = TestBackend::start("b", Behaviour::Tagged).await;
    let c = TestBackend::start("c", Behaviour::Tagged).await;
    let udp = common::udp_echo().await;
    let l4lb = RunningL4lb::start(
        "stats-page",
        &config(&[a.addr, b.addr, c.addr], udp),
        "s3cret",
    );
    let admin = l4lb.admin;
    let profile = l4lb.dir.join("chromium");
    wait_until_async("every backend up", || async {
        states(&status(admin).await).values().all(|s| s == "up")
    })
    .await;
    let now = status(admin).await;
    let web = now["services"][0]["listen"][0]
        .as_str()
        .expect("web listen")
        .to_string();
    for _ in 0..5 {
        let mut client = tokio::net::TcpStream::connect(&web).await.expect("connect");
        let mut tag = [0u8; 2];
        client.read_exact(&mut tag).await.expect("tag");
    }
    let dns = now["services"][1]["listen"][0]
        .as_str()
        .expect("dns listen")
        .to_string();
    one_udp_flow(&dns).await;

    let (dom, rows) = page(admin, "/", profile.clone()).await;
    assert_eq!(rows, states(&status(admin).await), "{dom}");
    assert_eq!(rows.len(), 4, "{dom}");
    assert!(dom.contains("data-token-required=\"true\""), "{dom}");
    let buttons = attribute_pairs(&dom, "data-action", "title");
    assert_eq!(
        buttons.len(),
        4 * 3,
        "drain, maint and ready per backend:\n{dom}"
    );
    assert!(dom.contains("1 UDP flows"), "{dom}");

    a.stop();
    wait_until_async("a down", || async {
        states(&status(admin).await)[&a.addr.to_string()] == "down"
    })
    .await;
    let (dom, rows) = page(admin, "/stats", profile.clone()).await;
    assert_eq!(rows, states(&status(admin).await), "{dom}");
    assert_eq!(rows[&a.addr.to_string()], "down", "{dom}");
    assert_eq!(rows[&b.addr.to_string()], "up", "{dom}");
    assert!(
        dom.contains("Connection refused"),
        "the last probe's error:\n{dom}"
    );

    let drained = std::process::Command::new(common::binary::BIN)
        .args(["backend", "drain", "web", &c.addr.to_string()])
        .args(["--admin", &admin.to_string()])
        .env("L4LB_TOKEN", "s3cret")
        .output()
        .expect("l4lb backend drain");
    assert!(drained.status.success(), "{drained:?}");
    let (dom, rows) = page(admin, "/", profile.clone()).await;
    assert_eq!(rows, states(&status(admin).await), "{dom}");
    assert_eq!(rows[&c.addr.to_string()], "draining", "{dom}");

    let out = std::env::var_os("L4LB_SCREENSHOT").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/stats-page.png"),
        PathBuf::from,
    );
    let url = format!("http://{admin}/");
    tokio::task::spawn_blocking(move || screenshot(&profile, &url, &out, 1600, 600))
        .await
        .expect("screenshot task");
    drop((b, c));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_the_page_has_no_runtime_api_buttons() {
    let a = TestBackend::start("a", Behaviour::Echo).await;
    let udp = common::udp_echo().await;
    let l4lb = RunningL4lb::start("stats-page-open", &config(&[a.addr], udp), "");
    let (status_code, body) = http(l4lb.admin, "GET", "/").await;
    assert_eq!(status_code, 200);
    assert!(body.starts_with("<!doctype html>"), "{body}");
    let (dom, rows) = page(l4lb.admin, "/", l4lb.dir.join("chromium")).await;
    assert_eq!(rows.len(), 2, "{dom}");
    assert!(dom.contains("data-token-required=\"false\""), "{dom}");
    assert!(
        attribute_pairs(&dom, "data-action", "title").is_empty(),
        "{dom}"
    );
    assert!(!dom.contains("runtime API</th>"), "{dom}");
}

/// Clicks the `action` button of `address` with `window.prompt` answering
/// `token`; the notice the page shows afterwards.
fn click(
    browser: &mut common::devtools::Browser,
    address: &str,
    action: &str,
    token: &str,
) -> String {
    let script = format!(
        r#"(async () => {{
            const until = async (ok) => {{ for (let i = 0; i < 400 && !ok(); i++) await new Promise(r => setTimeout(r, 25)); }};
            const selector = 'tr[data-backend="{address}"] button[data-action="{action}"]';
            await until(() => document.querySelector(selector));
            window.prompted = 0;
            window.prompt = () => {{ window.prompted += 1; return {token:?}; }};
            const notice = document.getElementById("notice");
            notice.textContent = ""; notice.hidden = true;
            document.querySelector(selector).click();
            await until(() => !notice.hidden);
            return notice.textContent + " (prompted " + window.prompted + ")";
        }})()"#
    );
    browser
        .eval(&script)
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_buttons_ask_for_the_token_and_send_it_to_the_runtime_api() {
    let a = TestBackend::start("a", Behaviour::Echo).await;
    let b = TestBackend::start("b", Behaviour::Echo).await;
    let udp = common::udp_echo().await;
    let l4lb = RunningL4lb::start(
        "stats-page-click",
        &config(&[a.addr, b.addr], udp),
        "s3cret",
    );
    let admin = l4lb.admin;
    let profile = l4lb.dir.join("chromium");
    let addr = a.addr.to_string();
    let (wrong, right, again, ready) = tokio::task::spawn_blocking(move || {
        let mut browser = common::devtools::Browser::start(&profile);
        browser.open(&format!("http://{admin}/"));
        let wrong = click(&mut browser, &addr, "drain", "wrong");
        let right = click(&mut browser, &addr, "drain", "s3cret");
        // The token is kept for the tab: no second prompt.
        let again = click(&mut browser, &addr, "maint", "unused");
        let ready = click(&mut browser, &addr, "ready", "unused");
        (wrong, right, again, ready)
    })
    .await
    .expect("browser task");
    assert_eq!(
        wrong,
        format!(
            "drain {}: 401 missing or wrong bearer token (prompted 1)",
            a.addr
        )
    );
    assert_eq!(right, format!("web {}: up → draining (prompted 1)", a.addr));
    assert_eq!(
        again,
        format!("web {}: draining → maint (prompted 0)", a.addr)
    );
    assert_eq!(ready, format!("web {}: maint → up (prompted 0)", a.addr));
    assert_eq!(states(&status(admin).await)[&a.addr.to_string()], "up");
    drop(b);
}
