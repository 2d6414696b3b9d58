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

#[test]
fn a_tcp_check_takes_send_and_expect_as_text_or_hex() {
    let text = service_with(&[
        "[service.health]",
        "send = \"PING\\r\\n\"",
        "expect_hex = \"2b 50\"",
    ]);
    let health = valid(&text).services[0].health.clone().expect("health");
    assert_eq!(
        health.check,
        Check::Tcp(TcpCheck {
            send: b"PING\r\n".to_vec(),
            expect: Some(b"+P".to_vec()),
        })
    );
}

#[test]
fn payload_keys_twice_bad_hex_and_an_empty_expect_are_errors() {
    let text = service_with(&[
        "[service.health]",
        "send = \"a\"",
        "send_hex = \"61\"",
        "expect_hex = \"zz\"",
    ]);
    assert_eq!(
        errors(&text),
        [
            "lb.toml:6:12: service \"pg\".health.send_hex: send and send_hex are both set; keep one",
            "lb.toml:7:14: service \"pg\".health.expect_hex: invalid hex \"zz\" (Invalid character \
             'z' at position 0); expected pairs of hex digits, e.g. \"0d0a\"",
        ]
    );
    let text = service_with(&["[service.health]", "expect = \"\""]);
    assert!(
        error(&text).starts_with("lb.toml:5:10: service \"pg\".health.expect: must not be empty")
    );
}

#[test]
fn keys_of_another_check_kind_are_errors() {
    let text = service_with(&[
        "[service.health]",
        "kind = \"redis\"",
        "database = \"app\"",
        "path = \"/\"",
    ]);
    assert_eq!(
        errors(&text),
        [
            "lb.toml:6:12: service \"pg\".health.database: applies to \"postgres\" checks only, \
             and this check is redis; remove it",
            "lb.toml:7:8: service \"pg\".health.path: applies to \"http\" checks only, and this \
             check is redis; remove it",
        ]
    );
    let text = udp_service_with(&["[service.health]", "send = \"x\"", "query = \"y\""]);
    assert_eq!(
        error(&text),
        "lb.toml:7:9: service \"dns\".health.query: applies to \"dns\" checks only, and this \
         check is udp; remove it"
    );
}

#[test]
fn each_protocol_kind_reads_its_settings() {
    let check = |lines: &[&str]| {
        let mut all = vec!["[service.health]"];
        all.extend_from_slice(lines);
        valid(&service_with(&all)).services[0]
            .health
            .clone()
            .expect("health")
            .check
    };
    assert_eq!(
        check(&[
            "kind = \"postgres\"",
            "role = \"primary\"",
            "user = \"app\""
        ]),
        Check::Postgres(PostgresCheck {
            user: "app".into(),
            database: "app".into(),
            password: None,
            require_primary: true,
        })
    );
    assert_eq!(
        check(&[
            "kind = \"redis\"",
            "password = \"s3cret\"",
            "role = \"master\""
        ]),
        Check::Redis(RedisCheck {
            user: None,
            password: Some("s3cret".into()),
            require_master: true,
        })
    );
    assert_eq!(check(&["kind = \"mysql\""]), Check::Mysql);
    assert_eq!(
        check(&[
            "kind = \"http\"",
            "path = \"/healthz\"",
            "status = \"200-204\"",
            "port = 8080"
        ]),
        Check::Http(HttpCheck {
            path: "/healthz".into(),
            host: None,
            status: 200..=204,
        })
    );
    assert_eq!(
        check(&["kind = \"agent\"", "agent_port = 9999"]),
        Check::Agent(AgentCheck { port: 9999 })
    );
    let dns = valid(&udp_service_with(&[
        "[service.health]",
        "kind = \"dns\"",
        "query = \"example.com.\"",
        "query_type = \"AAAA\"",
        "rcodes = [\"NOERROR\", \"NXDOMAIN\"]",
    ]));
    assert_eq!(
        dns.services[0].health.clone().expect("health").check,
        Check::Dns(DnsCheck {
            name: "example.com".into(),
            query_type: 28,
            rcodes: vec![0, 3],
        })
    );
}

