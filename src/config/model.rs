//! The checked configuration: what the rest of l4lb runs on.
//!
//! Every value here has been parsed, defaulted, resolved and validated by
//! `validate.rs`; nothing downstream re-checks it. This file owns only the data
//! types and their small, pure helpers. It does no parsing and no I/O.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;

pub use super::backend_source::{BackendSource, FamilyMismatch, SourceAddress, SourcePort};
pub use super::health_check::*;

/// A whole, valid `lb.toml`.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file this configuration was read from (for messages and reloads).
    pub source: PathBuf,
    /// `[admin]`; `None` when the table is absent (no admin listener).
    pub admin: Option<AdminConfig>,
    pub global: GlobalConfig,
    pub services: Vec<ServiceConfig>,
}

impl Config {
    /// Whether some service listens on `address` over `protocol`.
    pub fn listens_on(&self, protocol: Protocol, address: SocketAddr) -> bool {
        self.services
            .iter()
            .any(|s| s.protocol == protocol && s.listen.contains(&address))
    }
}

/// `[admin]`: the operator HTTP endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct AdminConfig {
    pub listen: SocketAddr,
    /// Bearer token for the runtime API; empty means none.
    pub token: String,
}

/// Where `[global] control_socket` is when not configured.
pub const DEFAULT_CONTROL_SOCKET: &str = "/run/l4lb/control.sock";

/// `[global]`.
#[derive(Debug, Clone, PartialEq)]
pub struct GlobalConfig {
    /// Runtime worker threads; 0 means one per core.
    pub workers: usize,
    /// Process-wide cap on proxied TCP connections; 0 means unlimited.
    pub max_connections: usize,
    /// How long SIGTERM waits for open connections to finish.
    pub shutdown_grace: Duration,
    /// The unix socket a successor asks for this process's sockets on.
    pub control_socket: PathBuf,
    /// On SIGTERM, how long `/ready` and `/healthz` say 503 while the listeners
    /// still accept, before they close (time for routers to withdraw the route).
    pub drain_delay: Duration,
    /// Which worker serves a newly accepted TCP client.
    pub worker_dispatch: WorkerDispatchMode,
}

/// `worker_dispatch`: how accepted TCP clients are spread over the workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerDispatchMode {
    /// To the worker with the fewest sessions (the accepting one unless
    /// another has fewer).
    LeastSessions,
    /// Where the kernel's SO_REUSEPORT hash put it.
    Kernel,
}

impl Default for GlobalConfig {
    fn default() -> Self {
        GlobalConfig {
            workers: 0,
            max_connections: 0,
            shutdown_grace: Duration::from_secs(30),
            control_socket: PathBuf::from(DEFAULT_CONTROL_SOCKET),
            drain_delay: Duration::ZERO,
            worker_dispatch: WorkerDispatchMode::LeastSessions,
        }
    }
}

/// One `[[service]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceConfig {
    /// Unique name, `[A-Za-z0-9_.-]{1,64}`.
    pub name: String,
    pub protocol: Protocol,
    /// Every address to listen on (at least one, each used by one service only).
    pub listen: Vec<SocketAddr>,
    pub strategy: StrategyConfig,
    /// Per service (tcp); 0 means unlimited.
    pub max_connections: usize,
    /// Per client IP (tcp); 0 means unlimited.
    pub max_connections_per_source: usize,
    pub connect_timeout: Duration,
    /// Backends tried for one client before giving up (>= 1).
    pub connect_attempts: u32,
    /// tcp: close both sides after this long with no bytes; udp: forget the flow.
    pub idle_timeout: Duration,
    /// udp: bound of the flow table.
    pub max_flows: usize,
    pub proxy_protocol: ProxyProtocol,
    pub accept_proxy_protocol: bool,
    /// udp: a flow closes after this many client datagrams; 0 = no count.
    pub udp_requests: u64,
    /// udp: a flow closes after this many backend datagrams; 0 = no count.
    pub udp_responses: u64,
    /// Which closed sessions (tcp) or flows (udp) write an access-log line.
    pub access_log: AccessLog,
    pub allow: Vec<IpNet>,
    pub deny: Vec<IpNet>,
    pub on_all_down: OnAllDown,
    pub close_on_down: bool,
    /// Where backend connections come from (`source`, `source_port`, `mark`).
    pub source: BackendSource,
    pub health: Option<HealthConfig>,
    pub outlier: Option<OutlierConfig>,
    /// Every backend of the service: the default route's (`[[service.backend]]`,
    /// `route == 0`) first, then each route's in order. At least one in all.
    pub backends: Vec<BackendConfig>,
    /// tcp: `[[service.route]]`, routed by the TLS ClientHello; empty = none.
    pub routes: Vec<RouteConfig>,
    /// tcp with routes: what a client without SNI (or not speaking TLS) gets.
    pub no_sni: NoSni,
    /// tcp: how long the ClientHello may take to arrive when it is read ahead.
    pub preread_timeout: Duration,
    /// `[[service.discover]]`: backend groups found in DNS at run time.
    pub discover: Vec<DiscoverConfig>,
}

