//! A service's backend list: its static `[[service.backend]]` entries, then
//! every group's discovered addresses, in group order.
//!
//! Pure. A discovered address that is already a backend of the service (a
//! static one, or one found by an earlier group) is not added twice: the
//! first one wins. A discovered backend's identity is its address
//! (`IP:port`), so hashing strategies move only the clients of the addresses
//! that came or went. Maglev needs a table at least as large as the set, so
//! discovered backends beyond `table_size` are left out.

use std::collections::HashSet;

use crate::config::{BackendConfig, DiscoverConfig, ServiceConfig, StrategyKind};

use super::policy::Found;

/// `base` (as declared) with each group's `sets` appended.
pub fn composed<'s>(
    base: &ServiceConfig,
    sets: impl IntoIterator<Item = (&'s DiscoverConfig, &'s [Found])>,
) -> ServiceConfig {
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
    service
}
