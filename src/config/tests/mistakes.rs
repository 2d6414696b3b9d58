//! Mistakes that look plausible and would otherwise be accepted: durations
//! past any timer, checks that cannot probe their service, backends that loop
//! back into l4lb, CIDRs with host bits, mistyped keys and addresses.

use super::*;

// ---- durations have an upper bound --------------------------------------

#[test]
fn durations_longer_than_30_days_are_refused_everywhere() {
    let text = lines(&[
        "[global]",
        "shutdown_grace = \"31days\"",
        "[[service]]",
        "name = \"pg\"",
        "listen = \"127.0.0.1:0\"",
        "idle_timeout = \"18446744073709551615s\"",
        "connect_timeout = \"721h\"",
        "[service.health]",
        "interval = \"1000000h\"",
        "[service.outlier]",
        "ejection_time = \"100years\"",
        "[[service.backend]]",
        "address = \"127.0.0.1:5432\"",
        "slow_start = \"5000000000s\"",
    ]);
    let bound = "must be at most 30 days (\"720h\")";
    assert_eq!(
        errors(&text),
        [
            format!("lb.toml:2:18: global.shutdown_grace: {bound}, got \"31days\""),
            format!(
                "lb.toml:6:16: service \"pg\".idle_timeout: {bound}, got \"18446744073709551615s\""
            ),
            format!("lb.toml:7:19: service \"pg\".connect_timeout: {bound}, got \"721h\""),
            format!("lb.toml:9:12: service \"pg\".health.interval: {bound}, got \"1000000h\""),
            format!(
                "lb.toml:11:17: service \"pg\".outlier.ejection_time: {bound}, got \"100years\""
            ),
            format!(
                "lb.toml:14:14: service \"pg\".backend[0].slow_start: {bound}, got \"5000000000s\""
            ),
        ]
    );
}

#[test]
fn thirty_days_is_accepted() {
    let config = valid(&service_with(&["idle_timeout = \"720h\""]));
    assert_eq!(
        config.services[0].idle_timeout,
        Duration::from_secs(30 * 24 * 3600)
    );
}

// ---- health checks must fit their service -------------------------------

/// A udp service "dns" (lines 1-4), then `extra` from line 5, then one backend.
fn udp_service_with(extra: &[&str]) -> String {
    let mut all = vec![
        "[[service]]",
        "name = \"dns\"",
        "protocol = \"udp\"",
        "listen = \"127.0.0.1:0\"",
    ];
    all.extend_from_slice(extra);
    all.extend_from_slice(&["[[service.backend]]", "address = \"127.0.0.1:1054\""]);
    lines(&all)
}

#[test]
fn send_on_a_tcp_check_is_an_error() {
    let text = service_with(&["[service.health]", "send = \"ping\""]);
    assert_eq!(
        error(&text),
        "lb.toml:5:8: service \"pg\".health.send: applies to udp checks only, and this check \
         is tcp (a tcp check only connects); remove it"
    );
}

#[test]
fn a_udp_check_needs_a_payload() {
    let text = udp_service_with(&["[service.health]", "kind = \"udp\""]);
    assert_eq!(
        error(&text),
        "lb.toml:5:1: service \"dns\".health: a udp check needs \"send\" (or \"send_hex\"), \
         the payload each probe sends, e.g. send = \"ping\" (any datagram back is a success \
         unless expect or expect_hex is set)"
    );
    let text = udp_service_with(&["[service.health]", "send = \"\""]);
    assert_eq!(
        error(&text),
        "lb.toml:6:8: service \"dns\".health.send: must not be empty for a udp check: give a \
         payload your backends answer, e.g. send = \"ping\""
    );
}

#[test]
fn a_udp_service_checks_with_udp_unless_told_otherwise() {
    let config = valid(&udp_service_with(&["[service.health]", "send = \"ping\""]));
    let health = config.services[0].health.as_ref().expect("health");
    assert_eq!(health.kind, HealthKind::Udp);
    assert_eq!(health.send, b"ping");
}

#[test]
fn a_check_of_the_other_protocol_is_an_error() {
    let text = service_with(&["[service.health]", "kind = \"udp\"", "send = \"ping\""]);
    assert_eq!(
        error(&text),
        "lb.toml:5:8: service \"pg\".health.kind: a udp check cannot probe the backends of a \
         tcp service; use kind = \"tcp\""
    );
    let text = udp_service_with(&["[service.health]", "kind = \"tcp\""]);
    assert_eq!(
        error(&text),
        "lb.toml:6:8: service \"dns\".health.kind: a tcp check cannot probe the backends of a \
         udp service; use kind = \"udp\""
    );
}

// ---- backends that lead back into l4lb ----------------------------------

