//! One test per validation rule: the exact error line, position included.

use super::*;

// ---- service name -------------------------------------------------------

#[test]
fn name_is_required() {
    let text = lines(&[
        "[[service]]",
        "listen = \"127.0.0.1:0\"",
        "[[service.backend]]",
        "address = \"127.0.0.1:1\"",
    ]);
    assert_eq!(
        error(&text),
        "lb.toml:1:1: service[0]: missing required key \"name\", e.g. name = \"pg\""
    );
}

#[test]
fn name_must_match_the_pattern() {
    let text = service_with(&[]).replace("\"pg\"", "\"p g\"");
    assert_eq!(
        error(&text),
        "lb.toml:2:8: service[0].name: invalid service name \"p g\": expected 1 to 64 \
         characters from A-Z, a-z, 0-9, '_', '.' and '-'"
    );
    let long = "x".repeat(65);
    let text = service_with(&[]).replace("pg", &long);
    assert!(error(&text).starts_with(&format!(
        "lb.toml:2:8: service[0].name: invalid service name \"{long}\""
    )));
    let text = service_with(&[]).replace("\"pg\"", "\"\"");
    assert!(error(&text).starts_with("lb.toml:2:8: service[0].name: invalid service name \"\""));
}

#[test]
fn name_must_be_unique_and_the_error_names_the_first() {
    let text = lines(&[
        "[[service]]",
        "name = \"pg\"",
        "listen = \"127.0.0.1:0\"",
        "backend = [{ address = \"127.0.0.1:1\" }]",
        "[[service]]",
        "name = \"pg\"",
        "listen = \"127.0.0.1:0\"",
        "backend = [{ address = \"127.0.0.1:1\" }]",
    ]);
    assert_eq!(
        error(&text),
        "lb.toml:6:8: service[1].name: duplicate service name \"pg\", first defined at line 2, column 8"
    );
}

#[test]
fn name_of_the_wrong_type_is_not_also_reported_missing() {
    let text = service_with(&[]).replace("\"pg\"", "5");
    assert_eq!(
        error(&text),
        "lb.toml:2:8: service[0].name: invalid type: integer `5`, expected a string"
    );
}

// ---- protocol and listen ------------------------------------------------

#[test]
fn protocol_must_be_tcp_or_udp() {
    assert_eq!(
        error(&service_with(&["protocol = \"sctp\""])),
        "lb.toml:4:12: service \"pg\".protocol: must be one of \"tcp\", \"udp\"; got \"sctp\""
    );
}

#[test]
fn listen_is_required() {
    let text = lines(&[
        "[[service]]",
        "name = \"pg\"",
        "[[service.backend]]",
        "address = \"127.0.0.1:1\"",
    ]);
    assert_eq!(
        error(&text),
        "lb.toml:1:1: service \"pg\": missing required key \"listen\", e.g. listen = \"0.0.0.0:6432\""
    );
}

#[test]
fn listen_list_must_not_be_empty() {
    let text = service_with(&[]).replace("\"127.0.0.1:0\"", "[]");
    assert_eq!(
        error(&text),
        "lb.toml:3:10: service \"pg\".listen: must list at least one address, e.g. [\"0.0.0.0:6432\"]"
    );
}

#[test]
fn listen_must_be_a_string_or_a_list_of_strings() {
    let text = service_with(&[]).replace("\"127.0.0.1:0\"", "6432");
    assert_eq!(
        error(&text),
        "lb.toml:3:10: service \"pg\".listen: invalid type: integer `6432`, expected an \
         address string such as \"0.0.0.0:6432\", or an array of them"
    );
}

#[test]
fn listen_addresses_need_a_port_and_brackets_for_ipv6() {
    let text = service_with(&[]).replace("\"127.0.0.1:0\"", "[\"127.0.0.1\", \"::1\"]");
    assert_eq!(
        errors(&text),
        [
            "lb.toml:3:11: service \"pg\".listen[0]: missing port in \"127.0.0.1\": \
             expected IP:port, [IPv6]:port or host:port",
            "lb.toml:3:24: service \"pg\".listen[1]: invalid address \"::1\": an IPv6 \
             address needs brackets and a port, e.g. \"[::1]:80\"",
        ]
    );
}

