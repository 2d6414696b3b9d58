//! `[[service.route]]`: what a valid routed service becomes, and every error
//! `l4lb check` gives about routes.

use super::*;

/// Service "pg" with its own backend (lines 1-5), then `extra` from line 6.
fn routed(extra: &[&str]) -> String {
    backend_with(extra)
}

#[test]
fn routes_become_pools_of_backends_with_their_own_settings() {
    let text = routed(&[
        "[[service.route]]",
        "sni = [\"DB1.example.com\", \"*.api.example.com\"]",
        "alpn = [\"h2\"]",
        "strategy = \"maglev\"",
        "hash_key = \"sni\"",
        "max_connections = 7",
        "[service.route.health]",
        "interval = \"1s\"",
        "[[service.route.backend]]",
        "address = \"127.0.0.1:6001\"",
        "[[service.route]]",
        "name = \"mqtt\"",
        "sni = [\"mqtt.example.com\"]",
        "[[service.route.backend]]",
        "address = \"127.0.0.1:6002\"",
    ]);
    let config = valid(&text);
    let service = &config.services[0];
    assert_eq!(service.routes.len(), 2);
    let first = &service.routes[0];
    assert_eq!(first.name, "db1.example.com");
    assert_eq!(
        first.sni,
        vec![
            SniPattern::Exact("db1.example.com".into()),
            SniPattern::Wildcard("api.example.com".into())
        ]
    );
    assert_eq!(first.alpn, vec!["h2".to_string()]);
    assert_eq!(first.strategy.kind, StrategyKind::Maglev);
    assert_eq!(first.strategy.hash_key, HashKey::Sni);
    assert_eq!(first.max_connections, 7);
    assert_eq!(service.routes[1].name, "mqtt");
    assert_eq!(service.routes[1].strategy, service.strategy);
    let routes: Vec<usize> = service.backends.iter().map(|b| b.route).collect();
    assert_eq!(routes, vec![0, 1, 2]);
    let route_check = service.backends[1].health.as_ref().expect("route health");
    assert_eq!(route_check.interval, Duration::from_secs(1));
    assert!(service.health_of(&service.backends[2]).is_none());
    assert_eq!(service.no_sni, NoSni::Default);
    assert_eq!(service.preread_timeout, Duration::from_secs(5));
    assert!(service.prereads_tls());
    assert!(
        service
            .summary()
            .contains("2 routes by TLS server name (2 backends)")
    );
}

#[test]
fn names_and_wildcards_are_checked() {
    let text = routed(&[
        "[[service.route]]",
        "sni = [\"a.*.example.com\", \"bad name\", \"10.0.0.1\", \"ok.example.com\", \"OK.example.com\"]",
        "[[service.route.backend]]",
        "address = \"127.0.0.1:6001\"",
    ]);
    assert_eq!(
        errors(&text),
        [
            "lb.toml:7:8: service \"pg\".route[0].sni[0]: invalid wildcard \"a.*.example.com\": \
             a wildcard must be the whole leftmost label, followed by a name, as in \
             \"*.example.com\" (it matches one label)",
            "lb.toml:7:27: service \"pg\".route[0].sni[1]: invalid server name \"bad name\": \
             label \"bad name\" must be 1 to 63 letters, digits, '-' or '_'",
            "lb.toml:7:39: service \"pg\".route[0].sni[2]: invalid server name \"10.0.0.1\": \
             an IP address is never sent as a server name (RFC 6066)",
            "lb.toml:7:69: service \"pg\".route[0].sni[4]: \"ok.example.com\" is listed twice \
             in this route",
        ]
    );
}

#[test]
fn identical_routes_are_an_error_and_exact_beside_wildcard_is_not() {
    let text = routed(&[
        "[[service.route]]",
        "name = \"one\"",
        "sni = [\"*.example.com\", \"db.example.com\"]",
        "[[service.route.backend]]",
        "address = \"127.0.0.1:6001\"",
        "[[service.route]]",
        "name = \"two\"",
        "sni = [\"db.example.com\"]",
        "[[service.route.backend]]",
        "address = \"127.0.0.1:6002\"",
        "[[service.route]]",
        "name = \"three\"",
        "sni = [\"x.example.com\"]",
        "alpn = [\"h2\"]",
        "[[service.route.backend]]",
        "address = \"127.0.0.1:6003\"",
    ]);
    assert_eq!(
        errors(&text),
        [
            "lb.toml:13:8: service \"pg\".route[1].sni[0]: \"db.example.com\" is already routed by \
          route \"one\" (service \"pg\".route[0].sni[1] at line 8, column 25) for the same ALPN \
          protocols; two routes cannot match the same clients"
        ]
    );
}

