//! One health probe over the network: the kind's exchange (one file per kind,
//! each implementing [`Probe`]), bounded by the check's timeout.
//!
//! A probe passes or fails with a reason that names its kind, e.g.
//! `postgres: 57P03 the database system is shutting down`; an agent check may
//! also report a weight.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use crate::backend::health::CheckResult;
use crate::config::Check;

/// A passed exchange, with the weight percent an agent reported.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Passed {
    pub weight: Option<u32>,
}

/// Why an exchange failed, naming the kind: `"redis: role:slave, ..."`.
pub type Failed = String;

/// One kind's exchange with a backend, without the deadline (the caller applies it).
pub trait Probe {
    fn exchange(&self, target: SocketAddr) -> impl Future<Output = Result<Passed, Failed>> + Send;
}

/// What one probe found, with the error behind a failure.
#[derive(Debug)]
pub struct ProbeOutcome {
    pub result: CheckResult,
    pub detail: Option<String>,
    /// Percent of its weight the backend asked for (agent checks).
    pub weight: Option<u32>,
}

impl ProbeOutcome {
    fn passed(passed: Passed) -> ProbeOutcome {
        ProbeOutcome {
            result: CheckResult::Success,
            detail: None,
            weight: passed.weight,
        }
    }

    fn failure(reason: Failed) -> ProbeOutcome {
        ProbeOutcome {
            result: CheckResult::Failure,
            detail: Some(reason),
            weight: None,
        }
    }

    fn timeout(kind: &str, after: Duration) -> ProbeOutcome {
        ProbeOutcome {
            result: CheckResult::Timeout,
            detail: Some(format!(
                "{kind}: no answer within {}",
                humantime::format_duration(after)
            )),
            weight: None,
        }
    }
}

/// Probes `target` (the backend's address, or its IP with the check's port)
/// once with `check`, bounded by `timeout`.
pub async fn probe(check: &Check, target: SocketAddr, timeout: Duration) -> ProbeOutcome {
    let kind = check.kind().as_str();
    match tokio::time::timeout(timeout, exchange(check, target)).await {
        Ok(Ok(passed)) => ProbeOutcome::passed(passed),
        Ok(Err(reason)) => ProbeOutcome::failure(reason),
        Err(_) => ProbeOutcome::timeout(kind, timeout),
    }
}

async fn exchange(check: &Check, target: SocketAddr) -> Result<Passed, Failed> {
    match check {
        Check::Tcp(tcp) => tcp.exchange(target).await,
        Check::Udp(udp) => udp.exchange(target).await,
        Check::Postgres(postgres) => postgres.exchange(target).await,
        Check::Redis(redis) => redis.exchange(target).await,
        Check::Mysql => super::mysql::MysqlGreeting.exchange(target).await,
        Check::Http(http) => http.exchange(target).await,
        Check::Dns(dns) => dns.exchange(target).await,
        Check::Agent(agent) => {
            let agent_target = SocketAddr::new(target.ip(), agent.port);
            agent.exchange(agent_target).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{TcpCheck, UdpCheck};
    use tokio::net::UdpSocket;

    fn tcp() -> Check {
        Check::Tcp(TcpCheck::default())
    }

    fn udp(payload: &[u8]) -> Check {
        Check::Udp(UdpCheck {
            send: payload.to_vec(),
            expect: None,
        })
    }

    /// Where the tests that close their port bind: a loopback address no other test
    /// binds, so the freed port cannot be taken by a test running in parallel.
    const CLOSED_AFTERWARDS: &str = "127.84.0.1:0";

    #[tokio::test]
    async fn tcp_probe_succeeds_on_a_listener_and_fails_on_a_closed_port() {
        let listener = tokio::net::TcpListener::bind(CLOSED_AFTERWARDS)
            .await
            .expect("bind");
        let open = listener.local_addr().expect("address");
        let timeout = Duration::from_secs(5);
        let up = probe(&tcp(), open, timeout).await;
        assert_eq!(up.result, CheckResult::Success);
        drop(listener);
        let down = probe(&tcp(), open, timeout).await;
        assert_eq!(down.result, CheckResult::Failure);
        assert!(down.detail.is_some_and(|d| d.starts_with("tcp: connect: ")));
    }

    #[tokio::test]
    async fn udp_probe_needs_a_reply_and_fails_fast_on_port_unreachable() {
        let server = UdpSocket::bind(CLOSED_AFTERWARDS).await.expect("bind");
        let addr = server.local_addr().expect("address");
        let echo = tokio::spawn(async move {
            let mut buf = [0u8; 64];
            let (n, from) = server.recv_from(&mut buf).await.expect("recv");
            server.send_to(&buf[..n], from).await.expect("send");
            server
        });
        let up = probe(&udp(b"ping"), addr, Duration::from_secs(5)).await;
        assert_eq!(up.result, CheckResult::Success);
        drop(echo.await.expect("echo task"));
        // The port is closed now: the ICMP error fails the probe well before its timeout.
        let down = probe(&udp(b"ping"), addr, Duration::from_secs(30)).await;
        assert_eq!(down.result, CheckResult::Failure);
    }

    #[tokio::test]
    async fn udp_probe_times_out_when_nothing_answers() {
        let silent = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let addr = silent.local_addr().expect("address");
        let outcome = probe(&udp(b"x"), addr, Duration::from_millis(100)).await;
        assert_eq!(outcome.result, CheckResult::Timeout);
        assert_eq!(
            outcome.detail.as_deref(),
            Some("udp: no answer within 100ms")
        );
    }
}
