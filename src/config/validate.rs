//! From the file as written to the checked [`Config`]: each table's defaults
//! and the rules that tie keys together (unique service names and listen
//! addresses, unique backends, udp PROXY versions, health timeouts).
//!
//! Every problem is reported and validation carries on with a stand-in value,
//! so one run finds them all; the returned `Config` is only meaningful when no
//! error was reported. This file does not read TOML (`file.rs`), check single
//! values (`checker.rs`) or judge strategies (`strategy.rs`).

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::address::{Listener, LoopFinder, Resolve, check_conflicts, loop_message};
use super::checker::{Checker, flag, text};
use super::discover;
use super::file::{
    Field, Listen, RawAdmin, RawBackend, RawDiscover, RawDocument, RawGlobal, RawHealth,
    RawOutlier, RawService, Section, ServiceEntry,
};
use super::health_rules;
use super::model::*;
use super::paths;
use super::report::{Report, Span};
use super::routes::{WrittenRoute, check_routes, check_sni_hashing};
use super::source_rules::family_problem;
use super::values::{as_u32, as_usize};

const DEFAULT_ADMIN_LISTEN: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 1), 9100));
const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);
const UDP_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
const SECOND: Duration = Duration::from_secs(1);

const UNLIMITED: RangeInclusive<i64> = 0..=i64::MAX;
const AT_LEAST_ONE: RangeInclusive<i64> = 1..=i64::MAX;
const U32_AT_LEAST_ONE: RangeInclusive<i64> = 1..=u32::MAX as i64;

const PROTOCOLS: &[(&str, Protocol)] = &[("tcp", Protocol::Tcp), ("udp", Protocol::Udp)];
const PROXY_PROTOCOLS: &[(&str, ProxyProtocol)] = &[
    ("off", ProxyProtocol::Off),
    ("v1", ProxyProtocol::V1),
    ("v2", ProxyProtocol::V2),
    ("v2-every", ProxyProtocol::V2Every),
];
const ACCESS_LOGS: &[(&str, AccessLog)] = &[
    ("all", AccessLog::All),
    ("errors", AccessLog::Errors),
    ("off", AccessLog::Off),
];
const NO_SNI: &[(&str, NoSni)] = &[("default", NoSni::Default), ("reject", NoSni::Reject)];
const WORKER_DISPATCH: &[(&str, WorkerDispatchMode)] = &[
    ("least_sessions", WorkerDispatchMode::LeastSessions),
    ("kernel", WorkerDispatchMode::Kernel),
];
const PREREAD_TIMEOUT: Duration = Duration::from_secs(5);
const ON_ALL_DOWN: &[(&str, OnAllDown)] = &[
    ("reject", OnAllDown::Reject),
    ("use_all", OnAllDown::UseAll),
];

/// Validates the whole document, reporting every problem into `report`.
pub fn validate(doc: &RawDocument, source: &Path, resolve: Resolve, report: &mut Report) -> Config {
    let mut v = Validation {
        report,
        resolve,
        listeners: Vec::new(),
    };
    let admin = doc.admin.as_ref().map(|s| v.admin(s));
    let global = doc.global.as_ref().map(|s| v.global(s));
    let names = v.service_names(&doc.services);
    let mut services: Vec<ServiceConfig> = doc
        .services
        .iter()
        .zip(names)
        .map(|(entry, name)| v.service(entry, name))
        .collect();
    if doc.services.is_empty() && !doc.service_written {
        v.report
            .error(None, "", "no services: add at least one [[service]] table");
    }
    check_conflicts(&v.listeners, v.report);
    // Backends last: every listen address is known, so loops back into l4lb show.
    let listeners = std::mem::take(&mut v.listeners);
    let loops = LoopFinder::new(&listeners);
    for (service, entry) in services.iter_mut().zip(&doc.services) {
        service.backends = v.backends(entry, service, &loops);
    }
    Config {
        source: source.to_path_buf(),
        admin,
        global: global.unwrap_or_default(),
        services,
    }
}

