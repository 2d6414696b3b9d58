//! The process-wide connection cap when `[global] max_connections = 0`: as many
//! proxied TCP connections as the open-file limit allows.
//!
//! Each proxied connection holds two descriptors (client and backend). A process
//! that runs out of descriptors can no longer accept, probe or answer its admin
//! endpoint, so, like HAProxy deriving `maxconn` from `ulimit -n`, l4lb keeps a
//! reserve (listening sockets, health probes, the relay's splice pipes, the admin
//! endpoint, logging and the runtime) and caps connections at half of what is
//! left. A client over the cap
//! is closed at once and counted as `max_connections`, instead of waiting in a
//! backlog the process cannot drain. UDP flows (one descriptor each) are not in
//! the reserve: `max_flows` bounds them.

use crate::config::Config;
use crate::proxy::splice::MAX_PIPES;

/// Descriptors kept for everything but proxied connections, listeners and
/// probes: admin connections, the runtime's own, logging, configuration reads,
/// and the relay's pipes (two descriptors each).
const RESERVED_FDS: u64 = 64 + 2 * MAX_PIPES as u64;

/// The process-wide cap on proxied TCP connections for `config`, with
/// `listen_sockets` listening sockets and `open_file_limit` (None: no limit).
/// A configured `max_connections` wins; 0 means no cap.
pub fn process_connection_cap(
    config: &Config,
    listen_sockets: usize,
    open_file_limit: Option<u64>,
) -> usize {
    if config.global.max_connections > 0 {
        return config.global.max_connections;
    }
    let Some(limit) = open_file_limit else {
        return 0;
    };
    let reserve = RESERVED_FDS + listen_sockets as u64 + probed_backends(config);
    let cap = limit.saturating_sub(reserve) / 2;
    usize::try_from(cap.max(1)).unwrap_or(usize::MAX)
}

/// Descriptors a configured `max_connections` needs beyond `open_file_limit`,
/// if any: an operator should raise the limit (e.g. `LimitNOFILE=`).
pub fn shortfall(
    config: &Config,
    listen_sockets: usize,
    open_file_limit: Option<u64>,
) -> Option<u64> {
    let limit = open_file_limit?;
    let wanted = config.global.max_connections as u64;
    if wanted == 0 {
        return None;
    }
    let needed = wanted
        .saturating_mul(2)
        .saturating_add(RESERVED_FDS + listen_sockets as u64)
        .saturating_add(probed_backends(config));
    needed.checked_sub(limit).filter(|&missing| missing > 0)
}

/// One descriptor per health-checked backend (a probe in flight).
fn probed_backends(config: &Config) -> u64 {
    config
        .services
        .iter()
        .filter(|s| s.health.is_some())
        .map(|s| s.backends.len() as u64)
        .sum()
}

/// The soft RLIMIT_NOFILE of this process; `None` when unlimited or unknown.
pub fn open_file_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `rlimit` through a valid pointer.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    (rc == 0 && limit.rlim_cur != libc::RLIM_INFINITY).then_some(limit.rlim_cur)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config(global: &str, health: bool) -> Config {
        let health = if health {
            "[service.health]\nkind = \"tcp\"\n"
        } else {
            ""
        };
        let text = format!(
            "[global]\n{global}\n[[service]]\nname = \"s\"\nlisten = \"127.0.0.1:1\"\n{health}\
             [[service.backend]]\naddress = \"127.0.0.1:2\"\n\
             [[service.backend]]\naddress = \"127.0.0.1:3\"\n"
        );
        crate::config::parse(&text, Path::new("lb.toml")).expect("valid")
    }

    #[test]
    fn a_configured_cap_wins() {
        let capped = config("max_connections = 5000", false);
        assert_eq!(process_connection_cap(&capped, 2, Some(256)), 5000);
        assert_eq!(process_connection_cap(&capped, 2, None), 5000);
    }

    #[test]
    fn the_default_is_half_of_what_the_reserve_leaves() {
        let plain = config("", false);
        // (20000 - 64 - 128 for pipes - 2 listeners) / 2
        assert_eq!(process_connection_cap(&plain, 2, Some(20_000)), 9903);
        let probed = config("", true);
        // Two probed backends take one more descriptor each.
        assert_eq!(process_connection_cap(&probed, 2, Some(20_000)), 9902);
    }

    #[test]
    fn no_limit_means_no_cap_and_a_tiny_limit_still_allows_one() {
        let plain = config("", false);
        assert_eq!(process_connection_cap(&plain, 2, None), 0);
        assert_eq!(process_connection_cap(&plain, 2, Some(10)), 1);
    }

    #[test]
    fn a_configured_cap_beyond_the_limit_reports_the_shortfall() {
        let capped = config("max_connections = 200", false);
        // 2 × 200 + 64 + 128 + 2 = 594 descriptors needed.
        assert_eq!(shortfall(&capped, 2, Some(256)), Some(338));
        assert_eq!(shortfall(&capped, 2, Some(594)), None);
        assert_eq!(shortfall(&capped, 2, None), None);
        let huge = config(&format!("max_connections = {}", i64::MAX), false);
        assert!(shortfall(&huge, 2, Some(256)).is_some());
        assert_eq!(shortfall(&config("", false), 2, Some(10)), None);
    }
}
