//! Reloads under clients that are still arriving: a client that has not reached a
//! backend yet chooses from the live backend set, and a listen address that moves
//! to another service (or whose service is renamed) stays bound throughout.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::ports::free_port;
use common::{Behaviour, Blackhole, PATIENCE, TestBackend, TestProxy, read_tag, wait_until};
use l4lb::service::RejectReason;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn blocks(backends: &[(SocketAddr, &str)]) -> String {
    backends
        .iter()
        .map(|(addr, keys)| format!("[[service.backend]]\naddress = \"{addr}\"\n{keys}\n"))
        .collect()
}

/// Service `name` on `listen` with `keys` over `backends`.
fn service(name: &str, listen: &str, keys: &str, backends: &[(SocketAddr, &str)]) -> String {
    format!(
        "[[service]]\nname = \"{name}\"\nlisten = \"{listen}\"\n{keys}\n{}",
        blocks(backends)
    )
}

#[tokio::test]
async fn a_client_in_a_connect_retry_during_a_reload_retries_on_the_new_backends() {
    let hole = Blackhole::start();
    let a = TestBackend::start("a", Behaviour::Tagged).await;
    let keys = "connect_timeout = \"1s\"\nconnect_attempts = 3";
    let before = service("svc", "127.0.0.1:0", keys, &[(hole.addr, ""), (a.addr, "")]);
    let proxy = TestProxy::start(&before).await;
    let mut client = TcpStream::connect(proxy.addr("svc"))
        .await
        .expect("connect");
    let hanging = Arc::clone(&proxy.current("svc").backends()[0]);
    wait_until("the client is connecting to the black hole", || {
        hanging.active() == 1
    })
    .await;

    let after = service(
        "svc",
        "127.0.0.1:0",
        keys,
        &[(hole.addr, ""), (a.addr, "weight = 2")],
    );
    proxy.reload(&after).await.expect("reload");
    assert_eq!(read_tag(&mut client).await, "a", "retried on the live a");
    let service = proxy.current("svc");
    assert_eq!(service.rejections(RejectReason::BackendConnect), 0);
    assert_eq!(service.rejections(RejectReason::NoBackend), 0);
}

#[tokio::test]
async fn a_client_still_sending_its_proxy_header_during_a_reload_gets_a_new_backend() {
    let a = TestBackend::start("a", Behaviour::Tagged).await;
    let b = TestBackend::start("b", Behaviour::Tagged).await;
    let keys = "accept_proxy_protocol = true";
    let proxy = TestProxy::start(&service("svc", "127.0.0.1:0", keys, &[(a.addr, "")])).await;
    let mut client = TcpStream::connect(proxy.addr("svc"))
        .await
        .expect("connect");
    client
        .write_all(b"PROXY TCP4 192.0.2.1 ")
        .await
        .expect("first half of the header");
    // Let the proxy accept the client (a client accepted after the reload would
    // make this pass without testing anything, never fail wrongly).
    tokio::time::sleep(Duration::from_millis(100)).await;

    let replaced = service("svc", "127.0.0.1:0", keys, &[(b.addr, "")]);
    proxy.reload(&replaced).await.expect("reload");
    client
        .write_all(b"192.0.2.2 1111 2222\r\n")
        .await
        .expect("rest of the header");
    assert_eq!(read_tag(&mut client).await, "b");
    assert_eq!(a.accepted(), 0);
    assert_eq!(proxy.current("svc").rejections(RejectReason::NoBackend), 0);
}

/// Connects over and over, as fast as it can, until told to stop; counts the
/// clients served (tag read) and those refused, reset or closed unserved.
struct ConnectLoop {
    stop: Arc<AtomicBool>,
    served: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl ConnectLoop {
    fn start(addr: SocketAddr) -> ConnectLoop {
        let stop = Arc::new(AtomicBool::new(false));
        let served = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(AtomicUsize::new(0));
        let (s, ok, bad) = (stop.clone(), served.clone(), failed.clone());
        let task = tokio::spawn(async move {
            while !s.load(Ordering::SeqCst) {
                let attempt = async {
                    let mut stream = TcpStream::connect(addr).await?;
                    let mut tag = [0u8; 2];
                    stream.read_exact(&mut tag).await.map(drop)
                };
                match tokio::time::timeout(PATIENCE, attempt).await {
                    Ok(Ok(())) => ok.fetch_add(1, Ordering::SeqCst),
                    _ => bad.fetch_add(1, Ordering::SeqCst),
                };
            }
        });
        ConnectLoop {
            stop,
            served,
            failed,
            task,
        }
    }

    fn served(&self) -> usize {
        self.served.load(Ordering::SeqCst)
    }

    /// Stops the loop; returns `(served, failed)`.
    async fn finish(self) -> (usize, usize) {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.expect("connect loop");
        (
            self.served.load(Ordering::SeqCst),
            self.failed.load(Ordering::SeqCst),
        )
    }
}

/// Runs `configs` in turn, 20 reloads in all, each once a client was served
/// since the last one, under a connect loop on `listen`; every client must be
/// served.
async fn reload_under_connect_loop(proxy: &TestProxy, listen: SocketAddr, configs: &[String]) {
    let clients = ConnectLoop::start(listen);
    for round in 0..20 {
        let served = clients.served();
        wait_until("a client served since the last reload", || {
            clients.served() > served
        })
        .await;
        proxy
            .reload(&configs[round % configs.len()])
            .await
            .expect("reload");
    }
    let (served, failed) = clients.finish().await;
    assert!(served >= 20);
    assert_eq!(failed, 0, "clients refused or reset during the reloads");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renaming_a_service_keeps_its_listen_address_bound() {
    let a = TestBackend::start("a", Behaviour::Tagged).await;
    let listen = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let named = |name: &str| service(name, &listen.to_string(), "", &[(a.addr, "")]);
    let proxy = TestProxy::start(&named("old")).await;
    reload_under_connect_loop(&proxy, listen, &[named("new"), named("old")]).await;
    assert_eq!(proxy.handle.listen_addrs("old"), vec![listen]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moving_a_listen_address_to_another_service_keeps_it_bound() {
    let a = TestBackend::start("a", Behaviour::Tagged).await;
    let b = TestBackend::start("b", Behaviour::Tagged).await;
    let moving = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let (home_a, home_b) = (free_port(), free_port());
    let with_moving_on = |owner: &str| {
        let listen = |name: &str, home: u16| {
            if name == owner {
                format!("[\"127.0.0.1:{home}\", \"{moving}\"]")
            } else {
                format!("\"127.0.0.1:{home}\"")
            }
        };
        format!(
            "[[service]]\nname = \"sa\"\nlisten = {}\n{}\
             [[service]]\nname = \"sb\"\nlisten = {}\n{}",
            listen("sa", home_a),
            blocks(&[(a.addr, "")]),
            listen("sb", home_b),
            blocks(&[(b.addr, "")]),
        )
    };
    let proxy = TestProxy::start(&with_moving_on("sa")).await;
    reload_under_connect_loop(
        &proxy,
        moving,
        &[with_moving_on("sb"), with_moving_on("sa")],
    )
    .await;
    let mut stream = TcpStream::connect(moving).await.expect("connect");
    assert_eq!(read_tag(&mut stream).await, "a", "served by its owner now");
    proxy.reload(&with_moving_on("sb")).await.expect("reload");
    let mut stream = TcpStream::connect(moving).await.expect("connect");
    assert_eq!(read_tag(&mut stream).await, "b", "served by its new owner");
    assert!(proxy.handle.listen_addrs("sb").contains(&moving));
}
