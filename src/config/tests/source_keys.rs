//! `source`, `source_port` and `mark`: accepted values and every message.

use super::*;

#[test]
fn client_source_with_the_client_port_and_a_mark_is_accepted() {
    let text = service_with(&[
        "source = \"client\"",
        "source_port = \"client\"",
        "mark = 0x2a",
    ]);
    let source = valid(&text).services[0].source;
    assert_eq!(source.address, SourceAddress::Client);
    assert_eq!(source.port, SourcePort::Client);
    assert_eq!(source.mark, 42);
}

#[test]
fn a_fixed_source_address_is_accepted_for_udp_too() {
    let text = udp_service_with(&["source = \"127.0.0.1\"", "mark = 7"]);
    let source = valid(&text).services[0].source;
    assert_eq!(
        source.address,
        SourceAddress::Fixed("127.0.0.1".parse().unwrap())
    );
    assert_eq!(source.port, SourcePort::Any);
}

#[test]
fn the_default_is_the_kernels_choice() {
    assert!(valid(&service_with(&[])).services[0].source.is_plain());
}

#[test]
fn a_source_with_a_port_is_refused() {
    assert_eq!(
        error(&service_with(&["source = \"127.0.0.1:9000\""])),
        "lb.toml:4:10: service \"pg\".source: must be \"client\" or an IP address of this host \
         without a port, e.g. \"10.0.0.5\" or \"2001:db8::5\"; got \"127.0.0.1:9000\""
    );
}

#[test]
fn the_client_port_needs_the_client_address() {
    assert_eq!(
        error(&service_with(&["source_port = \"client\""])),
        "lb.toml:4:15: service \"pg\".source_port: \"client\" keeps the client's port, which \
         needs source = \"client\" too"
    );
    assert_eq!(
        error(&service_with(&[
            "source = \"127.0.0.1\"",
            "source_port = \"client\""
        ])),
        "lb.toml:5:15: service \"pg\".source_port: \"client\" keeps the client's port, which \
         only applies with source = \"client\"; remove source_port or set source = \"client\""
    );
}

#[test]
fn an_unknown_source_port_and_a_negative_mark_are_refused() {
    let all = errors(&service_with(&["source_port = \"fixed\"", "mark = -1"]));
    assert_eq!(all.len(), 2, "{all:#?}");
    assert!(
        all[0].starts_with("lb.toml:4:15: service \"pg\".source_port: "),
        "{all:#?}"
    );
    assert!(
        all[1].starts_with("lb.toml:5:8: service \"pg\".mark: "),
        "{all:#?}"
    );
}

#[test]
fn a_source_of_the_other_family_is_refused_at_the_backend() {
    assert_eq!(
        error(&service_with(&["source = \"::1\""])),
        "lb.toml:6:11: service \"pg\".backend[0].address: this IPv4 backend cannot be reached \
         from source ::1: use a backend and a source of the same address family"
    );
}

#[test]
fn client_source_refuses_listen_addresses_of_the_other_family() {
    let text = lines(&[
        "[[service]]",
        "name = \"pg\"",
        "listen = [\"127.0.0.1:0\", \"[::1]:0\"]",
        "source = \"client\"",
        "[[service.backend]]",
        "address = \"127.0.0.1:5432\"",
    ]);
    assert_eq!(
        error(&text),
        "lb.toml:6:11: service \"pg\".backend[0].address: source = \"client\" connects from the \
         client's own address, and clients on listen address [::1]:0 are not IPv4 like this \
         backend: list backends of the listen addresses' family (or use one service per family)"
    );
}

#[test]
fn an_invalid_source_is_one_error_even_with_the_client_port() {
    assert_eq!(
        error(&service_with(&[
            "source = \"nowhere\"",
            "source_port = \"client\""
        ])),
        "lb.toml:4:10: service \"pg\".source: must be \"client\" or an IP address of this host \
         without a port, e.g. \"10.0.0.5\" or \"2001:db8::5\"; got \"nowhere\""
    );
}