#[test]
fn listen_accepts_ipv6_and_host_names() {
    let text = service_with(&[]).replace("\"127.0.0.1:0\"", "[\"[::1]:0\", \"localhost:0\"]");
    let config = valid(&text);
    assert_eq!(config.services[0].listen.len(), 2);
    assert_eq!(config.services[0].listen[0].to_string(), "[::1]:0");
    assert_eq!(config.services[0].listen[1].port(), 0);
}

#[test]
fn listen_address_used_twice_in_one_service() {
    let text = service_with(&[]).replace(
        "\"127.0.0.1:0\"",
        "[\"127.0.0.1:7001\", \"127.0.0.1:7001\"]",
    );
    assert_eq!(
        error(&text),
        "lb.toml:3:29: service \"pg\".listen[1]: tcp 127.0.0.1:7001 is already used by \
         service \"pg\".listen[0] at line 3, column 11"
    );
}

fn two_services(first_listen: &str, second_listen: &str) -> String {
    lines(&[
        "[[service]]",
        "name = \"a\"",
        &format!("listen = \"{first_listen}\""),
        "backend = [{ address = \"127.0.0.1:1\" }]",
        "[[service]]",
        "name = \"b\"",
        &format!("listen = \"{second_listen}\""),
        "backend = [{ address = \"127.0.0.1:1\" }]",
    ])
}

#[test]
fn listen_address_used_by_two_services() {
    assert_eq!(
        error(&two_services("127.0.0.1:7001", "127.0.0.1:7001")),
        "lb.toml:7:10: service \"b\".listen: tcp 127.0.0.1:7001 is already used by \
         service \"a\".listen at line 3, column 10"
    );
}

#[test]
fn listen_wildcard_overlaps_a_specific_address_on_the_same_port() {
    assert_eq!(
        error(&two_services("127.0.0.1:7001", "0.0.0.0:7001")),
        "lb.toml:7:10: service \"b\".listen: tcp 0.0.0.0:7001 overlaps 127.0.0.1:7001 used by \
         service \"a\".listen at line 3, column 10 (a wildcard address takes the port on every address)"
    );
    assert_eq!(
        error(&two_services("[::]:7001", "[::1]:7001")),
        "lb.toml:7:10: service \"b\".listen: tcp [::1]:7001 overlaps [::]:7001 used by \
         service \"a\".listen at line 3, column 10 (a wildcard address takes the port on every address)"
    );
}

#[test]
fn listen_addresses_that_do_not_collide() {
    valid(&two_services("127.0.0.1:0", "127.0.0.1:0"));
    valid(&two_services("0.0.0.0:7001", "[::]:7001"));
    valid(&two_services("127.0.0.1:7001", "127.0.0.2:7001"));
    valid(&two_services("127.0.0.1:7001", "127.0.0.1:7002"));
    let tcp_and_udp = two_services("127.0.0.1:7001", "127.0.0.1:7001")
        .replace("name = \"b\"", "name = \"b\"\nprotocol = \"udp\"");
    check(&tcp_and_udp).unwrap();
}

#[test]
fn admin_listen_collides_with_a_tcp_service() {
    let text = format!(
        "[admin]\nlisten = \"127.0.0.1:7001\"\n{}",
        service_with(&[]).replace("127.0.0.1:0", "127.0.0.1:7001")
    );
    assert_eq!(
        error(&text),
        "lb.toml:5:10: service \"pg\".listen: tcp 127.0.0.1:7001 is already used by \
         admin.listen at line 2, column 10"
    );
}

// ---- strategy -----------------------------------------------------------

#[test]
fn unknown_strategy_lists_the_valid_ones() {
    assert_eq!(
        error(&service_with(&["strategy = \"fastest\""])),
        "lb.toml:4:12: service \"pg\".strategy: must be one of \"round_robin\", \
         \"least_connections\", \"power_of_two\", \"random\", \"least_response_time\", \
         \"source_hash\", \"consistent_hash\", \"maglev\"; got \"fastest\""
    );
}

