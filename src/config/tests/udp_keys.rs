//! The udp flow and probe payload keys: `udp_requests`, `udp_responses`,
//! `access_log`, `proxy_protocol = "v2-every"`, `send_hex`, `expect`, `expect_hex`.

use super::*;

#[test]
fn flow_counts_access_log_and_v2_every_are_read() {
    let config = valid(&udp_service_with(&[
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
        errors(&udp_service_with(&[
            "udp_responses = -1",
            "access_log = \"some\""
        ])),
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
fn a_udp_check_sends_bytes_and_may_expect_a_reply_prefix() {
    let udp_check = |text: &str| {
        valid(text).services[0]
            .health
            .as_ref()
            .map(|h| h.check.clone())
    };
    let binary = udp_service_with(&[
        "[service.health]",
        "send_hex = \"ffffffff54536f7572636520456e67696e6520517565727900\"",
        "expect_hex = \"FF FF FF FF 49\"",
    ]);
    let expected = UdpCheck {
        send: b"\xff\xff\xff\xffTSource Engine Query\0".to_vec(),
        expect: Some(b"\xff\xff\xff\xffI".to_vec()),
    };
    assert_eq!(udp_check(&binary), Some(Check::Udp(expected)));
    let text = udp_service_with(&["[service.health]", "send = \"ping\"", "expect = \"pong\""]);
    let expected = UdpCheck {
        send: b"ping".to_vec(),
        expect: Some(b"pong".to_vec()),
    };
    assert_eq!(udp_check(&text), Some(Check::Udp(expected)));
    let any = udp_service_with(&["[service.health]", "send = \"ping\""]);
    let expected = UdpCheck {
        send: b"ping".to_vec(),
        expect: None,
    };
    assert_eq!(udp_check(&any), Some(Check::Udp(expected)));
}

#[test]
fn udp_expect_mistakes_are_named() {
    let both = udp_service_with(&[
        "[service.health]",
        "send = \"a\"",
        "expect = \"b\"",
        "expect_hex = \"62\"",
    ]);
    assert!(
        error(&both).starts_with("lb.toml:8:14: service \"dns\".health.expect_hex: "),
        "{}",
        error(&both)
    );
    let empty = udp_service_with(&["[service.health]", "send = \"a\"", "expect = \"\""]);
    assert!(
        error(&empty).starts_with("lb.toml:7:10: service \"dns\".health.expect: must not be empty"),
        "{}",
        error(&empty)
    );
}
