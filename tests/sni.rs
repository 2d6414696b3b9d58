//! Routing TLS by server name at layer 4, over real sockets: `openssl s_server`
//! backends with their own self-signed certificates behind one l4lb port,
//! `openssl s_client -servername` and `curl --resolve` clients that say which
//! certificate they got; no-SNI and plain-TCP clients; a ClientHello dribbled
//! one byte at a time; oversized and malformed hellos; the byte-exact relay
//! after the peek.

mod common;

use common::servers::ScratchDir;
use common::tls::{self, DRIBBLE_PAUSE, TlsServer, client_hello};
use common::{
    Behaviour, TestBackend, TestProxy, connect_from, random_bytes, read_tag, read_until_closed,
};
use l4lb::service::RejectReason;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

fn routed_service(default: &str, routes: &[(&str, &str)], extra: &str) -> String {
    let mut toml = format!(
        "[[service]]\nname = \"tls\"\nlisten = \"127.0.0.1:0\"\n{extra}\n\
         [[service.backend]]\naddress = \"{default}\"\n"
    );
    for (sni, backend) in routes {
        toml.push_str(&format!(
            "[[service.route]]\nsni = [{sni}]\n[[service.route.backend]]\naddress = \"{backend}\"\n"
        ));
    }
    toml
}

#[tokio::test]
async fn tls_clients_get_the_certificate_of_the_backend_their_server_name_routes_to() {
    let Some(openssl) = tls::openssl() else {
        return;
    };
    let dir = ScratchDir::new("sni-certs");
    let db = TlsServer::start(&openssl, &dir, "db1.example.com").await;
    let api = TlsServer::start(&openssl, &dir, "*.api.example.com").await;
    let fallback = TlsServer::start(&openssl, &dir, "fallback.example.com").await;
    let toml = routed_service(
        &fallback.addr.to_string(),
        &[
            ("\"db1.example.com\"", &db.addr.to_string()),
            ("\"*.api.example.com\"", &api.addr.to_string()),
        ],
        "",
    );
    let proxy = TestProxy::start(&toml).await;
    let addr = proxy.addr("tls");

    let subject = |name: Option<&'static str>| tls::s_client_subject(&openssl, addr, name);
    assert_eq!(
        subject(Some("db1.example.com")).await.as_deref(),
        Some("db1.example.com")
    );
    assert_eq!(
        subject(Some("DB1.Example.COM")).await.as_deref(),
        Some("db1.example.com")
    );
    assert_eq!(
        subject(Some("v2.api.example.com")).await.as_deref(),
        Some("*.api.example.com")
    );
    assert_eq!(
        subject(Some("a.b.api.example.com")).await.as_deref(),
        Some("fallback.example.com")
    );
    assert_eq!(
        subject(Some("other.example.com")).await.as_deref(),
        Some("fallback.example.com")
    );
    assert_eq!(subject(None).await.as_deref(), Some("fallback.example.com"));
    if let Some(cn) = tls::curl_subject("db1.example.com", addr).await {
        assert_eq!(cn, "db1.example.com");
    }

    let service = proxy.service("tls");
    let routed: Vec<(String, u64)> = service
        .pools()
        .iter()
        .map(|p| (p.name().to_string(), p.routed()))
        .collect();
    let db_clients = if common::servers::find_binary("curl", &[]).is_some() {
        3
    } else {
        2
    };
    assert_eq!(
        routed,
        [
            ("default".to_string(), 3),
            ("db1.example.com".to_string(), db_clients),
            ("*.api.example.com".to_string(), 1),
        ]
    );
    assert_eq!(service.rejections(RejectReason::TlsPreread), 0);
    proxy.assert_drained().await;
}

#[tokio::test]
async fn no_sni_reject_turns_away_clients_without_a_name_and_clients_not_speaking_tls() {
    let Some(openssl) = tls::openssl() else {
        return;
    };
    let dir = ScratchDir::new("sni-reject");
    let db = TlsServer::start(&openssl, &dir, "db1.example.com").await;
    let fallback = TestBackend::start("fallback", Behaviour::Tagged).await;
    let toml = routed_service(
        &fallback.addr.to_string(),
        &[("\"db1.example.com\"", &db.addr.to_string())],
        "no_sni = \"reject\"",
    );
    let proxy = TestProxy::start(&toml).await;
    let addr = proxy.addr("tls");

    assert_eq!(tls::s_client_subject(&openssl, addr, None).await, None);
    let mut plain = TcpStream::connect(addr).await.expect("connect");
    plain.write_all(b"PING\r\n").await.expect("write");
    assert!(
        read_until_closed(&mut plain)
            .await
            .unwrap_or_default()
            .is_empty()
    );
    assert_eq!(
        tls::s_client_subject(&openssl, addr, Some("db1.example.com"))
            .await
            .as_deref(),
        Some("db1.example.com")
    );
    let service = proxy.service("tls");
    assert_eq!(service.rejections(RejectReason::NoSni), 2);
    assert_eq!(
        fallback.accepted(),
        0,
        "rejected clients never reach a backend"
    );
    proxy.assert_drained().await;
}