#[test]
fn hash_key_only_on_hashing_strategies() {
    assert_eq!(
        error(&service_with(&[
            "strategy = \"random\"",
            "hash_key = \"source_ip\""
        ])),
        "lb.toml:5:12: service \"pg\".hash_key: only applies to strategies \"source_hash\", \
         \"consistent_hash\", \"maglev\", but strategy is \"random\""
    );
    assert_eq!(
        error(&service_with(&["hash_key = \"source_ip_port\""])),
        "lb.toml:4:12: service \"pg\".hash_key: only applies to strategies \"source_hash\", \
         \"consistent_hash\", \"maglev\", but strategy is \"round_robin\" (the default)"
    );
}

#[test]
fn hash_key_must_be_known() {
    assert_eq!(
        error(&service_with(&[
            "strategy = \"source_hash\"",
            "hash_key = \"dest_ip\""
        ])),
        "lb.toml:5:12: service \"pg\".hash_key: must be one of \"source_ip\", \
         \"source_ip_port\", \"sni\"; got \"dest_ip\""
    );
}

#[test]
fn virtual_nodes_only_on_consistent_hash_and_in_range() {
    assert_eq!(
        error(&service_with(&[
            "strategy = \"maglev\"",
            "virtual_nodes = 100"
        ])),
        "lb.toml:5:17: service \"pg\".virtual_nodes: only applies to strategy \
         \"consistent_hash\", but strategy is \"maglev\""
    );
    assert_eq!(
        error(&service_with(&[
            "strategy = \"consistent_hash\"",
            "virtual_nodes = 0"
        ])),
        "lb.toml:5:17: service \"pg\".virtual_nodes: must be between 1 and 1000, got 0"
    );
    assert_eq!(
        error(&service_with(&[
            "strategy = \"consistent_hash\"",
            "virtual_nodes = 1001"
        ])),
        "lb.toml:5:17: service \"pg\".virtual_nodes: must be between 1 and 1000, got 1001"
    );
}

#[test]
fn table_size_only_on_maglev() {
    assert_eq!(
        error(&service_with(&[
            "strategy = \"consistent_hash\"",
            "table_size = 65537"
        ])),
        "lb.toml:5:14: service \"pg\".table_size: only applies to strategy \"maglev\", \
         but strategy is \"consistent_hash\""
    );
}

#[test]
fn hash_version_must_be_one_this_build_knows() {
    assert_eq!(
        error(&service_with(&[
            "strategy = \"maglev\"",
            "hash_version = 2"
        ])),
        "lb.toml:5:16: service \"pg\".hash_version: unknown hash version 2; this l4lb \
         knows 1 (the client-to-backend mapping of each is frozen)"
    );
    let config = valid(&service_with(&[
        "strategy = \"source_hash\"",
        "hash_version = 1",
    ]));
    assert_eq!(config.services[0].strategy.hash_version, HashVersion::V1);
}

#[test]
fn hash_version_only_on_hashing_strategies() {
    assert_eq!(
        error(&service_with(&["hash_version = 1"])),
        "lb.toml:4:16: service \"pg\".hash_version: only applies to strategies \
         \"source_hash\", \"consistent_hash\", \"maglev\", but strategy is \
         \"round_robin\" (the default)"
    );
}

#[test]
fn table_size_must_be_a_prime() {
    assert_eq!(
        error(&service_with(&[
            "strategy = \"maglev\"",
            "table_size = 65536"
        ])),
        "lb.toml:5:14: service \"pg\".table_size: must be a prime number, got 65536 \
         (the next prime is 65537)"
    );
    assert_eq!(
        error(&service_with(&["strategy = \"maglev\"", "table_size = -7"])),
        "lb.toml:5:14: service \"pg\".table_size: must be a prime number, got -7 \
         (the next prime is 2)"
    );
}

#[test]
fn table_size_has_a_maximum() {
    assert_eq!(
        error(&service_with(&[
            "strategy = \"maglev\"",
            "table_size = 10000020"
        ])),
        "lb.toml:5:14: service \"pg\".table_size: must be a prime of at most 10000019, \
         got 10000020"
    );
}