#[test]
fn a_backend_on_the_services_own_listen_address_is_an_error() {
    let text = lines(&[
        "[[service]]",
        "name = \"pg\"",
        "listen = \"127.0.0.1:6432\"",
        "[[service.backend]]",
        "address = \"127.0.0.1:6432\"",
    ]);
    assert_eq!(
        error(&text),
        "lb.toml:5:11: service \"pg\".backend[0].address: 127.0.0.1:6432 is l4lb's own listen \
         address (service \"pg\".listen at line 3, column 10): clients would be proxied back \
         into l4lb; point it at the real server"
    );
}

#[test]
fn a_backend_on_another_services_listen_address_of_the_same_protocol_is_an_error() {
    let text = lines(&[
        "[[service]]",
        "name = \"a\"",
        "listen = \"127.0.0.1:7000\"",
        "backend = [{ address = \"127.0.0.1:7001\" }, { address = \"localhost:8000\" }]",
        "[[service]]",
        "name = \"b\"",
        "listen = [\"127.0.0.1:7001\", \"127.0.0.1:8000\"]",
        "backend = [{ address = \"127.0.0.1:7000\" }]",
        "[[service]]",
        "name = \"u\"",
        "protocol = \"udp\"",
        "listen = \"127.0.0.1:7000\"",
        "backend = [{ address = \"127.0.0.1:7002\" }]",
    ]);
    let text = text.replace("127.0.0.1:7002", "127.0.0.1:7001");
    assert_eq!(
        errors(&text),
        [
            "lb.toml:4:24: service \"a\".backend[0].address: 127.0.0.1:7001 is l4lb's own listen \
             address (service \"b\".listen[0] at line 7, column 11): clients would be proxied \
             back into l4lb; point it at the real server",
            "lb.toml:4:56: service \"a\".backend[1].address: 127.0.0.1:8000 is l4lb's own listen \
             address (service \"b\".listen[1] at line 7, column 29): clients would be proxied \
             back into l4lb; point it at the real server",
            "lb.toml:8:24: service \"b\".backend[0].address: 127.0.0.1:7000 is l4lb's own listen \
             address (service \"a\".listen at line 3, column 10): clients would be proxied back \
             into l4lb; point it at the real server",
        ],
        "the udp service's tcp-only neighbours are not loops"
    );
}

#[test]
fn a_local_backend_on_the_port_of_a_wildcard_listener_is_an_error() {
    let text = lines(&[
        "[[service]]",
        "name = \"pg\"",
        "listen = [\"0.0.0.0:6432\", \"[::]:6432\"]",
        "backend = [{ address = \"127.0.0.2:6432\" }, { address = \"[::1]:6432\" }, \
         { address = \"10.0.0.1:6432\" }, { address = \"127.0.0.1:6433\" }]",
    ]);
    let all = errors(&text);
    assert_eq!(all.len(), 2, "{all:#?}");
    assert_eq!(
        all[0],
        "lb.toml:4:24: service \"pg\".backend[0].address: 127.0.0.2:6432 reaches l4lb's own \
         listen address 0.0.0.0:6432 (service \"pg\".listen[0] at line 3, column 11), which \
         takes port 6432 on every local address: clients would be proxied back into l4lb; \
         point it at the real server"
    );
    assert!(
        all[1].starts_with(
            "lb.toml:4:56: service \"pg\".backend[1].address: [::1]:6432 reaches l4lb's own \
             listen address [::]:6432 (service \"pg\".listen[1] at line 3, column 27)"
        ),
        "{}",
        all[1]
    );
}

#[test]
fn a_backend_on_the_admin_address_is_an_error() {
    let text = lines(&["[admin]", "listen = \"127.0.0.1:9100\""])
        + &service_with(&[]).replace("127.0.0.1:5432", "127.0.0.1:9100");
    assert!(
        error(&text).contains(
            "127.0.0.1:9100 is l4lb's own listen address (admin.listen at line 2, column 10)"
        ),
        "{}",
        error(&text)
    );
}

// ---- CIDRs and IPv4 literals --------------------------------------------

#[test]
fn a_cidr_with_host_bits_says_which_network_was_meant() {
    assert_eq!(
        error(&service_with(&["deny = [\"10.0.0.0/8\", \"10.1.2.3/8\"]"])),
        "lb.toml:4:23: service \"pg\".deny[1]: invalid CIDR \"10.1.2.3/8\": host bits are set \
         after the /8 prefix; did you mean \"10.0.0.0/8\" (the network), or \"10.1.2.3\" (the \
         one address)?"
    );
}

#[test]
fn a_malformed_ipv4_address_is_not_looked_up_as_a_host_name() {
    let text = backend_with(&[]).replace("127.0.0.1:5432", "127.0.0.256:5432");
    assert_eq!(
        error(&text),
        "lb.toml:5:11: service \"pg\".backend[0].address: invalid IPv4 address \"127.0.0.256\" \
         in \"127.0.0.256:5432\": expected four numbers from 0 to 255 separated by dots, e.g. \
         \"10.0.0.11:5432\""
    );
}