/// State shared by the whole validation.
struct Validation<'r, 'a> {
    report: &'r mut Report<'a>,
    resolve: Resolve,
    /// Every listen address seen so far, to find collisions at the end.
    listeners: Vec<Listener>,
}

impl<'a> Validation<'_, 'a> {
    fn checker<'s>(&'s mut self, path: &'s str) -> Checker<'s, 'a> {
        Checker::new(self.report, self.resolve, path)
    }

    fn admin(&mut self, section: &Section<RawAdmin>) -> AdminConfig {
        let raw = &section.value;
        let mut c = self.checker(&section.path);
        let listen = match &raw.listen {
            Some(text) => c.address(&c.key("listen"), text).map(|a| (a, text.span())),
            None => Some((DEFAULT_ADMIN_LISTEN, section.span.clone())),
        };
        let token = text(&raw.token, "");
        if let Some((addr, span)) = &listen {
            self.listeners.push(Listener {
                protocol: Protocol::Tcp,
                addr: *addr,
                span: span.clone(),
                path: section.key_path("listen"),
            });
        }
        AdminConfig {
            listen: listen.map_or(DEFAULT_ADMIN_LISTEN, |(a, _)| a),
            token,
        }
    }

    fn global(&mut self, section: &Section<RawGlobal>) -> GlobalConfig {
        let raw = &section.value;
        let defaults = GlobalConfig::default();
        let mut c = self.checker(&section.path);
        GlobalConfig {
            workers: as_usize(c.int("workers", &raw.workers, 0..=1024, 0)),
            max_connections: as_usize(c.int("max_connections", &raw.max_connections, UNLIMITED, 0)),
            shutdown_grace: c
                .duration(
                    "shutdown_grace",
                    &raw.shutdown_grace,
                    defaults.shutdown_grace,
                    true,
                )
                .unwrap_or(defaults.shutdown_grace),
            control_socket: control_socket(&mut c, &raw.control_socket)
                .unwrap_or(defaults.control_socket),
            drain_delay: c
                .duration("drain_delay", &raw.drain_delay, defaults.drain_delay, true)
                .unwrap_or(defaults.drain_delay),
            worker_dispatch: c
                .choice(
                    "worker_dispatch",
                    &raw.worker_dispatch,
                    WORKER_DISPATCH,
                    defaults.worker_dispatch,
                )
                .unwrap_or(defaults.worker_dispatch),
        }
    }

    /// Each service's name (empty when missing or invalid), reporting
    /// missing, malformed and repeated names.
    fn service_names(&mut self, services: &[ServiceEntry]) -> Vec<String> {
        let mut first_seen: HashMap<&str, Span> = HashMap::new();
        let mut names = Vec::new();
        for entry in services {
            let section = &entry.fields;
            let mut c = self.checker(&section.path);
            let Some(name) = c.required(section, "name", &section.value.name, "\"pg\"") else {
                names.push(String::new());
                continue;
            };
            let (text, span) = (name.get_ref().as_str(), name.span());
            let key = section.key_path("name");
            if !paths::is_valid_service_name(text) {
                let message = format!(
                    "invalid service name \"{text}\": expected 1 to {} characters \
                     from A-Z, a-z, 0-9, '_', '.' and '-'",
                    paths::MAX_SERVICE_NAME_LEN
                );
                c.report.at(&span, &key, message);
            } else if let Some(first) = first_seen.get(text) {
                let place = c.report.describe(first);
                let message =
                    format!("duplicate service name \"{text}\", first defined at {place}");
                c.report.at(&span, &key, message);
            } else {
                first_seen.insert(text, span);
            }
            names.push(text.to_string());
        }
        names
    }

    fn service(&mut self, entry: &ServiceEntry, name: String) -> ServiceConfig {
        let section = &entry.fields;
        let raw = &section.value;
        let mut c = self.checker(&section.path);
        let protocol = c
            .choice("protocol", &raw.protocol, PROTOCOLS, Protocol::Tcp)
            .unwrap_or(Protocol::Tcp);
        let listeners = c.listen(section, protocol);
        let strategy = c.strategy(&raw.into(), entry.backends.len());
        let idle_default = match protocol {
            Protocol::Tcp => TCP_IDLE_TIMEOUT,
            Protocol::Udp => UDP_IDLE_TIMEOUT,
        };
        let mut service = ServiceConfig {
            name,
            protocol,
            listen: listeners.iter().map(|l| l.addr).collect(),
            strategy,
            max_connections: as_usize(c.int("max_connections", &raw.max_connections, UNLIMITED, 0)),
            max_connections_per_source: as_usize(c.int(
                "max_connections_per_source",
                &raw.max_connections_per_source,
                UNLIMITED,
                0,
            )),
            connect_timeout: c.positive_duration(
                "connect_timeout",
                &raw.connect_timeout,
                3 * SECOND,
            ),
            connect_attempts: as_u32(c.int("connect_attempts", &raw.connect_attempts, 1..=100, 3)),
            idle_timeout: c.positive_duration("idle_timeout", &raw.idle_timeout, idle_default),
            max_flows: as_usize(c.int("max_flows", &raw.max_flows, AT_LEAST_ONE, 10_000)),
            proxy_protocol: c.proxy_protocol(raw, protocol),
            accept_proxy_protocol: flag(&raw.accept_proxy_protocol),
            udp_requests: c.int("udp_requests", &raw.udp_requests, UNLIMITED, 0) as u64,
            udp_responses: c.int("udp_responses", &raw.udp_responses, UNLIMITED, 0) as u64,
            access_log: c
                .choice("access_log", &raw.access_log, ACCESS_LOGS, AccessLog::All)
                .unwrap_or(AccessLog::All),
            allow: c.cidrs("allow", &raw.allow),
            deny: c.cidrs("deny", &raw.deny),
            on_all_down: c
                .choice(
                    "on_all_down",
                    &raw.on_all_down,
                    ON_ALL_DOWN,
                    OnAllDown::Reject,
                )
                .unwrap_or(OnAllDown::Reject),
            close_on_down: flag(&raw.close_on_down),
            source: c.backend_source(raw),
            health: None,
            outlier: None,
            backends: Vec::new(),
            routes: Vec::new(),
            no_sni: c
                .choice("no_sni", &raw.no_sni, NO_SNI, NoSni::Default)
                .unwrap_or(NoSni::Default),
            preread_timeout: c.positive_duration(
                "preread_timeout",
                &raw.preread_timeout,
                PREREAD_TIMEOUT,
            ),
            discover: Vec::new(),
        };
        self.listeners.extend(listeners);
        service.routes = self.routes(entry, &service);
        service.health = entry.health.as_ref().map(|s| self.health(s, protocol));
        service.outlier = entry.outlier.as_ref().map(|s| self.outlier(s));
        service.discover = entry
            .discover
            .iter()
            .filter_map(|s| discover::discover_group(&mut self.checker(&s.path), s))
            .collect();
        self.keys_of_the_other_protocol(section, protocol);
        if service.strategy.kind.is_hashing() {
            self.no_slow_start_with_hashing(
                &entry.backends,
                &entry.discover,
                service.strategy.kind,
            );
        }
        for (route, config) in entry.routes.iter().zip(&service.routes) {
            if config.strategy.kind.is_hashing() {
                self.no_slow_start_with_hashing(&route.backends, &[], config.strategy.kind);
            }
        }
        service
    }

    /// The service's routes (their backends come with the service's), reporting
    /// every problem with them.
    fn routes(&mut self, entry: &ServiceEntry, service: &ServiceConfig) -> Vec<RouteConfig> {
        let mut routes = Vec::new();
        let mut written: Vec<WrittenRoute> = Vec::new();
        for route in &entry.routes {
            let mut c = self.checker(&route.fields.path);
            let (config, names) = c.route(&route.fields, service.strategy, route.backends.len());
            if let Some(written) = &route.fields.value.hash_key {
                let path = route.fields.key_path("hash_key");
                let (kind, span) = (config.strategy.hash_key, Some(written.span()));
                check_sni_hashing(self.report, service.protocol, kind, span, &path);
            }
            routes.push(config);
            written.push(names);
        }
        check_routes(self.report, service.protocol, &entry.routes, &written);
        let raw = &entry.fields.value;
        let span = raw.hash_key.as_ref().map(|h| h.span());
        let path = entry.fields.key_path("hash_key");
        check_sni_hashing(
            self.report,
            service.protocol,
            service.strategy.hash_key,
            span,
            &path,
        );
        let mut probe = service.clone();
        probe.routes.clone_from(&routes);
        if service.protocol == Protocol::Tcp && !probe.prereads_tls() {
            self.preread_keys_unused(&entry.fields);
        }
        routes
    }

    /// `no_sni` and `preread_timeout` without a ClientHello to read.
    fn preread_keys_unused(&mut self, section: &Section<RawService>) {
        let raw = &section.value;
        let written = [
            ("no_sni", raw.no_sni.as_ref().map(|f| f.span())),
            (
                "preread_timeout",
                raw.preread_timeout.as_ref().map(|f| f.span()),
            ),
        ];
        for (key, span) in written {
            if let Some(span) = span {
                let message = "only applies to a service that reads the TLS ClientHello: \
                               add [[service.route]] tables (or hash_key = \"sni\"), or remove it";
                self.report.at(&span, &section.key_path(key), message);
            }
        }
    }

    /// A key that only means something for the other protocol is an error, never
    /// silently ignored.
    fn keys_of_the_other_protocol(&mut self, section: &Section<RawService>, protocol: Protocol) {
        let raw = &section.value;
        let misplaced: Vec<(&str, Option<Span>)> = match protocol {
            Protocol::Tcp => vec![
                ("max_flows", raw.max_flows.as_ref().map(|f| f.span())),
                ("udp_requests", raw.udp_requests.as_ref().map(|f| f.span())),
                (
                    "udp_responses",
                    raw.udp_responses.as_ref().map(|f| f.span()),
                ),
            ],
            Protocol::Udp => vec![
                (
                    "max_connections",
                    raw.max_connections.as_ref().map(|f| f.span()),
                ),
                (
                    "max_connections_per_source",
                    raw.max_connections_per_source.as_ref().map(|f| f.span()),
                ),
                (
                    "connect_timeout",
                    raw.connect_timeout.as_ref().map(|f| f.span()),
                ),
                (
                    "connect_attempts",
                    raw.connect_attempts.as_ref().map(|f| f.span()),
                ),
                (
                    "close_on_down",
                    raw.close_on_down.as_ref().map(|f| f.span()),
                ),
                (
                    "accept_proxy_protocol",
                    raw.accept_proxy_protocol.as_ref().map(|f| f.span()),
                ),
                ("no_sni", raw.no_sni.as_ref().map(|f| f.span())),
                (
                    "preread_timeout",
                    raw.preread_timeout.as_ref().map(|f| f.span()),
                ),
            ],
        };
        let other = match protocol {
            Protocol::Tcp => "udp",
            Protocol::Udp => "tcp",
        };
        for (key, span) in misplaced {
            if let Some(span) = span {
                let message = format!(
                    "applies to {other} services only, and this service is {protocol}; remove it"
                );
                self.report
                    .at(&span, &paths::join(&section.path, key), message);
            }
        }
    }

    /// Slow start admits a ramping backend for only part of the picks, which would
    /// bounce hashed clients between backends: refuse the combination.
    fn no_slow_start_with_hashing(
        &mut self,
        backends: &[Section<RawBackend>],
        groups: &[Section<RawDiscover>],
        kind: StrategyKind,
    ) {
        let backends = backends
            .iter()
            .map(|s| (&s.value.slow_start, s.key_path("slow_start")));
        let groups = groups
            .iter()
            .map(|s| (&s.value.slow_start, s.key_path("slow_start")));
        for (field, key_path) in backends.chain(groups) {
            let Some(text) = field else {
                continue;
            };
            let is_set = humantime::parse_duration(&text.get_ref().0).is_ok_and(|d| !d.is_zero());
            if is_set {
                let message = format!(
                    "slow_start cannot be used with strategy \"{kind}\", which must keep each \
                     client on its backend; use a non-hashing strategy or remove slow_start"
                );
                self.report.at(&text.span(), &key_path, message);
            }
        }
    }

    fn health(&mut self, section: &Section<RawHealth>, protocol: Protocol) -> HealthConfig {
        let raw = &section.value;
        let mut c = self.checker(&section.path);
        let default_kind = health_rules::default_kind(protocol);
        let kind = c.choice("kind", &raw.kind, HealthKind::ALL, default_kind);
        let fits = kind.is_some_and(|kind| c.health_fits(section, kind, protocol));
        let kind = kind.filter(|_| fits).unwrap_or(default_kind);
        let check = c.check_settings(section, kind);
        let interval = c.duration("interval", &raw.interval, 2 * SECOND, false);
        let timeout = c.duration("timeout", &raw.timeout, SECOND, false);
        if let (Some(interval), Some(timeout)) = (interval, timeout) {
            c.timeout_within_interval(section, interval, timeout);
        }
        let port = c.int("port", &raw.port, 0..=65535, 0);
        HealthConfig {
            check,
            interval: interval.unwrap_or(2 * SECOND),
            timeout: timeout.unwrap_or(SECOND),
            rise: as_u32(c.int("rise", &raw.rise, 1..=100, 2)),
            fall: as_u32(c.int("fall", &raw.fall, 1..=100, 3)),
            port: u16::try_from(port).ok().filter(|&p| p != 0),
        }
    }

    /// A backend's `[service.backend.health]` written over `base` (its route's
    /// or its service's check): the whole check validated again at the
    /// backend's table. `None` without overrides.
    fn backend_health(
        &mut self,
        base: Option<&Section<RawHealth>>,
        section: &Section<RawBackend>,
        protocol: Protocol,
    ) -> Option<HealthConfig> {
        let over = section.value.health.as_ref()?;
        let Some(base) = base else {
            let message = "overrides the service's [service.health], which this service does \
                           not have: add [service.health] (the backend's table only changes \
                           its keys)";
            self.report.at(&over.span, &over.path, message);
            return None;
        };
        let merged = overlaid(Some(base), over);
        Some(self.health(&merged, protocol))
    }

    fn outlier(&mut self, section: &Section<RawOutlier>) -> OutlierConfig {
        let raw = &section.value;
        let mut c = self.checker(&section.path);
        let failures = c.int(
            "consecutive_failures",
            &raw.consecutive_failures,
            U32_AT_LEAST_ONE,
            5,
        );
        OutlierConfig {
            consecutive_failures: as_u32(failures),
            ejection_time: c.positive_duration("ejection_time", &raw.ejection_time, 30 * SECOND),
        }
    }

    /// Every backend that has a usable address, the default route's then each
    /// route's, reporting a service or route with none, addresses used twice
    /// (in the whole service) and addresses that lead back into l4lb.
    fn backends(
        &mut self,
        entry: &ServiceEntry,
        service: &ServiceConfig,
        loops: &LoopFinder,
    ) -> Vec<BackendConfig> {
        let protocol = service.protocol;
        let no_discovery = entry.discover.is_empty() && !entry.discover_written;
        if entry.backends.is_empty()
            && !entry.backend_written
            && entry.routes.is_empty()
            && no_discovery
        {
            let fields = &entry.fields;
            let message = "no backends: add at least one [[service.backend]] table with an \
                           address, or a [[service.discover]] group";
            self.report.at(&fields.span, &fields.path, message);
        }
        let mut list = BackendList {
            protocol,
            service,
            loops,
            first_seen: HashMap::new(),
            backends: Vec::new(),
        };
        for section in &entry.backends {
            let health = self.backend_health(entry.health.as_ref(), section, protocol);
            self.add_backend(&mut list, section, health, 0);
        }
        for (i, route) in entry.routes.iter().enumerate() {
            if route.backends.is_empty() && !route.backend_written {
                let fields = &route.fields;
                let message =
                    "no backends: add at least one [[service.route.backend]] table with an address";
                self.report.at(&fields.span, &fields.path, message);
            }
            let merged = route
                .health
                .as_ref()
                .map(|over| overlaid(entry.health.as_ref(), over));
            let route_health = merged.as_ref().map(|s| self.health(s, protocol));
            let base = merged.as_ref().or(entry.health.as_ref());
            for section in &route.backends {
                let health = self
                    .backend_health(base, section, protocol)
                    .or_else(|| route_health.clone());
                self.add_backend(&mut list, section, health, i + 1);
            }
        }
        list.backends
    }

    fn add_backend(
        &mut self,
        list: &mut BackendList<'_, '_>,
        section: &Section<RawBackend>,
        health: Option<HealthConfig>,
        route: usize,
    ) {
        let Some((mut backend, span)) = self.backend(section) else {
            return;
        };
        backend.health = health;
        backend.route = route;
        if let Some((first_path, first_span)) = list.first_seen.get(&backend.resolved) {
            let place = format!("{first_path} at {}", self.report.describe(first_span));
            let message = format!(
                "duplicate backend address {}, already used by {place}",
                describe_backend(&backend)
            );
            self.report.at(&span, &section.key_path("address"), message);
        } else if let Some(listener) = list.loops.find(list.protocol, backend.resolved) {
            let message = loop_message(backend.resolved, listener, self.report);
            self.report.at(&span, &section.key_path("address"), message);
        } else if let Some(message) = family_problem(
            &list.service.source,
            &list.service.listen,
            list.service.accept_proxy_protocol,
            backend.resolved,
        ) {
            self.report.at(&span, &section.key_path("address"), message);
        } else {
            list.first_seen
                .insert(backend.resolved, (section.path.clone(), span));
        }
        list.backends.push(backend);
    }

    /// One backend and where its address is; `None` without a usable address.
    fn backend(&mut self, section: &Section<RawBackend>) -> Option<(BackendConfig, Span)> {
        let raw = &section.value;
        let mut c = self.checker(&section.path);
        let weight = c.int("weight", &raw.weight, 1..=1000, 1);
        let max_connections = c.int("max_connections", &raw.max_connections, UNLIMITED, 0);
        let slow_start = c.duration("slow_start", &raw.slow_start, Duration::ZERO, true);
        let address = c.required(section, "address", &raw.address, "\"10.0.0.11:5432\"")?;
        let resolved = c.address(&c.key("address"), address)?;
        let backend = BackendConfig {
            address: address.get_ref().clone(),
            resolved,
            weight: as_u32(weight),
            max_connections: as_usize(max_connections),
            backup: flag(&raw.backup),
            slow_start: slow_start.unwrap_or(Duration::ZERO),
            health: None,
            route: 0,
        };
        Some((backend, address.span()))
    }
}

