//! One health probe over the network.
//!
//! `tcp`: the connect completes within the timeout (then the socket is closed).
//! `udp`: a datagram with the configured payload (any bytes) is sent from a
//! connected socket and a datagram back within the timeout is a success — any
//! datagram, or with `expect` / `expect_hex` one that starts with those bytes (a
//! reply that does not fails at once); an ICMP port-unreachable, reported as
//! ECONNREFUSED on a connected socket, fails at once.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::net::{TcpStream, UdpSocket};

use crate::backend::health::CheckResult;
use crate::config::HealthKind;

/// What one probe found, with the error behind a failure.
#[derive(Debug)]
pub struct ProbeOutcome {
    pub result: CheckResult,
    pub detail: Option<String>,
}

impl ProbeOutcome {
    fn success() -> ProbeOutcome {
        ProbeOutcome {
            result: CheckResult::Success,
            detail: None,
        }
    }

    fn failure(error: io::Error) -> ProbeOutcome {
        ProbeOutcome {
            result: CheckResult::Failure,
            detail: Some(error.to_string()),
        }
    }

    fn timeout(after: Duration) -> ProbeOutcome {
        ProbeOutcome {
            result: CheckResult::Timeout,
            detail: Some(format!(
                "no answer within {}",
                humantime::format_duration(after)
            )),
        }
    }
}

/// What a udp probe sends, and the prefix its reply must start with (`None`: any reply).
#[derive(Debug, Clone, Copy)]
pub struct UdpPayload<'a> {
    pub send: &'a [u8],
    pub expect: Option<&'a [u8]>,
}

/// Probes `target` once, bounded by `timeout`.
pub async fn probe(
    kind: HealthKind,
    target: SocketAddr,
    timeout: Duration,
    payload: UdpPayload<'_>,
) -> ProbeOutcome {
    let attempt = async {
        match kind {
            HealthKind::Tcp => TcpStream::connect(target).await.map(drop),
            HealthKind::Udp => udp_exchange(target, payload).await,
        }
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok(())) => ProbeOutcome::success(),
        Ok(Err(e)) => ProbeOutcome::failure(e),
        Err(_) => ProbeOutcome::timeout(timeout),
    }
}

async fn udp_exchange(target: SocketAddr, payload: UdpPayload<'_>) -> io::Result<()> {
    let local: SocketAddr = match target {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(target).await?;
    socket.send(payload.send).await?;
    let expected = payload.expect.unwrap_or_default();
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

    const PING: UdpPayload<'static> = UdpPayload {
        send: b"ping",
        expect: None,
    };
    const NOTHING: UdpPayload<'static> = UdpPayload {
        send: b"",
        expect: None,
    };

    #[tokio::test]
    async fn tcp_probe_succeeds_on_a_listener_and_fails_on_a_closed_port() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let open = listener.local_addr().expect("address");
        let timeout = Duration::from_secs(5);
        let up = probe(HealthKind::Tcp, open, timeout, NOTHING).await;
        assert_eq!(up.result, CheckResult::Success);
        drop(listener);
        let down = probe(HealthKind::Tcp, open, timeout, NOTHING).await;
        assert_eq!(down.result, CheckResult::Failure);
        assert!(down.detail.is_some());
    }

    #[tokio::test]
    async fn udp_probe_needs_a_reply_and_fails_fast_on_port_unreachable() {
        let server = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let addr = server.local_addr().expect("address");
        let echo = tokio::spawn(async move {
            let mut buf = [0u8; 64];
            let (n, from) = server.recv_from(&mut buf).await.expect("recv");
            server.send_to(&buf[..n], from).await.expect("send");
            server
        });
        let up = probe(HealthKind::Udp, addr, Duration::from_secs(5), PING).await;
        assert_eq!(up.result, CheckResult::Success);
        drop(echo.await.expect("echo task"));
        // The port is closed now: the ICMP error fails the probe well before its timeout.
        let down = probe(HealthKind::Udp, addr, Duration::from_secs(30), PING).await;
        assert_eq!(down.result, CheckResult::Failure);
    }

    #[tokio::test]
    async fn udp_probe_times_out_when_nothing_answers() {
        let silent = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let addr = silent.local_addr().expect("address");
        let outcome = probe(HealthKind::Udp, addr, Duration::from_millis(100), PING).await;
        assert_eq!(outcome.result, CheckResult::Timeout);
    }

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

    #[tokio::test]
    async fn udp_probe_sends_raw_bytes_and_checks_the_reply_prefix() {
        let (addr, server) = answer_once(b"\xff\xff\xff\xffI\x11my server").await;
        let payload = UdpPayload {
            send: A2S_INFO,
            expect: Some(b"\xff\xff\xff\xffI"),
        };
        let up = probe(HealthKind::Udp, addr, Duration::from_secs(5), payload).await;
        assert_eq!(up.result, CheckResult::Success, "{:?}", up.detail);
        assert_eq!(server.await.expect("server"), A2S_INFO);
    }

    #[tokio::test]
    async fn udp_probe_fails_on_a_reply_without_the_expected_prefix() {
        let (addr, server) = answer_once(b"\xff\xff\xff\xffA\x01\x02\x03\x04").await;
        let payload = UdpPayload {
            send: A2S_INFO,
            expect: Some(b"\xff\xff\xff\xffI"),
        };
        let down = probe(HealthKind::Udp, addr, Duration::from_secs(5), payload).await;
        assert_eq!(down.result, CheckResult::Failure);
        let detail = down.detail.unwrap_or_default();
        assert!(
            detail.contains("ffffffff49") && detail.contains("ffffffff41"),
            "{detail}"
        );
        server.await.expect("server");
    }
}