#[test]
fn table_size_must_cover_the_backends() {
    let text = service_with(&["strategy = \"maglev\"", "table_size = 2"])
        + "[[service.backend]]\naddress = \"127.0.0.1:5433\"\n"
        + "[[service.backend]]\naddress = \"127.0.0.1:5434\"\n";
    assert_eq!(
        error(&text),
        "lb.toml:5:14: service \"pg\".table_size: must be at least the number of backends (3), got 2"
    );
}

// ---- integers -----------------------------------------------------------

#[test]
fn service_limits_must_not_be_negative() {
    assert_eq!(
        errors(&service_with(&[
            "max_connections = -1",
            "max_connections_per_source = -2"
        ])),
        [
            "lb.toml:4:19: service \"pg\".max_connections: must not be negative, got -1",
            "lb.toml:5:30: service \"pg\".max_connections_per_source: must not be negative, got -2",
        ]
    );
}

#[test]
fn connect_attempts_range() {
    assert_eq!(
        error(&service_with(&["connect_attempts = 0"])),
        "lb.toml:4:20: service \"pg\".connect_attempts: must be between 1 and 100, got 0"
    );
    assert_eq!(
        error(&service_with(&["connect_attempts = 101"])),
        "lb.toml:4:20: service \"pg\".connect_attempts: must be between 1 and 100, got 101"
    );
}

#[test]
fn max_flows_at_least_one() {
    assert_eq!(
        error(&service_with(&["protocol = \"udp\"", "max_flows = 0"])),
        "lb.toml:5:13: service \"pg\".max_flows: must be at least 1, got 0"
    );
}

#[test]
fn global_workers_and_max_connections() {
    let text = lines(&["[global]", "workers = 1025", "max_connections = -1"]) + &service_with(&[]);
    assert_eq!(
        errors(&text),
        [
            "lb.toml:2:11: global.workers: must be between 0 and 1024, got 1025",
            "lb.toml:3:19: global.max_connections: must not be negative, got -1",
        ]
    );
    let text = lines(&["[global]", "workers = -1"]) + &service_with(&[]);
    assert_eq!(
        error(&text),
        "lb.toml:2:11: global.workers: must be between 0 and 1024, got -1"
    );
}

#[test]
fn backend_weight_range() {
    assert_eq!(
        error(&backend_with(&["weight = 0"])),
        "lb.toml:6:10: service \"pg\".backend[0].weight: must be between 1 and 1000, got 0"
    );
    assert_eq!(
        error(&backend_with(&["weight = 1001"])),
        "lb.toml:6:10: service \"pg\".backend[0].weight: must be between 1 and 1000, got 1001"
    );
}

#[test]
fn backend_max_connections_must_not_be_negative() {
    assert_eq!(
        error(&backend_with(&["max_connections = -5"])),
        "lb.toml:6:19: service \"pg\".backend[0].max_connections: must not be negative, got -5"
    );
}

#[test]
fn integers_of_the_wrong_type() {
    assert_eq!(
        error(&backend_with(&["weight = \"3\""])),
        "lb.toml:6:10: service \"pg\".backend[0].weight: invalid type: string \"3\", expected an integer"
    );
    assert_eq!(
        error(&backend_with(&["weight = 1.5"])),
        "lb.toml:6:10: service \"pg\".backend[0].weight: invalid type: floating point `1.5`, \
         expected an integer"
    );
}

fn health_with(extra: &[&str]) -> String {
    let mut all = vec!["[service.health]"];
    all.extend_from_slice(extra);
    service_with(&all)
}

#[test]
fn health_rise_fall_and_port_ranges() {
    let text = health_with(&["rise = 0", "fall = 101", "port = 65536"]);
    assert_eq!(
        check(&text).map_err(render).unwrap_err(),
        [
            "lb.toml:5:8: service \"pg\".health.rise: must be between 1 and 100, got 0",
            "lb.toml:6:8: service \"pg\".health.fall: must be between 1 and 100, got 101",
            "lb.toml:7:8: service \"pg\".health.port: must be between 0 and 65535, got 65536",
        ]
    );
    assert_eq!(
        error(&health_with(&["port = -1"])),
        "lb.toml:5:8: service \"pg\".health.port: must be between 0 and 65535, got -1"
    );
}