#[test]
fn required_and_bad_protocol_settings_are_reported() {
    assert_eq!(
        error(&udp_service_with(&["[service.health]", "kind = \"dns\""])),
        "lb.toml:5:1: service \"dns\".health: missing required key \"query\", e.g. query = \
         \"example.com\""
    );
    assert_eq!(
        error(&service_with(&["[service.health]", "kind = \"agent\""])),
        "lb.toml:4:1: service \"pg\".health: missing required key \"agent_port\", e.g. \
         agent_port = 9999"
    );
    assert_eq!(
        error(&service_with(&[
            "[service.health]",
            "kind = \"http\"",
            "status = \"600\""
        ])),
        "lb.toml:6:10: service \"pg\".health.status: invalid status range \"600\": expected a \
         status or a range of statuses between 100 and 599, e.g. \"200\" or \"200-399\""
    );
    assert_eq!(
        error(&service_with(&[
            "[service.health]",
            "kind = \"postgres\"",
            "role = \"master\""
        ])),
        "lb.toml:6:8: service \"pg\".health.role: must be one of \"any\", \"primary\"; got \
         \"master\""
    );
    let text = udp_service_with(&[
        "[service.health]",
        "kind = \"dns\"",
        "query = \"a..b\"",
        "rcodes = [\"OK\"]",
    ]);
    let found = errors(&text);
    assert_eq!(found.len(), 2, "{found:#?}");
    assert!(
        found[0]
            .starts_with("lb.toml:7:9: service \"dns\".health.query: invalid DNS name \"a..b\"")
    );
    assert!(
        found[1].starts_with(
            "lb.toml:8:11: service \"dns\".health.rcodes[0]: must be one of \"NOERROR\""
        )
    );
}

#[test]
fn a_backend_overrides_the_services_check_keys() {
    let text = backend_with(&[
        "[service.backend.health]",
        "port = 6000",
        "kind = \"postgres\"",
        "[[service.backend]]",
        "address = \"127.0.0.1:5433\"",
        "[service.health]",
        "interval = \"5s\"",
    ]);
    let config = valid(&text);
    let service = &config.services[0];
    let base = service.health.clone().expect("service check");
    let over = service.backends[0].health.clone().expect("override");
    assert_eq!(
        (over.port, over.interval, over.kind()),
        (Some(6000), Duration::from_secs(5), HealthKind::Postgres)
    );
    assert_eq!(base.kind(), HealthKind::Tcp);
    assert_eq!(service.backends[1].health, None);
}

#[test]
fn a_backend_override_needs_a_service_check_and_is_checked_at_its_own_table() {
    let text = backend_with(&["[service.backend.health]", "port = 6000"]);
    assert_eq!(
        error(&text),
        "lb.toml:6:1: service \"pg\".backend[0].health: overrides the service's \
         [service.health], which this service does not have: add [service.health] (the \
         backend's table only changes its keys)"
    );
    let text =
        service_with(&["[service.health]"]) + &lines(&["[service.backend.health]", "rise = 0"]);
    assert_eq!(
        error(&text),
        "lb.toml:8:8: service \"pg\".backend[0].health.rise: must be between 1 and 100, got 0"
    );
}

#[test]
fn a_udp_check_needs_a_payload() {
    let text = udp_service_with(&["[service.health]", "kind = \"udp\""]);
    assert_eq!(
        error(&text),
        "lb.toml:5:1: service \"dns\".health: a udp check needs \"send\", the payload each \
         probe sends, e.g. send = \"ping\" (any datagram back is a success)"
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
    assert_eq!(
        health.check,
        Check::Udp(UdpCheck {
            send: b"ping".to_vec(),
            expect: None,
        })
    );
}

#[test]
fn a_check_of_the_other_protocol_is_an_error() {
    let text = service_with(&["[service.health]", "kind = \"udp\"", "send = \"ping\""]);
    assert_eq!(
        error(&text),
        "lb.toml:5:8: service \"pg\".health.kind: a udp check cannot probe the backends of a \
         tcp service; use kind = \"tcp\", \"postgres\", \"redis\", \"mysql\", \"http\" or \
         \"agent\""
    );
    let text = udp_service_with(&["[service.health]", "kind = \"tcp\""]);
    assert_eq!(
        error(&text),
        "lb.toml:6:8: service \"dns\".health.kind: a tcp check cannot probe the backends of a \
         udp service; use kind = \"udp\", \"dns\", \"http\" or \"agent\""
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

#[test]
fn keys_a_kind_would_ignore_are_errors() {
    let text = service_with(&[
        "[service.health]",
        "kind = \"agent\"",
        "agent_port = 9999",
        "port = 80",
    ]);
    assert_eq!(
        error(&text),
        "lb.toml:7:8: service \"pg\".health.port: an agent check connects to agent_port on \
         the backend's IP; remove port"
    );
    let text = service_with(&[
        "[service.health]",
        "kind = \"postgres\"",
        "password = \"x\"",
    ]);
    assert_eq!(
        error(&text),
        "lb.toml:6:12: service \"pg\".health.password: a postgres check logs in only with \
         role = \"primary\" (otherwise it stops at the server's first answer); add role = \
         \"primary\" or remove password"
    );
    let text = service_with(&[
        "[service.health]",
        "kind = \"postgres\"",
        "role = \"primary\"",
        "password = \"x\"",
    ]);
    valid(&text);
}
