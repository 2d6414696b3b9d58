//! `kind = "tcp"`: the connect completes; then, when configured, `send` is
//! written and the reply must start with `expect` (read until that many bytes
//! have come or the backend closes).
//!
//! The probe's connection is closed with a reset (SO_LINGER 0), as HAProxy
//! closes its checks: neither side keeps it in TIME_WAIT (10,000 backends
//! checked every second would otherwise hold about 60,000 of this host's
//! ephemeral ports), and the backend does not pay for an orderly close. A
//! check that sends nothing also turns quick ACKs off before connecting, as
//! HAProxy does: the last ACK of the handshake is held back, the reset comes
//! first, and the backend's application never sees the connection at all.

use std::net::SocketAddr;

use socket2::SockRef;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};

use super::probe::{Failed, Passed, Probe};
use super::wire::{printable, read_up_to};
use crate::config::TcpCheck;

impl Probe for TcpCheck {
    async fn exchange(&self, target: SocketAddr) -> Result<Passed, Failed> {
        let mut stream = self
            .connect(target)
            .await
            .map_err(|e| format!("tcp: connect: {e}"))?;
        let verdict = self.converse(&mut stream).await;
        // Best effort: a socket that refuses the option is closed the usual way.
        let _ = stream.set_zero_linger();
        verdict
    }
}

impl TcpCheck {
    /// Connects to `target`; with nothing to send, without a quick ACK.
    async fn connect(&self, target: SocketAddr) -> std::io::Result<TcpStream> {
        let socket = match target {
            SocketAddr::V4(_) => TcpSocket::new_v4()?,
            SocketAddr::V6(_) => TcpSocket::new_v6()?,
        };
        if self.send.is_empty() && self.expect.is_none() {
            // Best effort: without it the backend accepts and sees the reset.
            let _ = SockRef::from(&socket).set_tcp_quickack(false);
        }
        socket.connect(target).await
    }

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
    async fn a_check_that_sends_ends_with_a_reset_not_a_fin() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let sending = TcpCheck {
            send: b"hi".to_vec(),
            expect: None,
        };
        let probe = tokio::spawn(async move { sending.exchange(addr).await });
        let (mut stream, _) = listener.accept().await.expect("accept");
        assert_eq!(probe.await.expect("probe"), Ok(Passed::default()));
        let mut got = [0u8; 2];
        stream
            .read_exact(&mut got)
            .await
            .expect("the check's bytes");
        let end = stream.read(&mut got).await;
        assert!(
            matches!(&end, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
            "the backend saw {end:?}, not a reset"
        );
    }

    #[tokio::test]
    async fn a_plain_connect_check_never_reaches_the_backends_accept() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let plain = TcpCheck {
            send: Vec::new(),
            expect: None,
        };
        for _ in 0..5 {
            assert_eq!(plain.exchange(addr).await, Ok(Passed::default()));
        }
        let accepted =
            tokio::time::timeout(std::time::Duration::from_millis(300), listener.accept()).await;
        assert!(
            accepted.is_err(),
            "the backend accepted a check connection: {accepted:?}"
        );
    }
}