#[test]
fn outlier_consecutive_failures_at_least_one() {
    let text = service_with(&["[service.outlier]", "consecutive_failures = 0"]);
    assert_eq!(
        error(&text),
        "lb.toml:5:24: service \"pg\".outlier.consecutive_failures: must be at least 1, got 0"
    );
}

// ---- durations ----------------------------------------------------------

#[test]
fn unparsable_duration_quotes_the_value_and_gives_examples() {
    assert_eq!(
        error(&service_with(&["connect_timeout = \"soon\""])),
        "lb.toml:4:19: service \"pg\".connect_timeout: invalid duration \"soon\" (expected \
         number at 0); expected a number and a unit, e.g. \"250ms\", \"2s\", \"1h\" or \"1m30s\""
    );
    assert_eq!(
        error(&service_with(&["idle_timeout = \"10\""])),
        "lb.toml:4:16: service \"pg\".idle_timeout: invalid duration \"10\" (time unit \
         needed, for example 10sec or 10ms); expected a number and a unit, e.g. \"250ms\", \
         \"2s\", \"1h\" or \"1m30s\""
    );
}

#[test]
fn duration_of_the_wrong_type() {
    assert_eq!(
        error(&service_with(&["connect_timeout = 3"])),
        "lb.toml:4:19: service \"pg\".connect_timeout: invalid type: integer `3`, expected a \
         duration string such as \"250ms\", \"2s\" or \"1m30s\""
    );
}

#[test]
fn zero_durations_where_they_make_no_sense() {
    assert_eq!(
        errors(&service_with(&[
            "connect_timeout = \"0s\"",
            "idle_timeout = \"0ms\""
        ])),
        [
            "lb.toml:4:19: service \"pg\".connect_timeout: must be greater than 0, got \"0s\"",
            "lb.toml:5:16: service \"pg\".idle_timeout: must be greater than 0, got \"0ms\"",
        ]
    );
    let text = health_with(&["interval = \"0s\"", "timeout = \"0s\""]);
    assert_eq!(
        check(&text).map_err(render).unwrap_err(),
        [
            "lb.toml:5:12: service \"pg\".health.interval: must be greater than 0, got \"0s\"",
            "lb.toml:6:11: service \"pg\".health.timeout: must be greater than 0, got \"0s\"",
        ]
    );
    let text = service_with(&["[service.outlier]", "ejection_time = \"0s\""]);
    assert_eq!(
        error(&text),
        "lb.toml:5:17: service \"pg\".outlier.ejection_time: must be greater than 0, got \"0s\""
    );
}

#[test]
fn zero_durations_where_they_are_allowed() {
    let text =
        lines(&["[global]", "shutdown_grace = \"0s\""]) + &backend_with(&["slow_start = \"0s\""]);
    let config = valid(&text);
    assert_eq!(config.global.shutdown_grace, Duration::ZERO);
    assert_eq!(config.services[0].backends[0].slow_start, Duration::ZERO);
}

#[test]
fn health_timeout_longer_than_interval() {
    assert_eq!(
        error(&health_with(&["interval = \"1s\"", "timeout = \"1500ms\""])),
        "lb.toml:6:11: service \"pg\".health.timeout: must not be longer than interval (1s), \
         got 1s 500ms"
    );
    assert_eq!(
        error(&health_with(&["interval = \"500ms\""])),
        "lb.toml:5:12: service \"pg\".health.timeout: must not be longer than interval \
         (500ms), got 1s (the default)"
    );
}

// ---- backends -----------------------------------------------------------

#[test]
fn a_service_needs_a_backend() {
    let text = lines(&["[[service]]", "name = \"pg\"", "listen = \"127.0.0.1:0\""]);
    let expected = "lb.toml:1:1: service \"pg\": no backends: add at least one \
                    [[service.backend]] table with an address, or a [[service.discover]] group";
    assert_eq!(error(&text), expected);
    assert_eq!(error(&(text + "backend = []\n")), expected);
}