/// The name of the route made of a service's own `[[service.backend]]` list.
pub const DEFAULT_ROUTE: &str = "default";

/// One `[[service.route]]`: the clients whose ClientHello it matches and how
/// its backends (`BackendConfig::route` = its position + 1) are chosen.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteConfig {
    /// Its `route` label: `name`, else its first `sni` entry.
    pub name: String,
    /// At least one.
    pub sni: Vec<SniPattern>,
    /// ALPN protocols, one of which the client must offer; empty = any.
    pub alpn: Vec<String>,
    pub strategy: StrategyConfig,
    /// Clients at once on this route; 0 = unlimited.
    pub max_connections: usize,
    /// Source CIDRs allowed on this route (judged once the SNI is known).
    pub allow: Vec<IpNet>,
    pub deny: Vec<IpNet>,
}

/// A server name a route matches, lower-cased.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SniPattern {
    /// This name exactly.
    Exact(String),
    /// `*.suffix`: one label, any, then `.suffix`.
    Wildcard(String),
}

impl fmt::Display for SniPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SniPattern::Exact(name) => f.write_str(name),
            SniPattern::Wildcard(suffix) => write!(f, "*.{suffix}"),
        }
    }
}

/// `no_sni`: what a client without a server name gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoSni {
    /// The default route (the service's own backends).
    Default,
    /// Closed and counted (`no_sni`).
    Reject,
}

impl ServiceConfig {
    /// Whether each client's ClientHello is read ahead before choosing a backend:
    /// the service has routes, or hashes by server name.
    pub fn prereads_tls(&self) -> bool {
        !self.routes.is_empty()
            || self.strategy.hash_key == HashKey::Sni
            || self
                .routes
                .iter()
                .any(|r| r.strategy.hash_key == HashKey::Sni)
    }

    /// The active check of `backend`: its own (or its route's), else the service's.
    pub fn health_of<'a>(&'a self, backend: &'a BackendConfig) -> Option<&'a HealthConfig> {
        backend.health.as_ref().or(self.health.as_ref())
    }

    /// The name of route `route` (0 = the default route).
    pub fn route_name(&self, route: usize) -> &str {
        match route.checked_sub(1).and_then(|i| self.routes.get(i)) {
            Some(r) => &r.name,
            None => DEFAULT_ROUTE,
        }
    }
}

/// What a discovery group asks DNS for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DiscoverQuery {
    /// A/AAAA records of `name`: every address is a backend on `port`.
    Dns { name: String, port: u16 },
    /// SRV records of `name`: targets and ports, weights and priorities.
    Srv { name: String },
}

/// How often a discovery group asks again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refresh {
    /// When the answer's TTL runs out (at least 1 s, at most `max`).
    Ttl { max: Duration },
    /// At a fixed interval, whatever the TTL.
    Every(Duration),
}

