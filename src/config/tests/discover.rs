//! `[[service.discover]]`: defaults, and every mistake reported at its key.

use std::time::Duration;

use super::*;
use crate::config::{DiscoverQuery, Refresh};

fn group_service(group: &[&str]) -> String {
    let mut all = vec!["[[service]]", "name = \"pg\"", "listen = \"127.0.0.1:0\""];
    all.extend_from_slice(group);
    lines(&all)
}

#[test]
fn a_group_alone_is_a_valid_service_with_its_defaults() {
    let text = group_service(&[
        "[[service.discover]]",
        "dns = \"pg.service.consul\"",
        "port = 5432",
    ]);
    let config = check(&text).unwrap();
    let group = &config.services[0].discover[0];
    assert_eq!(
        group.query,
        DiscoverQuery::Dns {
            name: "pg.service.consul".into(),
            port: 5432
        }
    );
    assert_eq!(
        group.refresh,
        Refresh::Ttl {
            max: Duration::from_secs(30)
        }
    );
    assert!(group.resolvers.is_empty());
    assert_eq!(
        (
            group.weight,
            group.max_backends,
            group.empty_after,
            group.backup
        ),
        (1, 64, 3, false)
    );
    assert_eq!(group.timeout, Duration::from_secs(5));
    assert!(config.services[0].backends.is_empty());
}

#[test]
fn srv_groups_take_a_fixed_refresh_and_resolver_addresses() {
    let text = group_service(&[
        "[[service.discover]]",
        "srv = \"_pg._tcp.db.example\"",
        "refresh = \"10s\"",
        "resolvers = [\"127.0.0.1:8600\", \"::1\"]",
    ]);
    let config = check(&text).unwrap();
    let group = &config.services[0].discover[0];
    assert_eq!(group.refresh, Refresh::Every(Duration::from_secs(10)));
    assert_eq!(
        group.resolvers,
        vec![
            "127.0.0.1:8600".parse().unwrap(),
            "[::1]:53".parse().unwrap()
        ]
    );
}

#[test]
fn discover_mistakes_are_reported_at_their_keys() {
    let text = group_service(&[
        "[[service.discover]]",
        "dns = \"pg.test\"",
        "[[service.discover]]",
        "srv = \"_pg._tcp.test\"",
        "port = 5432",
        "refresh = \"soon\"",
        "resolvers = [\"consul:8600\"]",
        "[[service.discover]]",
        "dns = \"a.test\"",
        "srv = \"_a._tcp.test\"",
        "[[service.discover]]",
        "max_backends = 0",
    ]);
    assert_eq!(
        errors(&text),
        [
            "lb.toml:4:1: service \"pg\".discover[0]: missing required key \"port\": a dns \
             group needs the port its addresses serve on, e.g. port = 5432",
            "lb.toml:8:8: service \"pg\".discover[1].port: an srv group takes each target's \
             port from its SRV record; remove port",
            "lb.toml:9:11: service \"pg\".discover[1].refresh: invalid duration \"soon\" \
             (expected number at 0); expected a number and a unit, e.g. \"250ms\", \"2s\", \
             \"1h\" or \"1m30s\"; or \"ttl\" to follow the answers' TTLs",
            "lb.toml:10:14: service \"pg\".discover[1].resolvers[0]: invalid resolver address \
             \"consul:8600\": expected IP:port or IP, e.g. \"127.0.0.1:8600\" (a resolver is \
             never a host name)",
            "lb.toml:13:7: service \"pg\".discover[2].srv: set either dns (A/AAAA records) or \
             srv (SRV records), not both",
            "lb.toml:14:1: service \"pg\".discover[3]: missing \"dns\" or \"srv\": the name to \
             discover backends from, e.g. dns = \"pg.service.consul\" or srv = \
             \"_pg._tcp.db.example\"",
            "lb.toml:15:16: service \"pg\".discover[3].max_backends: must be between 1 and \
             10000, got 0",
        ]
    );
}

#[test]
fn a_service_needs_a_backend_or_a_group() {
    let text = lines(&["[[service]]", "name = \"pg\"", "listen = \"127.0.0.1:0\""]);
    let errors = errors(&text);
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].ends_with("or a [[service.discover]] group"),
        "{errors:?}"
    );
}
