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
//! backlog the process cannot drain. UDP flows (one descriptor each) are
//! bounded by `process_flow_cap`: with the derived cap they take its slots as
//! sessions do (one budget for both), and a configured `max_connections` leaves
//! them whatever descriptors it does not claim.

use crate::config::{Config, Protocol};
use crate::proxy::splice::MAX_PIPES;
use crate::proxy::udp::flow_budget::FlowCap;

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

/// How UDP flows are bounded process-wide, for `config` with `listen_sockets`
/// listening sockets and `open_file_limit` (None: no limit). With
/// `max_connections = 0` they share the process connection cap with TCP
/// sessions; a slot is sized for a session's two descriptors, so a flow never
/// takes more than its share, whatever the mix. A configured `max_connections`
/// is TCP's alone: flows get the descriptors it leaves (at least one).
pub fn process_flow_cap(
    config: &Config,
    listen_sockets: usize,
    open_file_limit: Option<u64>,
) -> FlowCap {
    if config.global.max_connections == 0 {
        return FlowCap::SharedWithConnections;
    }
    let Some(limit) = open_file_limit else {
        return FlowCap::Own(0);
    };
    let reserve = RESERVED_FDS + listen_sockets as u64 + probed_backends(config);
    let sessions = (config.global.max_connections as u64).saturating_mul(2);
    let left = limit.saturating_sub(reserve).saturating_sub(sessions);
    FlowCap::Own(usize::try_from(left.max(1)).unwrap_or(usize::MAX))
}

/// The flows every UDP service of `config` allows together (`max_flows` summed).
pub fn configured_flows(config: &Config) -> usize {
    config
        .services
        .iter()
        .filter(|s| s.protocol == Protocol::Udp)
        .fold(0, |sum, s| sum.saturating_add(s.max_flows))
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

    fn udp_config(global: &str, max_flows: &[usize]) -> Config {
        let services: String = max_flows
            .iter()
            .enumerate()
            .map(|(i, max)| {
                format!(
                    "[[service]]\nname = \"u{i}\"\nprotocol = \"udp\"\nlisten = \"127.0.0.1:{}\"\n\
                     max_flows = {max}\n[[service.backend]]\naddress = \"127.0.0.1:9\"\n",
                    i + 1
                )
            })
            .collect();
        let text = format!("[global]\n{global}\n{services}");
        crate::config::parse(&text, Path::new("lb.toml")).expect("valid")
    }

    #[test]
    fn with_the_derived_cap_flows_share_it_with_sessions() {
        let plain = udp_config("", &[10_000]);
        let cap = process_flow_cap(&plain, 2, Some(1024));
        assert_eq!(cap, FlowCap::SharedWithConnections);
        assert_eq!(process_flow_cap(&plain, 2, None), cap);
    }

    #[test]
    fn a_configured_cap_leaves_flows_the_descriptors_it_does_not_claim() {
        let capped = udp_config("max_connections = 100", &[10_000]);
        // 1024 - (64 + 128 + 2) - 2 × 100
        assert_eq!(process_flow_cap(&capped, 2, Some(1024)), FlowCap::Own(630));
        assert_eq!(process_flow_cap(&capped, 2, Some(300)), FlowCap::Own(1));
        assert_eq!(process_flow_cap(&capped, 2, None), FlowCap::Own(0));
    }

    #[test]
    fn configured_flows_add_up_over_udp_services_only() {
        assert_eq!(configured_flows(&udp_config("", &[10, 20])), 30);
        assert_eq!(configured_flows(&config("", false)), 0);
    }
}