/// One `[[service.discover]]` group.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DiscoverConfig {
    pub query: DiscoverQuery,
    /// Name servers to ask; empty: those of `/etc/resolv.conf`.
    pub resolvers: Vec<SocketAddr>,
    pub refresh: Refresh,
    /// How long one lookup may take before it counts as a resolver error.
    pub timeout: Duration,
    /// Weight of every discovered address (SRV: the default for weight 0).
    pub weight: u32,
    /// At most this many backends from the group.
    pub max_backends: usize,
    /// Consecutive authoritative empty answers (NXDOMAIN, no records) that empty the group.
    pub empty_after: u32,
    /// The group's backends are backups (SRV: on top of priorities).
    pub backup: bool,
    /// A discovered backend's ramp after it comes up (as a backend's `slow_start`).
    pub slow_start: Duration,
}

impl DiscoverConfig {
    /// The name asked for, as written.
    pub fn name(&self) -> &str {
        match &self.query {
            DiscoverQuery::Dns { name, .. } | DiscoverQuery::Srv { name } => name,
        }
    }

    /// `dns` or `srv`.
    pub fn kind(&self) -> &'static str {
        match self.query {
            DiscoverQuery::Dns { .. } => "dns",
            DiscoverQuery::Srv { .. } => "srv",
        }
    }
}

/// How a service picks a backend: the strategy and its parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StrategyConfig {
    pub kind: StrategyKind,
    /// Hashing strategies only (`source_hash`, `consistent_hash`, `maglev`).
    pub hash_key: HashKey,
    /// `consistent_hash`: ring points per unit of weight.
    pub virtual_nodes: u32,
    /// `maglev`: lookup table size, a prime.
    pub table_size: usize,
    /// Hashing strategies only: which frozen client-to-backend mapping to use.
    pub hash_version: HashVersion,
}

impl Default for StrategyConfig {
    fn default() -> Self {
        StrategyConfig {
            kind: StrategyKind::RoundRobin,
            hash_key: HashKey::SourceIp,
            virtual_nodes: 160,
            table_size: 65537,
            hash_version: HashVersion::V1,
        }
    }
}

/// A frozen mapping of the hashing strategies (`hash_version` in `lb.toml`).
///
/// A version's picks never change: `tests/data/hash_vectors.json` records them
/// and a test fails if any moves. A different mapping is a new variant, chosen
/// by setting `hash_version`; the default stays `V1`, so upgrading l4lb never
/// moves a hashed client unless the operator asks for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashVersion {
    V1,
}

impl HashVersion {
    pub const ALL: [HashVersion; 1] = [HashVersion::V1];

    /// The number written in `lb.toml`.
    pub fn number(self) -> u32 {
        match self {
            HashVersion::V1 => 1,
        }
    }