#[tokio::test]
async fn with_no_sni_default_plain_tcp_and_silent_clients_reach_the_default_route() {
    let fallback = TestBackend::start("fallback", Behaviour::Tagged).await;
    let routed = TestBackend::start("routed", Behaviour::Tagged).await;
    let toml = routed_service(
        &fallback.addr.to_string(),
        &[("\"db1.example.com\"", &routed.addr.to_string())],
        "preread_timeout = \"300ms\"",
    );
    let proxy = TestProxy::start(&toml).await;
    let addr = proxy.addr("tls");

    let mut plain = TcpStream::connect(addr).await.expect("connect");
    plain
        .write_all(b"GET / HTTP/1.0\r\n\r\n")
        .await
        .expect("write");
    assert_eq!(read_tag(&mut plain).await, "fallback");
    // A client that waits for the server to speak first: after preread_timeout
    // with no byte at all, it is not TLS.
    let mut silent = TcpStream::connect(addr).await.expect("connect");
    assert_eq!(read_tag(&mut silent).await, "fallback");
    let mut named = TcpStream::connect(addr).await.expect("connect");
    named
        .write_all(&client_hello(Some("db1.example.com"), 16384))
        .await
        .expect("write");
    assert_eq!(read_tag(&mut named).await, "routed");
    drop((plain, silent, named));
    proxy.assert_drained().await;
}

#[tokio::test]
async fn a_client_hello_sent_one_byte_at_a_time_still_routes() {
    let fallback = TestBackend::start("fallback", Behaviour::Tagged).await;
    let routed = TestBackend::start("routed", Behaviour::Tagged).await;
    let toml = routed_service(
        &fallback.addr.to_string(),
        &[("\"*.api.example.com\"", &routed.addr.to_string())],
        "",
    );
    let proxy = TestProxy::start(&toml).await;
    let addr = proxy.addr("tls");

    // One byte per write, in records of 7 bytes: segments and records both split.
    let hello = client_hello(Some("v1.api.example.com"), 7);
    let mut client = TcpStream::connect(addr).await.expect("connect");
    client.set_nodelay(true).expect("nodelay");
    for byte in &hello {
        client.write_all(&[*byte]).await.expect("write one byte");
        tokio::time::sleep(DRIBBLE_PAUSE).await;
    }
    assert_eq!(read_tag(&mut client).await, "routed");
    assert_eq!(fallback.accepted(), 0);
    drop(client);
    proxy.assert_drained().await;
}

/// Sends `bytes` (ignoring a reset part-way) and says whether the connection
/// was closed without a single byte from a backend.
async fn closed_without_reply(addr: std::net::SocketAddr, bytes: Vec<u8>) -> bool {
    let client = TcpStream::connect(addr).await.expect("connect");
    let (mut reader, mut writer) = client.into_split();
    let sender = tokio::spawn(async move {
        let _ = writer.write_all(&bytes).await;
        writer
    });
    let mut received = Vec::new();
    let read = tokio::time::timeout(
        common::PATIENCE,
        tokio::io::AsyncReadExt::read_to_end(&mut reader, &mut received),
    )
    .await
    .expect("the connection is closed in time");
    drop(sender);
    read.is_err() || received.is_empty()
}

