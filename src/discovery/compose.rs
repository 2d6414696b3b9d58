//! A service's backend list: its static `[[service.backend]]` entries, then
//! every group's discovered addresses, in group order.
//!
//! Pure. A discovered address that is already a backend of the service (a
//! static one, or one found by an earlier group) is not added twice: the
//! first one wins. A discovered backend's identity is its address
//! (`IP:port`), so hashing strategies move only the clients of the addresses
//! that came or went. Maglev needs a table at least as large as the set, so
//! discovered backends beyond `table_size` are left out. So is an address that
//! reaches one of l4lb's own listeners (the check the file's static backends
//! get, see `config::own_listener_reached`): clients sent there would be
//! proxied back into l4lb, again and again, until descriptors run out.

use std::collections::HashSet;
use std::net::SocketAddr;

use crate::config::{BackendConfig, DiscoverConfig, ServiceConfig, StrategyKind};

use super::policy::Found;

/// A discovered address left out, and the listener of l4lb's it would reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loop {
    pub backend: SocketAddr,
    pub listen: SocketAddr,
}

/// A service's composed configuration, and the discovered addresses left out
/// because they lead back into l4lb.
pub struct Composed {
    pub service: ServiceConfig,
    pub loops: Vec<Loop>,
}

/// `base` (as declared) with each group's `sets` appended, except addresses
/// for which `listener_reached` names one of l4lb's listeners.
pub fn composed<'s>(
    base: &ServiceConfig,
    sets: impl IntoIterator<Item = (&'s DiscoverConfig, &'s [Found])>,
    listener_reached: impl Fn(SocketAddr) -> Option<SocketAddr>,
) -> Composed {
    let mut loops = Vec::new();
    let mut service = base.clone();
    let limit = match base.strategy.kind {
        StrategyKind::Maglev => base.strategy.table_size,
        _ => usize::MAX,
    };
    let mut seen: HashSet<_> = service.backends.iter().map(|b| b.resolved).collect();
    let mut names: HashSet<String> = service.backends.iter().map(|b| b.address.clone()).collect();
    let found = sets
        .into_iter()
        .flat_map(|(group, set)| set.iter().map(move |f| (group, f)));
    for (group, found) in found {
        if service.backends.len() >= limit {
            break;
        }
        let address = found.addr.to_string();
        if !seen.insert(found.addr) || !names.insert(address.clone()) {
            continue;
        }
        if let Some(listen) = listener_reached(found.addr) {
            loops.push(Loop {
                backend: found.addr,
                listen,
            });
            continue;
        }
        service.backends.push(BackendConfig {
            address,
            resolved: found.addr,
            weight: found.weight,
            max_connections: 0,
            backup: found.backup,
            slow_start: group.slow_start,
            health: None,
            // Discovered backends belong to the default route.
            route: 0,
        });
    }
    // The default route's backends come first (stable: each route keeps its order).
    service.backends.sort_by_key(|b| b.route);
    Composed { service, loops }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::{Protocol, own_listener_reached, parse};

    const FILE: &str = r#"
[[service]]
name = "pg"
listen = "0.0.0.0:5432"
[[service.backend]]
address = "10.0.0.1:5432"
[[service.discover]]
dns = "pg.test"
port = 5432

[[service]]
name = "dns"
protocol = "udp"
listen = "127.0.0.1:53"
[[service.backend]]
address = "10.0.0.9:53"
"#;

    fn found(addr: [u8; 4], port: u16) -> Found {
        Found {
            addr: SocketAddr::from((addr, port)),
            weight: 1,
            backup: false,
        }
    }

    #[test]
    fn discovered_addresses_that_reach_l4lbs_own_listeners_are_left_out() {
        let config = parse(FILE, Path::new("lb.toml")).expect("valid");
        let pg = &config.services[0];
        let set = [
            found([10, 0, 0, 2], 5432),
            found([127, 0, 0, 1], 5432), // the wildcard listener takes loopback too
            found([10, 0, 0, 1], 5432),  // already a static backend
            found([127, 0, 0, 1], 53),   // a udp listener: no loop for a tcp service
        ];
        let group = &pg.discover[0];
        let result = composed(pg, [(group, &set[..])], |addr| {
            own_listener_reached(&config.services, Protocol::Tcp, addr)
        });
        let addresses: Vec<_> = result.service.backends.iter().map(|b| b.resolved).collect();
        assert_eq!(
            addresses,
            [
                SocketAddr::from(([10, 0, 0, 1], 5432)),
                SocketAddr::from(([10, 0, 0, 2], 5432)),
                SocketAddr::from(([127, 0, 0, 1], 53)),
            ]
        );
        let reached = Loop {
            backend: SocketAddr::from(([127, 0, 0, 1], 5432)),
            listen: SocketAddr::from(([0, 0, 0, 0], 5432)),
        };
        assert_eq!(result.loops, [reached]);
    }
}
