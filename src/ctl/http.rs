//! The HTTP/1.1 client `l4lb status` and `l4lb backend` use to reach a
//! running l4lb's admin endpoint: one request per connection (hyper's client,
//! as the http health check uses), every step under a deadline, the answer's
//! body read whole up to a bound.
//!
//! Owns reaching the endpoint and turning what goes wrong into a sentence
//! that names the address. Does not interpret the answers.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::header::{AUTHORIZATION, CONNECTION, HOST, USER_AGENT};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Connecting, and then the whole exchange, must each finish within this.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(30);
/// A `/status` of 100,000 backends is some tens of MiB.
const MAX_BODY: usize = 512 * 1024 * 1024;

/// An answer from the admin endpoint: its status code and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub body: String,
}

impl Answer {
    /// The `error` of a JSON error body (`{"error": ...}`), else the body itself.
    pub fn message(&self) -> String {
        serde_json::from_str::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
            .unwrap_or_else(|| self.body.trim().to_owned())
    }
}

/// Sends `method path` (with a bearer `token` when given) to the admin
/// endpoint at `admin` (`IP:port` or `host:port`).
pub async fn request(
    admin: &str,
    method: Method,
    path: &str,
    token: Option<&str>,
) -> Result<Answer, String> {
    let stream = connect(admin).await?;
    let exchange = exchange(stream, admin, method, path, token);
    match tokio::time::timeout(EXCHANGE_TIMEOUT, exchange).await {
        Ok(answer) => answer.map_err(|e| format!("admin endpoint {admin}: {e}")),
        Err(_) => Err(format!(
            "admin endpoint {admin}: no complete answer within {}s",
            EXCHANGE_TIMEOUT.as_secs()
        )),
    }
}

async fn connect(admin: &str) -> Result<TcpStream, String> {
    let unreachable = |why: String| {
        format!(
            "cannot reach the admin endpoint at {admin}: {why} (is l4lb running with \
             [admin] listen = \"{admin}\"? choose another with --admin ADDR or L4LB_ADMIN)"
        )
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(admin)).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(e)) => Err(unreachable(e.to_string())),
        Err(_) => Err(unreachable(format!(
            "no connection within {}s",
            CONNECT_TIMEOUT.as_secs()
        ))),
    }
}

async fn exchange(
    stream: TcpStream,
    admin: &str,
    method: Method,
    path: &str,
    token: Option<&str>,
) -> Result<Answer, String> {
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    // Ends by itself once the answer is read (Connection: close).
    tokio::spawn(connection);
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header(HOST, admin)
        .header(USER_AGENT, concat!("l4lb/", env!("CARGO_PKG_VERSION")))
        .header(CONNECTION, "close");
    if let Some(token) = token {
        builder = builder.header(AUTHORIZATION, format!("Bearer {token}"));
    }
    let request = builder
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("request: {e}"))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body = Limited::new(response.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| format!("reading the answer: {e}"))?
        .to_bytes();
    Ok(Answer {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_of_a_json_error_is_its_error() {
        let answer = |body: &str| Answer {
            status: 404,
            body: body.into(),
        };
        assert_eq!(
            answer(r#"{"error":"no service \"x\""}"#).message(),
            "no service \"x\""
        );
        assert_eq!(answer("draining\n").message(), "draining");
    }

    #[tokio::test]
    async fn an_address_nobody_listens_on_is_named() {
        let free = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port");
        let addr = free.to_string();
        let error = request(&addr, Method::GET, "/status", None)
            .await
            .expect_err("nothing listens");
        assert!(
            error.starts_with(&format!("cannot reach the admin endpoint at {addr}: ")),
            "{error}"
        );
    }
}