#[test]
fn backend_address_is_required() {
    let text = lines(&[
        "[[service]]",
        "name = \"pg\"",
        "listen = \"127.0.0.1:0\"",
        "[[service.backend]]",
        "weight = 2",
    ]);
    assert_eq!(
        error(&text),
        "lb.toml:4:1: service \"pg\".backend[0]: missing required key \"address\", e.g. \
         address = \"10.0.0.11:5432\""
    );
}

#[test]
fn backend_address_that_does_not_resolve() {
    let text = service_with(&[]).replace("127.0.0.1:5432", "nonexistent.invalid:80");
    let message = error(&text);
    let expected = "lb.toml:5:11: service \"pg\".backend[0].address: cannot resolve host \
                    \"nonexistent.invalid\" in \"nonexistent.invalid:80\": ";
    assert!(message.starts_with(expected), "{message}");
    assert!(
        message.len() > expected.len(),
        "the resolver's reason is missing"
    );
}

#[test]
fn backend_address_used_twice() {
    let text = backend_with(&["[[service.backend]]", "address = \"127.0.0.1:5432\""]);
    assert_eq!(
        error(&text),
        "lb.toml:7:11: service \"pg\".backend[1].address: duplicate backend address \
         \"127.0.0.1:5432\", already used by service \"pg\".backend[0] at line 5, column 11"
    );
}

#[test]
fn backend_address_used_twice_through_a_host_name() {
    let text = backend_with(&["[[service.backend]]", "address = \"localhost:5432\""]);
    let errors = parse_with(&text, source(), no_dns).unwrap_err();
    assert_eq!(
        render(errors),
        [
            "lb.toml:7:11: service \"pg\".backend[1].address: duplicate backend address \
          \"localhost:5432\" (127.0.0.1:5432), already used by service \"pg\".backend[0] at \
          line 5, column 11"
        ]
    );
}

// ---- choices and lists --------------------------------------------------

#[test]
fn allow_and_deny_entries_must_be_cidrs() {
    assert_eq!(
        errors(&service_with(&[
            "allow = [\"10.0.0.0/8\", \"10.0.0.0/33\"]"
        ])),
        [
            "lb.toml:4:24: service \"pg\".allow[1]: invalid CIDR \"10.0.0.0/33\": expected a \
             network such as \"10.0.0.0/8\" or \"2001:db8::/32\", or a single address such as \
             \"192.0.2.7\"",
        ]
    );
    assert_eq!(
        error(&service_with(&["deny = [\"nope\"]"])),
        "lb.toml:4:9: service \"pg\".deny[0]: invalid CIDR \"nope\": expected a network such \
         as \"10.0.0.0/8\" or \"2001:db8::/32\", or a single address such as \"192.0.2.7\""
    );
}

#[test]
fn allow_must_be_a_list_of_strings() {
    assert_eq!(
        error(&service_with(&["allow = \"10.0.0.0/8\""])),
        "lb.toml:4:9: service \"pg\".allow: invalid type: string \"10.0.0.0/8\", expected an \
         array of strings, e.g. [\"10.0.0.0/8\"]"
    );
}

#[test]
fn proxy_protocol_values() {
    assert_eq!(
        error(&service_with(&["proxy_protocol = \"v3\""])),
        "lb.toml:4:18: service \"pg\".proxy_protocol: must be one of \"off\", \"v1\", \"v2\", \
         \"v2-every\"; got \"v3\""
    );
    assert_eq!(
        error(&service_with(&[
            "protocol = \"udp\"",
            "proxy_protocol = \"v1\""
        ])),
        "lb.toml:5:18: service \"pg\".proxy_protocol: udp services support only \"off\", \
         \"v2\" or \"v2-every\"; got \"v1\""
    );
}

#[test]
fn on_all_down_values() {
    assert_eq!(
        error(&service_with(&["on_all_down = \"panic\""])),
        "lb.toml:4:15: service \"pg\".on_all_down: must be one of \"reject\", \"use_all\"; got \"panic\""
    );
}

