//! The runtime API's backend changes over real HTTP to a real l4lb in
//! process, with real tagged backends: a weight changed live, a backend
//! added, one drained and removed with its open session finishing, and a
//! reload that starts over from the file.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use common::{Behaviour, TestBackend, TestProxy, get_ok, read_tag};

const TOKEN: &str = "s3cret";

/// One request with an optional token and JSON body; the status and body.
async fn request(
    admin: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, String) {
    let mut stream = TcpStream::connect(admin).await.expect("connect to admin");
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: l4lb\r\n{auth}Content-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.expect("send");
    let raw = common::read_until_closed(&mut stream).await.expect("read");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok());
    (status.expect("an HTTP status"), body.to_string())
}

fn config(a: SocketAddr, b: SocketAddr) -> String {
    format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"{TOKEN}\"\n\n[[service]]\nname = \"web\"\n\
         listen = \"127.0.0.1:0\"\n\n[[service.backend]]\naddress = \"{a}\"\n\n\
         [[service.backend]]\naddress = \"{b}\"\n"
    )
}

async fn shares(proxy: &TestProxy, clients: usize) -> HashMap<String, usize> {
    let mut served = HashMap::new();
    for _ in 0..clients {
        let tag = common::tag_of_new_connection(proxy.addr("web")).await;
        *served.entry(tag).or_insert(0) += 1;
    }
    served
}

async fn backend_states(proxy: &TestProxy) -> HashMap<String, (String, u64)> {
    let status: Value =
        serde_json::from_str(&get_ok(proxy.admin.unwrap(), "/status").await).expect("JSON");
    status["services"][0]["backends"]
        .as_array()
        .expect("backends")
        .iter()
        .map(|b| {
            let address = b["address"].as_str().unwrap().to_string();
            let state = b["state"].as_str().unwrap().to_string();
            (address, (state, b["weight"].as_u64().unwrap()))
        })
        .collect()
}

#[tokio::test]
async fn weights_additions_and_removals_apply_live_until_the_next_reload() {
    let a = TestBackend::start("a", Behaviour::Tagged).await;
    let b = TestBackend::start("b", Behaviour::Tagged).await;
    let c = TestBackend::start("c", Behaviour::Tagged).await;
    let file = config(a.addr, b.addr);
    let proxy = TestProxy::start(&file).await;
    let admin = proxy.admin.unwrap();
    let path_a = format!("/services/web/backends/{}", a.addr);

    let weight3 = r#"{"weight": 3}"#;
    assert_eq!(request(admin, "PUT", &path_a, None, weight3).await.0, 401);
    let (status, body) = request(admin, "PUT", &path_a, Some(TOKEN), weight3).await;
    assert_eq!(status, 200, "{body}");
    let served = shares(&proxy, 40).await;
    assert_eq!((served["a"], served["b"]), (30, 10), "{served:?}");

    let (status, body) = request(admin, "PUT", &path_a, Some(TOKEN), r#"{"weight": 0}"#).await;
    assert_eq!(status, 400);
    assert!(
        body.contains("weight: must be between 1 and 1000, got 0"),
        "{body}"
    );
    let missing = "/services/web/backends/127.0.0.1:1";
    assert_eq!(
        request(admin, "PUT", missing, Some(TOKEN), weight3).await.0,
        404
    );
    let unknown = "/services/nope/backends/127.0.0.1:1";
    assert_eq!(
        request(admin, "DELETE", unknown, Some(TOKEN), "").await.0,
        404
    );

    let add = format!(r#"{{"address": "{}", "weight": 1}}"#, c.addr);
    let (status, body) = request(admin, "POST", "/services/web/backends", Some(TOKEN), &add).await;
    assert_eq!(status, 200, "{body}");
    let again = request(admin, "POST", "/services/web/backends", Some(TOKEN), &add).await;
    assert_eq!(again.0, 409, "{}", again.1);
    let served = shares(&proxy, 50).await;
    assert_eq!(
        (served["a"], served["b"], served["c"]),
        (30, 10, 10),
        "{served:?}"
    );

    // A session open on `a` finishes after `a` is removed; no new client reaches it.
    let mut open = loop {
        let mut stream = TcpStream::connect(proxy.addr("web")).await.unwrap();
        if read_tag(&mut stream).await == "a" {
            break stream;
        }
    };
    let (status, body) = request(admin, "DELETE", &path_a, Some(TOKEN), "").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        backend_states(&proxy).await[&a.addr.to_string()].0,
        "draining"
    );
    let served = shares(&proxy, 20).await;
    assert_eq!(served.get("a"), None, "{served:?}");
    open.write_all(b"still here").await.unwrap();
    let mut echoed = [0u8; 10];
    open.read_exact(&mut echoed).await.unwrap();
    assert_eq!(&echoed, b"still here");
    drop(open);
    proxy.assert_drained().await;

    // A reload starts over from the file: a back with weight 1, c gone.
    proxy.reload(&file).await.expect("reload");
    let states = backend_states(&proxy).await;
    assert_eq!(states[&a.addr.to_string()], ("up".to_string(), 1));
    assert_eq!(states[&b.addr.to_string()], ("up".to_string(), 1));
    assert!(
        states
            .get(&c.addr.to_string())
            .is_none_or(|s| s.0 == "draining")
    );
    let served = shares(&proxy, 20).await;
    assert_eq!((served["a"], served["b"], served.get("c")), (10, 10, None));
    proxy.stop().await;
}