#[test]
fn route_names_must_be_unique_and_not_default() {
    let text = routed(&[
        "[[service.route]]",
        "name = \"default\"",
        "sni = [\"a.example.com\"]",
        "[[service.route.backend]]",
        "address = \"127.0.0.1:6001\"",
        "[[service.route]]",
        "sni = [\"b.example.com\"]",
        "[[service.route.backend]]",
        "address = \"127.0.0.1:6002\"",
        "[[service.route]]",
        "name = \"b.example.com\"",
        "sni = [\"c.example.com\"]",
    ]);
    assert_eq!(
        errors(&text),
        [
            "lb.toml:7:8: service \"pg\".route[0].name: \"default\" names the service's own \
             [[service.backend]] list; give this route another name",
            "lb.toml:15:1: service \"pg\".route[2]: no backends: add at least one \
             [[service.route.backend]] table with an address",
            "lb.toml:16:8: service \"pg\".route[2].name: duplicate route name \"b.example.com\" \
             (first at line 11, column 1); set `name` to tell them apart",
        ]
    );
}

#[test]
fn a_backend_address_belongs_to_one_route_of_a_service() {
    let text = routed(&[
        "[[service.route]]",
        "sni = [\"a.example.com\"]",
        "[[service.route.backend]]",
        "address = \"127.0.0.1:5432\"",
    ]);
    assert_eq!(
        error(&text),
        "lb.toml:9:11: service \"pg\".route[0].backend[0].address: duplicate backend address \
         \"127.0.0.1:5432\", already used by service \"pg\".backend[0] at line 5, column 11"
    );
}

#[test]
fn routes_and_sni_keys_on_a_udp_service_are_errors() {
    let text = udp_service_with(&[
        "hash_key = \"sni\"",
        "strategy = \"maglev\"",
        "no_sni = \"reject\"",
        "[[service.route]]",
        "sni = [\"a.example.com\"]",
    ]);
    assert_eq!(
        errors(&text),
        [
            "lb.toml:5:12: service \"dns\".hash_key: \"sni\" hashes the TLS server name, which \
             only tcp services read; use \"source_ip\" or \"source_ip_port\"",
            "lb.toml:7:10: service \"dns\".no_sni: applies to tcp services only, and this \
             service is udp; remove it",
            "lb.toml:8:1: service \"dns\".route[0]: routes apply to tcp services only (they read \
             the TLS ClientHello), and this service is udp; remove the route",
            "lb.toml:8:1: service \"dns\".route[0]: no backends: add at least one \
             [[service.route.backend]] table with an address",
        ]
    );
}

#[test]
fn preread_keys_need_something_to_read() {
    let text = service_with(&["no_sni = \"reject\"", "preread_timeout = \"2s\""]);
    assert_eq!(
        errors(&text),
        [
            "lb.toml:4:10: service \"pg\".no_sni: only applies to a service that reads the TLS \
             ClientHello: add [[service.route]] tables (or hash_key = \"sni\"), or remove it",
            "lb.toml:5:19: service \"pg\".preread_timeout: only applies to a service that reads \
             the TLS ClientHello: add [[service.route]] tables (or hash_key = \"sni\"), or \
             remove it",
        ]
    );
    let hashed = service_with(&[
        "strategy = \"source_hash\"",
        "hash_key = \"sni\"",
        "no_sni = \"reject\"",
    ]);
    assert_eq!(valid(&hashed).services[0].no_sni, NoSni::Reject);
}

#[test]
fn a_routed_service_needs_no_default_backends_but_each_route_needs_some() {
    let text = lines(&[
        "[[service]]",
        "name = \"tls\"",
        "listen = \"127.0.0.1:0\"",
        "[[service.route]]",
        "sni = [\"a.example.com\"]",
        "[[service.route.backend]]",
        "address = \"127.0.0.1:6001\"",
    ]);
    let config = valid(&text);
    assert_eq!(config.services[0].backends.len(), 1);
}
