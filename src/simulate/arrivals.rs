//! The clients of a run, generated up front from the workload and the seed:
//! when each arrives, from which address, and how long its session lasts.
//!
//! Poisson arrivals draw exponential gaps; durations are fixed, exponential or
//! log-normal. The two draws are textbook inverse-CDF formulas (exponential:
//! `-mean ln(1-U)`; log-normal: `exp(mu + sigma Z)` with `Z` from Box-Muller),
//! written here rather than pulling in a distributions crate for three lines.
//! Pure: the random generator is passed in, so one seed gives one run, whatever
//! strategy is then simulated on it.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use super::access_log::RecordedSession;
use super::workload::SessionLength;

/// One client session to simulate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arrival {
    pub at: Duration,
    pub client: SocketAddr,
    /// How long the session lasts once a backend serves it.
    pub duration: Duration,
    /// Replays: the backend the log recorded it on.
    pub recorded_backend: Option<String>,
}

/// The first address of the 198.18.0.0/15 benchmarking range.
const FIRST_CLIENT: u32 = u32::from_be_bytes([198, 18, 0, 0]);

/// The address of simulated client number `index`.
pub fn client_ip(index: u32) -> Ipv4Addr {
    Ipv4Addr::from(FIRST_CLIENT.wrapping_add(index))
}

/// Poisson arrivals at `rate` per second for `length`, each from one of
/// `clients` addresses (with a random ephemeral port) and lasting a draw of
/// `sessions`.
pub fn poisson(
    rng: &mut fastrand::Rng,
    rate: f64,
    clients: u32,
    length: Duration,
    sessions: SessionLength,
) -> Vec<Arrival> {
    let mut arrivals = Vec::new();
    let mut at = 0.0;
    let end = length.as_secs_f64();
    loop {
        at += exponential(rng, 1.0 / rate);
        if at >= end {
            return arrivals;
        }
        let ip = client_ip(rng.u32(0..clients.max(1)));
        let port = rng.u16(1024..=65535);
        arrivals.push(Arrival {
            at: Duration::from_secs_f64(at),
            client: SocketAddr::from((ip, port)),
            duration: session_length(rng, sessions),
            recorded_backend: None,
        });
    }
}

/// A replayed log's sessions as arrivals.
pub fn replayed(sessions: Vec<RecordedSession>) -> Vec<Arrival> {
    sessions
        .into_iter()
        .map(|s| Arrival {
            at: s.start,
            client: s.client,
            duration: s.duration,
            recorded_backend: Some(s.backend),
        })
        .collect()
}

/// One draw of a session's duration.
pub fn session_length(rng: &mut fastrand::Rng, sessions: SessionLength) -> Duration {
    let seconds = match sessions {
        SessionLength::Fixed(d) => return d,
        SessionLength::Exponential { mean } => exponential(rng, mean.as_secs_f64()),
        SessionLength::LogNormal { mean, sigma } => {
            let mu = mean.as_secs_f64().max(1e-9).ln() - sigma * sigma / 2.0;
            (mu + sigma * standard_normal(rng)).exp()
        }
    };
    Duration::try_from_secs_f64(seconds).unwrap_or(Duration::MAX)
}

/// An exponential draw of mean `mean`.
fn exponential(rng: &mut fastrand::Rng, mean: f64) -> f64 {
    // 1 - U is in (0, 1], so the logarithm is finite.
    -mean * (1.0 - rng.f64()).ln()
}

/// A standard normal draw (Box-Muller).
fn standard_normal(rng: &mut fastrand::Rng) -> f64 {
    let u1 = 1.0 - rng.f64();
    let u2 = rng.f64();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mean_and_median(sessions: SessionLength) -> (f64, f64) {
        let mut rng = fastrand::Rng::with_seed(3);
        let mut draws: Vec<f64> = (0..200_000)
            .map(|_| session_length(&mut rng, sessions).as_secs_f64())
            .collect();
        draws.sort_by(f64::total_cmp);
        (
            draws.iter().sum::<f64>() / draws.len() as f64,
            draws[draws.len() / 2],
        )
    }

    #[test]
    fn distributions_have_their_mean_and_median() {
        let mean = Duration::from_secs(2);
        let (m, median) = mean_and_median(SessionLength::Exponential { mean });
        assert!((m - 2.0).abs() < 0.03, "{m}");
        assert!((median - 2.0 * 2f64.ln()).abs() < 0.03, "{median}");
        let (m, median) = mean_and_median(SessionLength::LogNormal { mean, sigma: 0.5 });
        assert!((m - 2.0).abs() < 0.03, "{m}");
        assert!((median - 2.0 * (-0.125f64).exp()).abs() < 0.03, "{median}");
        assert_eq!(mean_and_median(SessionLength::Fixed(mean)), (2.0, 2.0));
    }

    #[test]
    fn poisson_arrivals_come_at_their_rate_from_the_client_pool() {
        let mut rng = fastrand::Rng::with_seed(9);
        let sessions = SessionLength::Fixed(Duration::from_secs(1));
        let arrivals = poisson(&mut rng, 500.0, 10, Duration::from_secs(100), sessions);
        assert!(
            (49_000..=51_000).contains(&arrivals.len()),
            "{}",
            arrivals.len()
        );
        assert!(arrivals.windows(2).all(|w| w[0].at <= w[1].at));
        let ips: std::collections::BTreeSet<_> = arrivals.iter().map(|a| a.client.ip()).collect();
        assert_eq!(ips.len(), 10);
        assert!(ips.contains(&std::net::IpAddr::V4(Ipv4Addr::new(198, 18, 0, 9))));
        let mut again = fastrand::Rng::with_seed(9);
        assert_eq!(
            arrivals,
            poisson(&mut again, 500.0, 10, Duration::from_secs(100), sessions)
        );
    }
}
