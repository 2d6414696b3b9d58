//! `kind = "http"`: `GET path HTTP/1.1` with `Host` (the check's `host`, or
//! the probed address), `User-Agent: l4lb-health` and `Connection: close`; the
//! response's status must be in the check's range. The body is not read.
//! HTTP is spoken by hyper's client, not by hand.

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Empty;
use hyper::Request;
use hyper::header::{CONNECTION, HOST, USER_AGENT};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::probe::{Failed, Passed, Probe};
use crate::config::HttpCheck;

impl Probe for HttpCheck {
    async fn exchange(&self, target: SocketAddr) -> Result<Passed, Failed> {
        let stream = TcpStream::connect(target)
            .await
            .map_err(|e| format!("http: connect: {e}"))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("http: {e}"))?;
        let host = self.host.clone().unwrap_or_else(|| target.to_string());
        let request = Request::get(self.path.as_str())
            .header(HOST, host)
            .header(USER_AGENT, "l4lb-health")
            .header(CONNECTION, "close")
            .body(Empty::<Bytes>::new())
            .map_err(|e| format!("http: request: {e}"))?;
        let mut connection = std::pin::pin!(connection);
        let mut response = std::pin::pin!(sender.send_request(request));
        // The connection may end (Connection: close) in the same poll that
        // delivers the response: then the response is already waiting.
        let response = tokio::select! {
            biased;
            response = &mut response => response,
            ended = &mut connection => match ended {
                Ok(()) => response.await,
                Err(e) => return Err(format!("http: {e}")),
            },
        }
        .map_err(|e| format!("http: {e}"))?;
        let status = response.status().as_u16();
        if !self.status.contains(&status) {
            return Err(format!(
                "http: status {status} for GET {}, expected {}-{}",
                self.path,
                self.status.start(),
                self.status.end()
            ));
        }
        Ok(Passed::default())
    }
}