#[test]
fn health_kind_values() {
    assert_eq!(
        error(&health_with(&["kind = \"icmp\""])),
        "lb.toml:5:8: service \"pg\".health.kind: must be one of \"tcp\", \"udp\", \"postgres\", \
         \"redis\", \"mysql\", \"http\", \"dns\", \"agent\"; got \"icmp\""
    );
}

#[test]
fn booleans_of_the_wrong_type() {
    assert_eq!(
        error(&service_with(&["close_on_down = \"yes\""])),
        "lb.toml:4:17: service \"pg\".close_on_down: invalid type: string \"yes\", expected a boolean"
    );
}

// ---- admin --------------------------------------------------------------

#[test]
fn admin_listen_and_token() {
    let text = lines(&["[admin]", "listen = \"127.0.0.1\"", "token = 5"]) + &service_with(&[]);
    assert_eq!(
        check(&text).map_err(render).unwrap_err(),
        [
            "lb.toml:2:10: admin.listen: missing port in \"127.0.0.1\": expected IP:port, \
             [IPv6]:port or host:port",
            "lb.toml:3:9: admin.token: invalid type: integer `5`, expected a string",
        ]
    );
}

#[test]
fn sections_of_the_wrong_shape() {
    assert_eq!(
        error(&("admin = 1\n".to_string() + &service_with(&[]))),
        "lb.toml:1:9: admin: expected a table ([admin]), got an integer"
    );
    assert_eq!(
        error("[service]\nname = \"pg\"\n"),
        "lb.toml:1:1: service: expected an array of tables ([[service]]), got a table"
    );
    assert_eq!(
        error("service = [1]\n"),
        "lb.toml:1:12: service[0]: expected a table, got an integer"
    );
    assert_eq!(
        error(&service_with(&["[service.backend]"]).replace("[[service.backend]]\n", "")),
        "lb.toml:4:1: service \"pg\".backend: expected an array of tables \
         ([[service.backend]]), got a table"
    );
}

#[test]
fn a_file_needs_a_service() {
    assert_eq!(
        errors(""),
        ["lb.toml: no services: add at least one [[service]] table"]
    );
    assert_eq!(
        errors("[global]\nworkers = 2\n"),
        ["lb.toml: no services: add at least one [[service]] table"]
    );
}

#[test]
fn keys_of_the_other_protocol_are_refused() {
    assert_eq!(
        error(&service_with(&["max_flows = 5"])),
        "lb.toml:4:13: service \"pg\".max_flows: applies to udp services only, and this \
         service is tcp; remove it"
    );
    assert_eq!(
        errors(&service_with(&[
            "protocol = \"udp\"",
            "connect_timeout = \"1s\"",
            "close_on_down = false",
        ])),
        [
            "lb.toml:5:19: service \"pg\".connect_timeout: applies to tcp services only, and \
             this service is udp; remove it",
            "lb.toml:6:17: service \"pg\".close_on_down: applies to tcp services only, and \
             this service is udp; remove it",
        ]
    );
}

// ---- control socket ------------------------------------------------------

#[test]
fn control_socket_must_be_an_absolute_socket_path_that_fits() {
    let with = |path: &str| {
        format!(
            "[global]\ncontrol_socket = \"{path}\"\n{}",
            service_with(&[])
        )
    };
    assert_eq!(
        error(&with("run/l4lb.sock")),
        "lb.toml:2:18: global.control_socket: must be an absolute path, got \"run/l4lb.sock\""
    );
    assert_eq!(
        error(&with("/run/l4lb/")),
        "lb.toml:2:18: global.control_socket: must name a socket file, not a directory, got \"/run/l4lb/\""
    );
    let long = format!("/{}", "x".repeat(107));
    assert_eq!(
        error(&with(&long)),
        "lb.toml:2:18: global.control_socket: a unix socket path has at most 107 bytes, got 108"
    );
    let config = valid(&with("/tmp/l4lb/upgrade.sock"));
    assert_eq!(
        config.global.control_socket,
        Path::new("/tmp/l4lb/upgrade.sock")
    );
}