    /// The version `number` names, if this l4lb knows it.
    pub fn from_number(number: i64) -> Option<HashVersion> {
        HashVersion::ALL
            .into_iter()
            .find(|v| i64::from(v.number()) == number)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StrategyKind {
    RoundRobin,
    LeastConnections,
    PowerOfTwo,
    Random,
    LeastResponseTime,
    SourceHash,
    ConsistentHash,
    Maglev,
}

impl StrategyKind {
    /// Every strategy, in the order the documentation lists them.
    pub const ALL: [StrategyKind; 8] = [
        StrategyKind::RoundRobin,
        StrategyKind::LeastConnections,
        StrategyKind::PowerOfTwo,
        StrategyKind::Random,
        StrategyKind::LeastResponseTime,
        StrategyKind::SourceHash,
        StrategyKind::ConsistentHash,
        StrategyKind::Maglev,
    ];

    /// The name used in `lb.toml`.
    pub fn as_str(self) -> &'static str {
        match self {
            StrategyKind::RoundRobin => "round_robin",
            StrategyKind::LeastConnections => "least_connections",
            StrategyKind::PowerOfTwo => "power_of_two",
            StrategyKind::Random => "random",
            StrategyKind::LeastResponseTime => "least_response_time",
            StrategyKind::SourceHash => "source_hash",
            StrategyKind::ConsistentHash => "consistent_hash",
            StrategyKind::Maglev => "maglev",
        }
    }

    /// Looks a strategy up by its `lb.toml` name.
    pub fn from_name(name: &str) -> Option<StrategyKind> {
        StrategyKind::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// Whether the strategy hashes a client key (and so takes `hash_key`).
    pub fn is_hashing(self) -> bool {
        matches!(
            self,
            StrategyKind::SourceHash | StrategyKind::ConsistentHash | StrategyKind::Maglev
        )
    }
}

impl fmt::Display for StrategyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a hashing strategy hashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashKey {
    SourceIp,
    SourceIpPort,
    /// The TLS server name; clients without one hash as `SourceIp`.
    Sni,
}

impl HashKey {
    pub fn as_str(self) -> &'static str {
        match self {
            HashKey::SourceIp => "source_ip",
            HashKey::SourceIpPort => "source_ip_port",
            HashKey::Sni => "sni",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyProtocol {
    Off,
    V1,
    /// udp: on a flow's first datagram only.
    V2,
    /// udp only: on every datagram.
    V2Every,
}

/// `access_log`: which closed sessions and flows are logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessLog {
    /// Every one (the default).
    All,
    /// Only those that ended in an error (a backend error, a send error, a
    /// backend marked down).
    Errors,
    /// None.
    Off,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnAllDown {
    Reject,
    UseAll,
}

/// `[service.health]`: active checks.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthConfig {
    /// What each probe sends and what passes.
    pub check: Check,
    pub interval: Duration,
    pub timeout: Duration,
    pub rise: u32,
    pub fall: u32,
    /// Probe this port instead of the backend's own; `None` means the backend's.
    pub port: Option<u16>,
}

impl HealthConfig {
    pub fn kind(&self) -> HealthKind {
        self.check.kind()
    }
}

/// `[service.outlier]`: passive checks from real traffic.
#[derive(Debug, Clone, PartialEq)]
pub struct OutlierConfig {
    pub consecutive_failures: u32,
    pub ejection_time: Duration,
}

/// One `[[service.backend]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendConfig {
    /// The address exactly as configured (used as its name in metrics and status).
    pub address: String,
    /// What `address` resolved to when the config was loaded.
    pub resolved: SocketAddr,
    /// 1..=1000.
    pub weight: u32,
    /// 0 means unlimited.
    pub max_connections: usize,
    pub backup: bool,
    pub slow_start: Duration,
    /// The service's check with its route's `[service.route.health]` and
    /// `[service.backend.health]` written over it; `None` when neither overrides
    /// anything.
    pub health: Option<HealthConfig>,
    /// The route it belongs to: 0 = the default route, `i + 1` = `routes[i]`.
    pub route: usize,
}

impl ServiceConfig {
    /// One line describing the service, for `l4lb check`, e.g.
    /// `service "pg": tcp 0.0.0.0:6432 -> 3 backends (least_connections)`.
    pub fn summary(&self) -> String {
        let listen: Vec<String> = self.listen.iter().map(SocketAddr::to_string).collect();
        let own = || self.backends.iter().filter(|b| b.route == 0);
        let backups = own().filter(|b| b.backup).count();
        let primaries = own().count() - backups;
        let mut line = format!(
            "service \"{}\": {} {} -> {}",
            self.name,
            self.protocol,
            listen.join(", "),
            count(primaries, "backend")
        );
        if backups > 0 {
            line.push_str(&format!(" + {}", count(backups, "backup")));
        }
        for group in &self.discover {
            line.push_str(&format!(" + {} {}", group.kind(), group.name()));
        }
        line.push_str(&format!(" ({})", self.strategy.kind));
        if !self.routes.is_empty() {
            let routed = self.backends.iter().filter(|b| b.route != 0).count();
            line.push_str(&format!(
                ", {} by TLS server name ({})",
                count(self.routes.len(), "route"),
                count(routed, "backend")
            ));
        }
        if let Some(health) = &self.health {
            let kind = health.kind().as_str();
            let every = humantime::format_duration(health.interval);
            line.push_str(&format!(", health {kind} every {every}"));
        }
        if let Some(outlier) = &self.outlier {
            let ejection = humantime::format_duration(outlier.ejection_time);
            let failures = count(outlier.consecutive_failures as usize, "failure");
            line.push_str(&format!(
                ", outlier ejection after {failures} for {ejection}"
            ));
        }
        if let Some(source) = self.source.describe() {
            line.push_str(&format!(", {source}"));
        }
        line
    }
}

/// "1 backend", "3 backends".
fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}