#[tokio::test]
async fn oversized_malformed_and_sslv2_hellos_are_rejected_within_the_read_ahead_limit() {
    let fallback = TestBackend::start("fallback", Behaviour::Tagged).await;
    let toml = routed_service(
        &fallback.addr.to_string(),
        &[(
            "\"db1.example.com\"",
            &fallback.addr.to_string().replace("127.0.0.1", "127.0.0.2"),
        )],
        "",
    );
    let proxy = TestProxy::start(&toml).await;
    let addr = proxy.addr("tls");

    // A handshake record announcing a 1 MiB ClientHello, then 1 MiB of garbage.
    let mut huge = vec![22, 3, 1, 0x40, 0, 1, 0x10, 0, 0];
    huge.extend(random_bytes(1 << 20, 7));
    assert!(closed_without_reply(addr, huge).await);
    // 1 MiB of garbage that starts like a TLS record.
    let mut garbage = vec![22];
    garbage.extend(random_bytes(1 << 20, 8));
    assert!(closed_without_reply(addr, garbage).await);
    // A valid hello cut into 1-byte records: more than 16 KiB to read ahead.
    let mut tiny_records = tls::padded_client_hello(Some("db1.example.com"), 3000, 1);
    assert!(tiny_records.len() > 16 * 1024);
    tiny_records.extend(random_bytes(1 << 20, 9));
    assert!(closed_without_reply(addr, tiny_records).await);
    // An SSLv2-style hello.
    assert!(closed_without_reply(addr, vec![0x80, 0x2e, 0x01, 0x00, 0x02, 0, 0x15]).await);

    let service = proxy.service("tls");
    assert_eq!(service.rejections(RejectReason::TlsPreread), 4);
    assert_eq!(fallback.accepted(), 0);
    proxy.assert_drained().await;
}

#[tokio::test]
async fn an_unfinished_hello_is_rejected_after_the_preread_timeout() {
    let fallback = TestBackend::start("fallback", Behaviour::Tagged).await;
    let toml = routed_service(
        &fallback.addr.to_string(),
        &[("\"db1.example.com\"", "127.0.0.3:9")],
        "preread_timeout = \"200ms\"",
    );
    let proxy = TestProxy::start(&toml).await;
    let hello = client_hello(Some("db1.example.com"), 16384);
    let mut client = TcpStream::connect(proxy.addr("tls"))
        .await
        .expect("connect");
    client
        .write_all(&hello[..hello.len() / 2])
        .await
        .expect("write");
    assert!(
        read_until_closed(&mut client)
            .await
            .unwrap_or_default()
            .is_empty()
    );
    assert_eq!(proxy.service("tls").rejections(RejectReason::TlsPreread), 1);
    assert_eq!(fallback.accepted(), 0);
    proxy.assert_drained().await;
}

#[tokio::test]
async fn every_byte_after_the_peek_reaches_the_backend_exactly() {
    let fallback = TestBackend::start("fallback", Behaviour::Tagged).await;
    let echo = TestBackend::start("echo", Behaviour::Echo).await;
    let toml = routed_service(
        &fallback.addr.to_string(),
        &[("\"db1.example.com\"", &echo.addr.to_string())],
        "",
    );
    let proxy = TestProxy::start(&toml).await;
    let mut sent = client_hello(Some("db1.example.com"), 100);
    sent.extend(random_bytes(1 << 20, 11));
    let client = TcpStream::connect(proxy.addr("tls"))
        .await
        .expect("connect");
    let (mut reader, mut writer) = client.into_split();
    let payload = sent.clone();
    let sender = tokio::spawn(async move {
        writer.write_all(&payload).await.expect("send");
        writer.shutdown().await.expect("half-close");
    });
    let mut received = Vec::new();
    tokio::time::timeout(
        common::PATIENCE,
        tokio::io::AsyncReadExt::read_to_end(&mut reader, &mut received),
    )
    .await
    .expect("echo ends in time")
    .expect("read echo");
    sender.await.expect("sender");
    assert_eq!(received.len(), sent.len());
    assert!(
        received == sent,
        "the stream arrives byte for byte, hello included"
    );
    proxy.assert_drained().await;
}

#[tokio::test]
async fn hash_key_sni_keeps_one_server_name_on_one_backend_whoever_asks() {
    let backends = [
        TestBackend::start("b0", Behaviour::Tagged).await,
        TestBackend::start("b1", Behaviour::Tagged).await,
        TestBackend::start("b2", Behaviour::Tagged).await,
    ];
    let blocks = common::backend_blocks(&backends.iter().map(|b| b.addr).collect::<Vec<_>>(), &[]);
    let toml = format!(
        "[[service]]\nname = \"tls\"\nlisten = \"127.0.0.1:0\"\nstrategy = \"maglev\"\n\
         table_size = 251\nhash_key = \"sni\"\n{blocks}"
    );
    let proxy = TestProxy::start(&toml).await;
    let addr = proxy.addr("tls");
    let mut seen_tags = std::collections::BTreeSet::new();
    for name in [
        "a.example.com",
        "b.example.com",
        "c.example.com",
        "d.example.com",
    ] {
        let mut tags = std::collections::BTreeSet::new();
        for source in 2..8u8 {
            let mut client = connect_from([127, 0, 0, source], addr).await;
            client
                .write_all(&client_hello(Some(name), 16384))
                .await
                .expect("write");
            tags.insert(read_tag(&mut client).await);
        }
        assert_eq!(tags.len(), 1, "{name} went to {tags:?}");
        seen_tags.extend(tags);
    }
    assert!(!seen_tags.is_empty());
    proxy.assert_drained().await;
}

