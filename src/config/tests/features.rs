//! Optional features: their keys are accepted with valid values, their off
//! values are accepted explicitly, and combinations that make no sense are refused.

use super::*;

#[test]
fn health_outlier_backup_slow_start_and_fail_open_are_accepted() {
    let text = service_with(&[
        "on_all_down = \"use_all\"",
        "close_on_down = true",
        "[service.health]",
        "interval = \"100ms\"",
        "timeout = \"50ms\"",
        "[service.outlier]",
        "consecutive_failures = 2",
    ]) + "backup = true\nslow_start = \"30s\"\n";
    let config = valid(&text);
    let service = &config.services[0];
    assert_eq!(service.on_all_down, OnAllDown::UseAll);
    assert!(service.close_on_down);
    assert!(service.health.is_some() && service.outlier.is_some());
    assert!(service.backends[0].backup);
    assert_eq!(service.backends[0].slow_start, Duration::from_secs(30));
}

#[test]
fn slow_start_is_refused_with_hashing_strategies() {
    assert_eq!(
        error(&(service_with(&["strategy = \"maglev\""]) + "slow_start = \"30s\"\n")),
        "lb.toml:7:14: service \"pg\".backend[0].slow_start: slow_start cannot be used with \
         strategy \"maglev\", which must keep each client on its backend; use a non-hashing \
         strategy or remove slow_start"
    );
}

#[test]
fn the_admin_table_and_its_token_are_accepted() {
    let text = lines(&[
        "[admin]",
        "listen = \"127.0.0.1:9100\"",
        "token = \"s3cret\"",
    ]) + &service_with(&[]);
    let admin = valid(&text).admin.expect("admin table");
    assert_eq!(admin.listen, "127.0.0.1:9100".parse().expect("literal"));
    assert_eq!(admin.token, "s3cret");
}

#[test]
fn explicit_off_values_are_accepted() {
    let text = service_with(&[
        "protocol = \"tcp\"",
        "proxy_protocol = \"off\"",
        "accept_proxy_protocol = false",
        "allow = []",
        "deny = []",
        "on_all_down = \"reject\"",
        "close_on_down = false",
    ]) + "backup = false\nslow_start = \"0s\"\n";
    valid(&text);
}

#[test]
fn supported_limits_and_global_keys_are_accepted() {
    let text = lines(&[
        "[global]",
        "workers = 2",
        "max_connections = 10",
        "shutdown_grace = \"5s\"",
    ]) + &service_with(&["max_connections = 5", "max_connections_per_source = 2"]);
    let config = valid(&text);
    assert_eq!(config.services[0].max_connections_per_source, 2);
}

#[test]
fn an_open_admin_endpoint_off_loopback_is_warned_about() {
    let open = lines(&["[admin]", "listen = \"0.0.0.0:9100\""]) + &service_with(&[]);
    let found = warnings(&valid(&open));
    assert_eq!(found.len(), 1);
    assert!(found[0].contains("admin.listen 0.0.0.0:9100 is not a loopback address"));
    let with_token =
        lines(&["[admin]", "listen = \"0.0.0.0:9100\"", "token = \"x\""]) + &service_with(&[]);
    assert!(warnings(&valid(&with_token)).is_empty());
    let loopback = lines(&["[admin]", "listen = \"127.0.0.1:9100\""]) + &service_with(&[]);
    assert!(warnings(&valid(&loopback)).is_empty());
}

#[test]
fn proxy_protocol_settings_are_accepted_and_accept_is_tcp_only() {
    let text = service_with(&["proxy_protocol = \"v2\"", "accept_proxy_protocol = true"]);
    let config = valid(&text);
    assert_eq!(config.services[0].proxy_protocol, ProxyProtocol::V2);
    assert!(config.services[0].accept_proxy_protocol);
    assert_eq!(
        error(&service_with(&[
            "protocol = \"udp\"",
            "accept_proxy_protocol = true"
        ])),
        "lb.toml:5:25: service \"pg\".accept_proxy_protocol: applies to tcp services only, \
         and this service is udp; remove it"
    );
}
