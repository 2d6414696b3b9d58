//! `kind = "tcp"`: the connect completes; then, when configured, `send` is
//! written and the reply must start with `expect` (read until that many bytes
//! have come or the backend closes).
//!
//! The probe's connection is closed with a reset (SO_LINGER 0), as HAProxy
//! closes its checks: neither side keeps it in TIME_WAIT (10,000 backends
//! checked every second would otherwise hold about 60,000 of this host's
//! ephemeral ports), and the backend does not pay for an orderly close.

use std::net::SocketAddr;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::probe::{Failed, Passed, Probe};
use super::wire::{printable, read_up_to};
use crate::config::TcpCheck;

impl Probe for TcpCheck {
    async fn exchange(&self, target: SocketAddr) -> Result<Passed, Failed> {
        let mut stream = TcpStream::connect(target)
            .await
            .map_err(|e| format!("tcp: connect: {e}"))?;
        let verdict = self.converse(&mut stream).await;
        // Best effort: a socket that refuses the option is closed the usual way.
        let _ = stream.set_zero_linger();
        verdict
    }
}

impl TcpCheck {
    /// Sends `send` and checks the reply against `expect`, when configured.
    async fn converse(&self, stream: &mut TcpStream) -> Result<Passed, Failed> {
        if !self.send.is_empty() {
            stream
                .write_all(&self.send)
                .await
                .map_err(|e| format!("tcp: send: {e}"))?;
        }
        let Some(expect) = &self.expect else {
            return Ok(Passed::default());
        };
        let reply = read_up_to(stream, expect.len())
            .await
            .map_err(|e| format!("tcp: read: {e}"))?;
        if reply != *expect {
            return Err(format!(
                "tcp: reply \"{}\" does not start with \"{}\"",
                printable(&reply),
                printable(expect)
            ));
        }
        Ok(Passed::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    /// A server that reads `hello` and answers `answer`, once.
    async fn answering(answer: &'static [u8]) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.expect("accept");
            let mut hello = [0u8; 5];
            stream.read_exact(&mut hello).await.expect("hello");
            stream.write_all(answer).await.expect("answer");
        });
        addr
    }

    fn check(expect: &[u8]) -> TcpCheck {
        TcpCheck {
            send: b"hello".to_vec(),
            expect: Some(expect.to_vec()),
        }
    }

    #[tokio::test]
    async fn a_reply_starting_with_expect_passes() {
        let addr = answering(b"+OK ready\r\n").await;
        assert_eq!(check(b"+OK").exchange(addr).await, Ok(Passed::default()));
    }

    #[tokio::test]
    async fn another_reply_fails_naming_both() {
        let addr = answering(b"-ERR busy\r\n").await;
        let failed = check(b"+OK").exchange(addr).await;
        assert_eq!(
            failed,
            Err("tcp: reply \"-ER\" does not start with \"+OK\"".to_string())
        );
    }

    #[tokio::test]
    async fn a_close_before_the_prefix_fails() {
        let addr = answering(b"+O").await;
        assert!(check(b"+OK").exchange(addr).await.is_err());
    }

    #[tokio::test]
    async fn the_probe_connection_ends_with_a_reset_not_a_fin() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let plain = TcpCheck {
            send: Vec::new(),
            expect: None,
        };
        let probe = tokio::spawn(async move { plain.exchange(addr).await });
        let (mut stream, _) = listener.accept().await.expect("accept");
        assert_eq!(probe.await.expect("probe"), Ok(Passed::default()));
        let mut byte = [0u8; 1];
        let end = stream.read(&mut byte).await;
        assert!(
            matches!(&end, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
            "the backend saw {end:?}, not a reset"
        );
    }
}