/// The backends of one service being collected.
struct BackendList<'l, 'f> {
    protocol: Protocol,
    /// The service being checked (its source decides which families fit).
    service: &'l ServiceConfig,
    loops: &'l LoopFinder<'f>,
    /// Where each address was first used, in the whole service.
    first_seen: HashMap<SocketAddr, (String, Span)>,
    backends: Vec<BackendConfig>,
}

/// `over`'s keys written on top of `base`'s (or alone), at `over`'s place.
fn overlaid(base: Option<&Section<RawHealth>>, over: &Section<RawHealth>) -> Section<RawHealth> {
    let (value, broken) = match base {
        Some(base) => (
            base.value.overlaid(&over.value),
            base.broken.union(&over.broken).cloned().collect(),
        ),
        None => (over.value.clone(), over.broken.clone()),
    };
    Section {
        path: over.path.clone(),
        span: over.span.clone(),
        value,
        broken,
    }
}

/// `"localhost:5432" (127.0.0.1:5432)`, or just `"127.0.0.1:5432"`.
fn describe_backend(backend: &BackendConfig) -> String {
    if backend.address == backend.resolved.to_string() {
        format!("\"{}\"", backend.address)
    } else {
        format!("\"{}\" ({})", backend.address, backend.resolved)
    }
}

