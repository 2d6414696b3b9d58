//! The udp flow and probe payload keys: `udp_requests`, `udp_responses`,
//! `access_log`, `proxy_protocol = "v2-every"`, `send_hex`, `expect`, `expect_hex`.

use super::*;

fn udp_with(extra: &[&str]) -> String {
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
fn flow_counts_access_log_and_v2_every_are_read() {
    let config = valid(&udp_with(&[
        "udp_requests = 3",
        "udp_responses = 1",
        "access_log = \"errors\"",
        "proxy_protocol = \"v2-every\"",
    ]));
    let service = &config.services[0];
    assert_eq!((service.udp_requests, service.udp_responses), (3, 1));
    assert_eq!(service.access_log, AccessLog::Errors);
    assert_eq!(service.proxy_protocol, ProxyProtocol::V2Every);
    let tcp = valid(&service_with(&["access_log = \"off\""]));
    assert_eq!(tcp.services[0].access_log, AccessLog::Off);
}

#[test]
fn flow_count_and_access_log_mistakes_are_named() {
    assert_eq!(
        errors(&udp_with(&["udp_responses = -1", "access_log = \"some\""])),
        [
            "lb.toml:5:17: service \"dns\".udp_responses: must not be negative, got -1",
            "lb.toml:6:14: service \"dns\".access_log: must be one of \"all\", \"errors\", \
             \"off\"; got \"some\"",
        ]
    );
    assert_eq!(
        error(&service_with(&["udp_responses = 1"])),
        "lb.toml:4:17: service \"pg\".udp_responses: applies to udp services only, and this \
         service is tcp; remove it"
    );
    assert_eq!(
        error(&service_with(&["proxy_protocol = \"v2-every\""])),
        "lb.toml:4:18: service \"pg\".proxy_protocol: \"v2-every\" (a header on every \
         datagram) applies to udp services only; tcp sends one header per connection: use \
         \"v1\" or \"v2\""
    );
}

#[test]
fn send_hex_and_expect_hex_are_bytes() {
    let config = valid(&udp_with(&[
        "[service.health]",
        "send_hex = \"ffffffff54536f7572636520456e67696e6520517565727900\"",
        "expect_hex = \"FF FF FF FF 49\"",
    ]));
    let health = config.services[0].health.as_ref().expect("health");
    assert_eq!(health.send, b"\xff\xff\xff\xffTSource Engine Query\0");
    assert_eq!(health.expect.as_deref(), Some(&b"\xff\xff\xff\xffI"[..]));
    let text = valid(&udp_with(&[
        "[service.health]",
        "send = \"ping\"",
        "expect = \"pong\"",
    ]));
    let health = text.services[0].health.as_ref().expect("health");
    assert_eq!(health.expect.as_deref(), Some(&b"pong"[..]));
    let any = valid(&udp_with(&["[service.health]", "send = \"ping\""]));
    assert_eq!(
        any.services[0].health.as_ref().expect("health").expect,
        None
    );
}

#[test]
fn probe_payload_mistakes_are_named() {
    assert_eq!(
        errors(&udp_with(&[
            "[service.health]",
            "send = \"a\"",
            "send_hex = \"61\"",
            "expect = \"b\"",
            "expect_hex = \"6\"",
        ])),
        [
            "lb.toml:7:12: service \"dns\".health.send_hex: give the payload once: either send \
             (text) or send_hex (bytes), not both",
            "lb.toml:9:14: service \"dns\".health.expect_hex: give the expected reply once: \
             either expect (text) or expect_hex (bytes), not both",
            "lb.toml:9:14: service \"dns\".health.expect_hex: must be hex digits, two per byte \
             (e.g. \"ffffffff54\"): Odd number of digits, got \"6\"",
        ]
    );
    assert_eq!(
        errors(&udp_with(&[
            "[service.health]",
            "send_hex = \"zz\"",
            "expect = \"\""
        ])),
        [
            "lb.toml:6:12: service \"dns\".health.send_hex: must be hex digits, two per byte \
             (e.g. \"ffffffff54\"): Invalid character 'z' at position 0, got \"zz\"",
            "lb.toml:7:10: service \"dns\".health.expect: must not be empty: omit it to accept \
             any reply",
        ]
    );
    assert_eq!(
        error(&service_with(&["[service.health]", "expect_hex = \"00\""])),
        "lb.toml:5:14: service \"pg\".health.expect_hex: applies to udp checks only, and this \
         check is tcp (a tcp check only connects); remove it"
    );
}
