//! `kind = "udp"`: a datagram with the configured payload (any bytes, from
//! `send` or `send_hex`) is sent from a connected socket, and a datagram back
//! within the timeout is a success — any datagram, or with `expect` /
//! `expect_hex` one that starts with those bytes (one that does not fails at
//! once, naming both); an ICMP port-unreachable, reported as ECONNREFUSED on a
//! connected socket, fails at once.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use tokio::net::UdpSocket;

use super::probe::{Failed, Passed, Probe};
use crate::config::UdpCheck;

impl Probe for UdpCheck {
    async fn exchange(&self, target: SocketAddr) -> Result<Passed, Failed> {
        let expected = self.expect.as_deref().unwrap_or_default();
        udp_exchange(target, &self.send, expected)
            .await
            .map(|()| Passed::default())
            .map_err(|e| format!("udp: {e}"))
    }
}

async fn udp_exchange(target: SocketAddr, payload: &[u8], expected: &[u8]) -> io::Result<()> {
    let local: SocketAddr = match target {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(target).await?;
    socket.send(payload).await?;
    let mut reply = vec![0u8; expected.len().max(512)];
    let received = socket.recv(&mut reply).await?;
    reply_matches(&reply[..received], expected)
}

/// A reply passes when it starts with `expected` (empty: any reply).
fn reply_matches(reply: &[u8], expected: &[u8]) -> io::Result<()> {
    if reply.starts_with(expected) {
        return Ok(());
    }
    let shown = &reply[..reply.len().min(expected.len().max(16))];
    Err(io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "the reply does not start with the expected bytes {}: got {} ({} bytes)",
            hex::encode(expected),
            hex::encode(shown),
            reply.len()
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Answers one datagram with `reply`, handing back what it received.
    async fn answer_once(reply: &'static [u8]) -> (SocketAddr, tokio::task::JoinHandle<Vec<u8>>) {
        let server = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let addr = server.local_addr().expect("address");
        let task = tokio::spawn(async move {
            let mut buf = [0u8; 256];
            let (n, from) = server.recv_from(&mut buf).await.expect("recv");
            server.send_to(reply, from).await.expect("send");
            buf[..n].to_vec()
        });
        (addr, task)
    }

    const A2S_INFO: &[u8] = b"\xff\xff\xff\xffTSource Engine Query\0";

    fn a2s_check() -> UdpCheck {
        UdpCheck {
            send: A2S_INFO.to_vec(),
            expect: Some(b"\xff\xff\xff\xffI".to_vec()),
        }
    }

    #[tokio::test]
    async fn udp_probe_sends_raw_bytes_and_checks_the_reply_prefix() {
        let (addr, server) = answer_once(b"\xff\xff\xff\xffI\x11my server").await;
        assert_eq!(a2s_check().exchange(addr).await, Ok(Passed::default()));
        assert_eq!(server.await.expect("server"), A2S_INFO);
    }

    #[tokio::test]
    async fn udp_probe_fails_on_a_reply_without_the_expected_prefix() {
        let (addr, server) = answer_once(b"\xff\xff\xff\xffA\x01\x02\x03\x04").await;
        let failed = a2s_check().exchange(addr).await.expect_err("wrong reply");
        assert!(
            failed.starts_with("udp: ")
                && failed.contains("ffffffff49")
                && failed.contains("ffffffff41"),
            "{failed}"
        );
        server.await.expect("server");
    }
}