/// Rules for a service's own keys.
impl Checker<'_, '_> {
    /// The service's listen addresses that resolved.
    fn listen(&mut self, section: &Section<RawService>, protocol: Protocol) -> Vec<Listener> {
        let Some(listen) =
            self.required(section, "listen", &section.value.listen, "\"0.0.0.0:6432\"")
        else {
            return Vec::new();
        };
        let items: Vec<(String, &Spanned<String>)> = match listen.get_ref() {
            Listen::One(text) => {
                let spanned = Spanned::new(listen.span(), text.clone());
                return self
                    .listener(self.key("listen"), &spanned, protocol)
                    .into_iter()
                    .collect();
            }
            Listen::Many(items) if items.is_empty() => {
                let message = "must list at least one address, e.g. [\"0.0.0.0:6432\"]".to_string();
                self.fail(&listen.span(), "listen", message);
                Vec::new()
            }
            Listen::Many(items) => items
                .iter()
                .enumerate()
                .map(|(i, item)| (paths::indexed(self.path, "listen", i), item))
                .collect(),
        };
        items
            .into_iter()
            .filter_map(|(path, item)| self.listener(path, item, protocol))
            .collect()
    }

    fn listener(
        &mut self,
        path: String,
        text: &Spanned<String>,
        protocol: Protocol,
    ) -> Option<Listener> {
        let addr = self.address(&path, text)?;
        Some(Listener {
            protocol,
            addr,
            span: text.span(),
            path,
        })
    }