#[tokio::test]
async fn routes_show_in_metrics_and_status_have_health_checks_and_reload_as_a_diff() {
    let fallback = TestBackend::start("fallback", Behaviour::Tagged).await;
    let first = TestBackend::start("first", Behaviour::Tagged).await;
    let second = TestBackend::start("second", Behaviour::Tagged).await;
    let config = |route_backend: std::net::SocketAddr| {
        format!(
            "[admin]\nlisten = \"127.0.0.1:0\"\n{}\
             [service.route.health]\ninterval = \"100ms\"\ntimeout = \"50ms\"\n",
            routed_service(
                &fallback.addr.to_string(),
                &[("\"db1.example.com\"", &route_backend.to_string())],
                "",
            )
        )
    };
    let proxy = TestProxy::start(&config(first.addr)).await;
    let (addr, admin) = (proxy.addr("tls"), proxy.admin.expect("admin"));
    let hello = client_hello(Some("db1.example.com"), 16384);
    let mut client = TcpStream::connect(addr).await.expect("connect");
    client.write_all(&hello).await.expect("write");
    // The echo of the hello is read too, so the echo checked below is the next thing read.
    assert_eq!(
        common::read_tag_and_echo(&mut client, &hello).await,
        "first"
    );

    let scrape = common::get_ok(admin, "/metrics").await;
    common::assert_promtool_accepts(&scrape);
    let routed = |route| {
        common::samples(
            &scrape,
            "l4lb_route_connections_total",
            &[("route", route), ("service", "tls")],
        )
    };
    assert_eq!(routed("db1.example.com").first().map(|s| s.1), Some(1.0));
    assert_eq!(routed("default").first().map(|s| s.1), Some(0.0));
    let rejected = common::samples(
        &scrape,
        "l4lb_rejected_connections_total",
        &[("reason", "tls_preread")],
    );
    assert_eq!(rejected.first().map(|s| s.1), Some(0.0));
    // The route's own check probes its backend (and only its backend).
    common::wait_until("the route's backend is probed", || {
        proxy.current("tls").backends()[1]
            .health_snapshot(std::time::Instant::now())
            .passed
            > 0
    })
    .await;
    let status: serde_json::Value =
        serde_json::from_str(&common::get_ok(admin, "/status").await).expect("JSON");
    let service = &status["services"][0];
    assert_eq!(service["backends"][0]["route"], "default");
    assert_eq!(service["backends"][1]["route"], "db1.example.com");
    assert!(service["backends"][0]["health"].is_null());
    assert!(service["backends"][1]["health"].is_object());
    assert_eq!(service["routes"][1]["sni"][0], "db1.example.com");
    assert_eq!(service["routes"][1]["routed_connections"], 1);

    // A reload moves the route to another backend: new clients go there, the
    // open session stays where it is, and the route's count carries on.
    proxy.reload(&config(second.addr)).await.expect("reload");
    let mut next = TcpStream::connect(addr).await.expect("connect");
    next.write_all(&hello).await.expect("write");
    assert_eq!(read_tag(&mut next).await, "second");
    common::echo_round_trip(&mut client, b"still here").await;
    assert_eq!(proxy.current("tls").pool(1).routed(), 2);
    drop((client, next));
    proxy.assert_drained().await;
}

