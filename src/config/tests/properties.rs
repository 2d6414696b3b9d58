//! Properties over generated input: `parse` never panics, whatever it is fed.

use proptest::prelude::*;

use super::*;

/// Parses with no DNS, so generated host names never reach the network.
fn parse_offline(text: &str) -> Result<Config, ConfigErrors> {
    parse_with(text, source(), no_dns)
}

const KEYS: &[&str] = &[
    "name",
    "protocol",
    "listen",
    "strategy",
    "hash_key",
    "virtual_nodes",
    "table_size",
    "max_connections",
    "max_connections_per_source",
    "connect_timeout",
    "connect_attempts",
    "idle_timeout",
    "max_flows",
    "proxy_protocol",
    "accept_proxy_protocol",
    "allow",
    "deny",
    "on_all_down",
    "close_on_down",
    "kind",
    "interval",
    "timeout",
    "rise",
    "fall",
    "port",
    "send",
    "consecutive_failures",
    "ejection_time",
    "address",
    "weight",
    "backup",
    "slow_start",
    "workers",
    "shutdown_grace",
    "drain_delay",
    "worker_dispatch",
    "hash_version",
    "token",
    "health",
    "outlier",
    "backend",
    "service",
    "admin",
    "global",
];

const VALUES: &[&str] = &[
    "\"pg\"",
    "\"udp\"",
    "\"tcp\"",
    "\"127.0.0.1:0\"",
    "\"127.0.0.1:6432\"",
    "\"0.0.0.0:6432\"",
    "[\"[::1]:1\", \"localhost:2\"]",
    "[]",
    "\"maglev\"",
    "\"consistent_hash\"",
    "\"source_ip\"",
    "0",
    "-1",
    "1",
    "7",
    "65537",
    "9223372036854775807",
    "1.5",
    "true",
    "false",
    "\"0s\"",
    "\"2s\"",
    "\"1h\"",
    "\"x\"",
    "[\"10.0.0.0/8\", \"bad\"]",
    "{ address = \"127.0.0.1:1\" }",
    "[{ address = \"127.0.0.1:1\" }]",
    "{}",
    "\"v1\"",
    "\"use_all\"",
    "1979-05-27T07:32:00Z",
];

const HEADERS: &[&str] = &[
    "[[service]]",
    "[[service.backend]]",
    "[service.health]",
    "[service.outlier]",
    "[global]",
    "[admin]",
    "[service]",
    "[[admin]]",
];

/// One line of a plausible `lb.toml`: a header or a key with a value.
fn line() -> impl Strategy<Value = String> {
    prop_oneof![
        1 => prop::sample::select(HEADERS).prop_map(str::to_string),
        4 => (prop::sample::select(KEYS), prop::sample::select(VALUES))
            .prop_map(|(k, v)| format!("{k} = {v}")),
    ]
}

proptest! {
    #[test]
    fn arbitrary_text_never_panics(text in any::<String>()) {
        let _ = parse_offline(&text);
    }

    #[test]
    fn toml_like_text_never_panics(text in "[\\[\\]a-z_.=\"0-9:, {}\n-]{0,200}") {
        let _ = parse_offline(&text);
    }

    #[test]
    fn plausible_configs_never_panic_and_errors_are_well_formed(
        lines in prop::collection::vec(line(), 0..40)
    ) {
        let text = lines.join("\n");
        if let Err(errors) = parse_offline(&text) {
            prop_assert!(!errors.is_empty());
            for error in errors.iter() {
                prop_assert_eq!(&error.file, "lb.toml");
                prop_assert!(!error.message.is_empty());
                prop_assert_eq!(error.line.is_some(), error.column.is_some());
                if let Some(line) = error.line {
                    prop_assert!(line >= 1 && line <= lines.len().max(1) + 1);
                }
            }
        }
    }
}
