//! Defaults filled in for absent keys, and a file setting every key parsed to
//! exactly the expected `Config`.

use std::net::SocketAddr;
use std::path::PathBuf;

use ipnet::IpNet;

use super::*;

fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

fn net(text: &str) -> IpNet {
    text.parse().unwrap()
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn default_backend(address: &str) -> BackendConfig {
    BackendConfig {
        address: address.to_string(),
        resolved: addr(address),
        weight: 1,
        max_connections: 0,
        backup: false,
        slow_start: Duration::ZERO,
        health: None,
        route: 0,
    }
}

#[test]
fn a_minimal_service_gets_every_default() {
    let config = valid(&service_with(&[]));
    let expected = Config {
        source: PathBuf::from("lb.toml"),
        admin: None,
        global: GlobalConfig {
            workers: 0,
            max_connections: 0,
            shutdown_grace: secs(30),
            control_socket: PathBuf::from("/run/l4lb/control.sock"),
            drain_delay: Duration::ZERO,
            worker_dispatch: WorkerDispatchMode::LeastSessions,
        },
        services: vec![ServiceConfig {
            name: "pg".to_string(),
            protocol: Protocol::Tcp,
            listen: vec![addr("127.0.0.1:0")],
            strategy: StrategyConfig {
                kind: StrategyKind::RoundRobin,
                hash_key: HashKey::SourceIp,
                virtual_nodes: 160,
                table_size: 65537,
                hash_version: HashVersion::V1,
            },
            max_connections: 0,
            max_connections_per_source: 0,
            connect_timeout: secs(3),
            connect_attempts: 3,
            idle_timeout: secs(3600),
            max_flows: 10_000,
            proxy_protocol: ProxyProtocol::Off,
            accept_proxy_protocol: false,
            udp_requests: 0,
            udp_responses: 0,
            access_log: AccessLog::All,
            allow: vec![],
            deny: vec![],
            on_all_down: OnAllDown::Reject,
            close_on_down: false,
            source: BackendSource::default(),
            routes: Vec::new(),
            no_sni: NoSni::Default,
            preread_timeout: secs(5),
            health: None,
            outlier: None,
            backends: vec![default_backend("127.0.0.1:5432")],
            discover: Vec::new(),
        }],
    };
    assert_eq!(config, expected);
}

#[test]
fn empty_global_table_gets_defaults() {
    let config = valid(&(lines(&["[global]"]) + &service_with(&[])));
    assert_eq!(config.global, GlobalConfig::default());
}

#[test]
fn udp_idle_timeout_defaults_to_thirty_seconds() {
    let config = check(&service_with(&["protocol = \"udp\""])).unwrap();
    assert_eq!(config.services[0].protocol, Protocol::Udp);
    assert_eq!(config.services[0].idle_timeout, secs(30));
}

#[test]
fn empty_health_outlier_and_admin_tables_get_defaults() {
    let text = lines(&["[admin]"]) + &service_with(&["[service.health]", "[service.outlier]"]);
    let config = check(&text).unwrap();
    assert_eq!(
        config.admin,
        Some(AdminConfig {
            listen: addr("127.0.0.1:9100"),
            token: String::new(),
        })
    );
    let service = &config.services[0];
    assert_eq!(
        service.health,
        Some(HealthConfig {
            check: Check::Tcp(TcpCheck::default()),
            interval: secs(2),
            timeout: secs(1),
            rise: 2,
            fall: 3,
            port: None,
        })
    );
    assert_eq!(
        service.outlier,
        Some(OutlierConfig {
            consecutive_failures: 5,
            ejection_time: secs(30),
        })
    );
}

#[test]
fn strategy_parameters_for_hashing_strategies() {
    let text = service_with(&[
        "strategy = \"consistent_hash\"",
        "hash_key = \"source_ip_port\"",
        "virtual_nodes = 1000",
    ]);
    let strategy = valid(&text).services[0].strategy;
    assert_eq!(strategy.kind, StrategyKind::ConsistentHash);
    assert_eq!(strategy.hash_key, HashKey::SourceIpPort);
    assert_eq!(strategy.virtual_nodes, 1000);

    let text = service_with(&["strategy = \"maglev\"", "table_size = 10000019"]);
    let strategy = valid(&text).services[0].strategy;
    assert_eq!(strategy.kind, StrategyKind::Maglev);
    assert_eq!(strategy.table_size, 10_000_019);
}

#[test]
fn every_strategy_name_is_accepted() {
    for kind in StrategyKind::ALL {
        let text = service_with(&[&format!("strategy = \"{kind}\"")]);
        assert_eq!(valid(&text).services[0].strategy.kind, kind);
    }
}

const EVERY_KEY: &str = r#"
[admin]
listen = "127.0.0.1:9200"
token = "s3cret"

[global]
workers = 4
max_connections = 50000
shutdown_grace = "1m30s"
drain_delay = "5s"
worker_dispatch = "kernel"

[[service]]
name = "dns.udp-1"
protocol = "udp"
listen = ["127.0.0.1:5353", "[::1]:5353"]
strategy = "maglev"
hash_key = "source_ip_port"
table_size = 251
idle_timeout = "45s"
max_flows = 20000
proxy_protocol = "v2"
allow = ["10.0.0.0/8", "192.0.2.7", "2001:db8::/32"]
deny = ["10.1.0.0/16"]
on_all_down = "use_all"

[service.health]
kind = "udp"
interval = "5s"
timeout = "500ms"
rise = 1
fall = 10
port = 5300
send = "ping"

[service.outlier]
consecutive_failures = 7
ejection_time = "1m"

[[service.backend]]
address = "127.0.0.1:5301"
weight = 1000
max_connections = 25
backup = false
slow_start = "0s"

[[service.backend]]
address = "[::1]:5302"
backup = true

[[service]]
name = "ring"
listen = "127.0.0.1:7000"
strategy = "consistent_hash"
virtual_nodes = 40
max_connections = 100
max_connections_per_source = 10
connect_timeout = "250ms"
connect_attempts = 2
close_on_down = true
accept_proxy_protocol = true

[[service.backend]]
address = "localhost:7001"
"#;

fn expected_dns_service() -> ServiceConfig {
    ServiceConfig {
        name: "dns.udp-1".to_string(),
        protocol: Protocol::Udp,
        listen: vec![addr("127.0.0.1:5353"), addr("[::1]:5353")],
        strategy: StrategyConfig {
            kind: StrategyKind::Maglev,
            hash_key: HashKey::SourceIpPort,
            virtual_nodes: 160,
            table_size: 251,
            hash_version: HashVersion::V1,
        },
        max_connections: 0,
        max_connections_per_source: 0,
        connect_timeout: secs(3),
        connect_attempts: 3,
        idle_timeout: secs(45),
        max_flows: 20_000,
        proxy_protocol: ProxyProtocol::V2,
        accept_proxy_protocol: false,
        udp_requests: 0,
        udp_responses: 0,
        access_log: AccessLog::All,
        allow: vec![net("10.0.0.0/8"), net("192.0.2.7/32"), net("2001:db8::/32")],
        deny: vec![net("10.1.0.0/16")],
        on_all_down: OnAllDown::UseAll,
        close_on_down: false,
        source: BackendSource::default(),
        routes: Vec::new(),
        no_sni: NoSni::Default,
        preread_timeout: secs(5),
        health: Some(HealthConfig {
            check: Check::Udp(UdpCheck {
                send: b"ping".to_vec(),
                expect: None,
            }),
            interval: secs(5),
            timeout: Duration::from_millis(500),
            rise: 1,
            fall: 10,
            port: Some(5300),
        }),
        outlier: Some(OutlierConfig {
            consecutive_failures: 7,
            ejection_time: secs(60),
        }),
        backends: vec![
            BackendConfig {
                weight: 1000,
                max_connections: 25,
                slow_start: Duration::ZERO,
                ..default_backend("127.0.0.1:5301")
            },
            BackendConfig {
                backup: true,
                ..default_backend("[::1]:5302")
            },
        ],
        discover: Vec::new(),
    }
}

/// The tcp service "ring"; `localhost` is whatever the system resolves it to.
fn expected_ring_service(localhost: SocketAddr) -> ServiceConfig {
    ServiceConfig {
        name: "ring".to_string(),
        protocol: Protocol::Tcp,
        listen: vec![addr("127.0.0.1:7000")],
        strategy: StrategyConfig {
            kind: StrategyKind::ConsistentHash,
            virtual_nodes: 40,
            ..StrategyConfig::default()
        },
        max_connections: 100,
        max_connections_per_source: 10,
        connect_timeout: Duration::from_millis(250),
        connect_attempts: 2,
        idle_timeout: secs(3600),
        max_flows: 10_000,
        proxy_protocol: ProxyProtocol::Off,
        accept_proxy_protocol: true,
        udp_requests: 0,
        udp_responses: 0,
        access_log: AccessLog::All,
        allow: vec![],
        deny: vec![],
        on_all_down: OnAllDown::Reject,
        close_on_down: true,
        source: BackendSource::default(),
        routes: Vec::new(),
        no_sni: NoSni::Default,
        preread_timeout: secs(5),
        health: None,
        outlier: None,
        backends: vec![BackendConfig {
            address: "localhost:7001".to_string(),
            resolved: localhost,
            ..default_backend("127.0.0.1:7001")
        }],
        discover: Vec::new(),
    }
}

#[test]
fn a_file_with_every_key_parses_to_the_expected_config() {
    let config = check(EVERY_KEY).unwrap();
    let localhost = config.services[1].backends[0].resolved;
    assert!(localhost.ip().is_loopback() && localhost.port() == 7001);
    let expected = Config {
        source: PathBuf::from("lb.toml"),
        admin: Some(AdminConfig {
            listen: addr("127.0.0.1:9200"),
            token: "s3cret".to_string(),
        }),
        global: GlobalConfig {
            workers: 4,
            max_connections: 50_000,
            shutdown_grace: secs(90),
            control_socket: PathBuf::from("/run/l4lb/control.sock"),
            drain_delay: secs(5),
            worker_dispatch: WorkerDispatchMode::Kernel,
        },
        services: vec![expected_dns_service(), expected_ring_service(localhost)],
    };
    assert_eq!(config, expected);
}