#[test]
fn l4lb_check_summarises_routes_and_reports_bad_ones_with_their_lines() {
    let dir = ScratchDir::new("sni-check");
    let check = |text: &str| {
        let path = dir.path().join("lb.toml");
        std::fs::write(&path, text).expect("write config");
        std::process::Command::new(env!("CARGO_BIN_EXE_l4lb"))
            .arg("check")
            .arg(&path)
            .output()
            .expect("run l4lb check")
    };
    let good = routed_service(
        "127.0.0.1:9443",
        &[
            ("\"db1.example.com\"", "127.0.0.1:9444"),
            ("\"*.example.com\"", "127.0.0.1:9445"),
        ],
        "",
    );
    let out = check(&good);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("service \"tls\": tcp 127.0.0.1:0 -> 1 backend (round_robin), 2 routes by TLS server name (2 backends)"),
        "{stdout}"
    );

    let bad = format!(
        "{}\n[[service]]\nname = \"udp\"\nprotocol = \"udp\"\nlisten = \"127.0.0.1:0\"\n\
         [[service.backend]]\naddress = \"127.0.0.1:9446\"\n[[service.route]]\nsni = [\"u.example.com\"]\n\
         [[service.route.backend]]\naddress = \"127.0.0.1:9447\"\n",
        routed_service(
            "127.0.0.1:9443",
            &[
                ("\"db1.example.com\"", "127.0.0.1:9444"),
                ("\"DB1.example.com\"", "127.0.0.1:9445"),
                ("\"*.*.example.com\"", "127.0.0.1:9448"),
            ],
            "",
        )
    );
    let out = check(&bad);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for (place, what) in [
        (
            "lb.toml:12:8: service \"tls\".route[1].sni[0]",
            "already routed by route \"db1.example.com\"",
        ),
        (
            "lb.toml:16:8: service \"tls\".route[2].sni[0]",
            "invalid wildcard \"*.*.example.com\"",
        ),
        (
            "lb.toml:26:1: service \"udp\".route[0]",
            "routes apply to tcp services only",
        ),
    ] {
        assert!(
            stderr
                .lines()
                .any(|l| l.contains(place) && l.contains(what)),
            "missing {place}: {what} in:\n{stderr}"
        );
    }
}

#[tokio::test]
async fn behind_a_proxy_header_the_client_hello_that_follows_it_routes() {
    let fallback = TestBackend::start("fallback", Behaviour::Tagged).await;
    let routed = TestBackend::start("routed", Behaviour::Tagged).await;
    let toml = routed_service(
        &fallback.addr.to_string(),
        &[("\"db1.example.com\"", &routed.addr.to_string())],
        "accept_proxy_protocol = true",
    );
    let proxy = TestProxy::start(&toml).await;
    let mut client = TcpStream::connect(proxy.addr("tls"))
        .await
        .expect("connect");
    let mut bytes = b"PROXY TCP4 192.0.2.7 192.0.2.1 40000 443\r\n".to_vec();
    bytes.extend(client_hello(Some("db1.example.com"), 16384));
    client.write_all(&bytes).await.expect("write");
    assert_eq!(read_tag(&mut client).await, "routed");
    drop(client);
    proxy.assert_drained().await;
}

#[tokio::test]
async fn the_access_log_names_the_route_and_the_server_name() {
    let echo = TestBackend::start("echo", Behaviour::Echo).await;
    let listen = std::net::SocketAddr::from(([127, 0, 0, 1], common::ports::free_port()));
    let dir = ScratchDir::new("sni-log");
    let path = dir.path().join("lb.toml");
    let toml = routed_service(
        "127.0.0.1:9",
        &[("\"*.example.com\"", &echo.addr.to_string())],
        "",
    )
    .replace("127.0.0.1:0", &listen.to_string());
    std::fs::write(&path, toml).expect("write config");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_l4lb"))
        .args(["--log-format", "json", "run"])
        .arg(&path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn l4lb run");
    common::servers::wait_for_tcp(listen).await;
    let hello = client_hello(Some("Db1.Example.com"), 16384);
    let mut client = TcpStream::connect(listen).await.expect("connect");
    common::echo_round_trip(&mut client, &hello).await;
    drop(client);
    let stderr = tokio::task::spawn_blocking(move || {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + common::PATIENCE;
        while child.try_wait().expect("wait").is_none() {
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("l4lb did not exit after SIGTERM");
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let output = child.wait_with_output().expect("logs");
        String::from_utf8_lossy(&output.stderr).into_owned()
    })
    .await
    .expect("stop l4lb");
    // The session line is written as the session ends, the connection-probe
    // lines of wait_for_tcp included: pick the one that relayed the hello.
    let line = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| l["message"] == "session closed" && l["route"] == "*.example.com")
        .unwrap_or_else(|| panic!("no routed access line in:\n{stderr}"));
    assert_eq!(line["sni"], "db1.example.com");
    assert_eq!(line["backend"], echo.addr.to_string());
    assert_eq!(line["bytes_up"], hello.len() as u64);
}