    fn proxy_protocol(&mut self, raw: &RawService, protocol: Protocol) -> ProxyProtocol {
        let chosen = self.choice(
            "proxy_protocol",
            &raw.proxy_protocol,
            PROXY_PROTOCOLS,
            ProxyProtocol::Off,
        );
        let misfit = match (chosen, protocol) {
            (Some(ProxyProtocol::V1), Protocol::Udp) => {
                Some("udp services support only \"off\", \"v2\" or \"v2-every\"; got \"v1\"")
            }
            (Some(ProxyProtocol::V2Every), Protocol::Tcp) => Some(
                "\"v2-every\" (a header on every datagram) applies to udp services only; \
                 tcp sends one header per connection: use \"v1\" or \"v2\"",
            ),
            _ => None,
        };
        if let (Some(message), Some(value)) = (misfit, &raw.proxy_protocol) {
            self.fail(&value.span(), "proxy_protocol", message.to_string());
        }
        chosen.unwrap_or(ProxyProtocol::Off)
    }

    /// Reports a health timeout longer than the interval between checks.
    fn timeout_within_interval(
        &mut self,
        section: &Section<RawHealth>,
        interval: Duration,
        timeout: Duration,
    ) {
        if timeout <= interval {
            return;
        }
        let raw = &section.value;
        let (span, which) = match (&raw.timeout, &raw.interval) {
            (Some(t), _) => (t.span(), ""),
            (None, Some(i)) => (i.span(), " (the default)"),
            (None, None) => (section.span.clone(), " (the default)"),
        };
        let message = format!(
            "must not be longer than interval ({}), got {}{which}",
            humantime::format_duration(interval),
            humantime::format_duration(timeout),
        );
        self.fail(&span, "timeout", message);
    }
}

/// The most bytes a unix socket path may have (`sun_path`, with its NUL).
const UNIX_PATH_MAX: usize = 107;

/// `[global] control_socket`: an absolute path short enough for a unix socket.
fn control_socket(c: &mut Checker<'_, '_>, field: &Field<String>) -> Option<PathBuf> {
    let text = field.as_ref()?;
    let path = text.get_ref();
    let problem = if !path.starts_with('/') {
        Some(format!("must be an absolute path, got \"{path}\""))
    } else if path.ends_with('/') {
        Some(format!(
            "must name a socket file, not a directory, got \"{path}\""
        ))
    } else if path.len() > UNIX_PATH_MAX {
        Some(format!(
            "a unix socket path has at most {UNIX_PATH_MAX} bytes, got {}",
            path.len()
        ))
    } else {
        None
    };
    if let Some(message) = problem {
        c.fail(&text.span(), "control_socket", message);
        return None;
    }
    Some(PathBuf::from(path))
}
