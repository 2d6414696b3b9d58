//! What one active check says on the wire, per kind: the checked settings of a
//! `[service.health]` table (or of a backend's override of it).
//!
//! Plain data; reading the keys is `health_keys.rs`, the rules that tie them to
//! a kind and a service are `health_rules.rs`, and the probes are `crate::health`.

use std::ops::RangeInclusive;

/// The protocol a check speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthKind {
    Tcp,
    Udp,
    Postgres,
    Redis,
    Mysql,
    Http,
    Dns,
    Agent,
}

impl HealthKind {
    pub const ALL: &[(&str, HealthKind)] = &[
        ("tcp", HealthKind::Tcp),
        ("udp", HealthKind::Udp),
        ("postgres", HealthKind::Postgres),
        ("redis", HealthKind::Redis),
        ("mysql", HealthKind::Mysql),
        ("http", HealthKind::Http),
        ("dns", HealthKind::Dns),
        ("agent", HealthKind::Agent),
    ];

    pub fn as_str(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, kind)| *kind == self)
            .map_or("tcp", |(name, _)| name)
    }
}

/// One check's exchange, with the settings of its kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    Tcp(TcpCheck),
    Udp(UdpCheck),
    Postgres(PostgresCheck),
    Redis(RedisCheck),
    Mysql,
    Http(HttpCheck),
    Dns(DnsCheck),
    Agent(AgentCheck),
}

impl Check {
    pub fn kind(&self) -> HealthKind {
        match self {
            Check::Tcp(_) => HealthKind::Tcp,
            Check::Udp(_) => HealthKind::Udp,
            Check::Postgres(_) => HealthKind::Postgres,
            Check::Redis(_) => HealthKind::Redis,
            Check::Mysql => HealthKind::Mysql,
            Check::Http(_) => HealthKind::Http,
            Check::Dns(_) => HealthKind::Dns,
            Check::Agent(_) => HealthKind::Agent,
        }
    }
}

/// `kind = "tcp"`: connect; then, if set, send `send` and read a reply that
/// must start with `expect`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TcpCheck {
    pub send: Vec<u8>,
    pub expect: Option<Vec<u8>>,
}

/// `kind = "udp"`: send `send`; a datagram back passes — any, or with `expect`
/// one that starts with it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UdpCheck {
    pub send: Vec<u8>,
    pub expect: Option<Vec<u8>>,
}

/// `kind = "postgres"`: a StartupMessage; with `require_primary`, a login and
/// `SELECT pg_is_in_recovery()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresCheck {
    pub user: String,
    pub database: String,
    pub password: Option<String>,
    pub require_primary: bool,
}

/// `kind = "redis"`: optional `AUTH`, `PING`, and with `require_master`,
/// `INFO replication`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisCheck {
    pub user: Option<String>,
    pub password: Option<String>,
    pub require_master: bool,
}

/// `kind = "http"`: `GET path` with a `Host` header; the status must be in range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpCheck {
    pub path: String,
    /// `None`: the probed address.
    pub host: Option<String>,
    pub status: RangeInclusive<u16>,
}

/// `kind = "dns"`: one query over UDP; the answer must carry the query's ID and
/// an RCODE in `rcodes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsCheck {
    pub name: String,
    pub query_type: u16,
    pub rcodes: Vec<u8>,
}

/// `kind = "agent"`: read one line from `port` on the backend's IP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentCheck {
    pub port: u16,
}

/// DNS RCODE names accepted in `rcodes`, with their numbers.
pub const DNS_RCODES: &[(&str, u8)] = &[
    ("NOERROR", 0),
    ("FORMERR", 1),
    ("SERVFAIL", 2),
    ("NXDOMAIN", 3),
    ("NOTIMP", 4),
    ("REFUSED", 5),
];

/// DNS query types accepted in `query_type`, with their numbers.
pub const DNS_QUERY_TYPES: &[(&str, u16)] = &[
    ("A", 1),
    ("NS", 2),
    ("CNAME", 5),
    ("SOA", 6),
    ("PTR", 12),
    ("MX", 15),
    ("TXT", 16),
    ("AAAA", 28),
    ("SRV", 33),
];
