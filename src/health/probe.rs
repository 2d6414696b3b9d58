//! One health probe over the network.
//!
//! `tcp`: the connect completes within the timeout (then the socket is closed).
//! `udp`: a datagram with the configured payload is sent from a connected socket and
//! any datagram back within the timeout is a success; an ICMP port-unreachable,
//! reported as ECONNREFUSED on a connected socket, fails at once.

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

/// Probes `target` once, bounded by `timeout`.
pub async fn probe(
    kind: HealthKind,
    target: SocketAddr,
    timeout: Duration,
    payload: &[u8],
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

async fn udp_exchange(target: SocketAddr, payload: &[u8]) -> io::Result<()> {
    let local: SocketAddr = match target {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(target).await?;
    socket.send(payload).await?;
    let mut reply = [0u8; 512];
    socket.recv(&mut reply).await.map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tcp_probe_succeeds_on_a_listener_and_fails_on_a_closed_port() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let open = listener.local_addr().expect("address");
        let timeout = Duration::from_secs(5);
        let up = probe(HealthKind::Tcp, open, timeout, b"").await;
        assert_eq!(up.result, CheckResult::Success);
        drop(listener);
        let down = probe(HealthKind::Tcp, open, timeout, b"").await;
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
        let up = probe(HealthKind::Udp, addr, Duration::from_secs(5), b"ping").await;
        assert_eq!(up.result, CheckResult::Success);
        drop(echo.await.expect("echo task"));
        // The port is closed now: the ICMP error fails the probe well before its timeout.
        let down = probe(HealthKind::Udp, addr, Duration::from_secs(30), b"ping").await;
        assert_eq!(down.result, CheckResult::Failure);
    }

    #[tokio::test]
    async fn udp_probe_times_out_when_nothing_answers() {
        let silent = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let addr = silent.local_addr().expect("address");
        let outcome = probe(HealthKind::Udp, addr, Duration::from_millis(100), b"x").await;
        assert_eq!(outcome.result, CheckResult::Timeout);
    }
}
