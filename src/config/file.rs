//! The file as written: TOML syntax, the shape of `lb.toml`, unknown keys and
//! value types.
//!
//! This file owns the raw serde structs (every field optional and spanned, so
//! the validator knows whether a key was set and where) and the reading of the
//! document section by section, so that one bad key does not hide the errors
//! elsewhere. It does not check values, apply defaults or resolve addresses:
//! that is `validate.rs`.

use std::collections::BTreeSet;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeOwned, IgnoredAny};
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use super::paths;
use super::report::{Report, Span};
use super::suggest::unknown_key_message;

/// A key that may be absent, with where its value is when present.
pub type Field<T> = Option<Spanned<T>>;

/// A TOML integer, kept wide so that negative and huge values get our own
/// range messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Int(pub i64);

/// A duration as written, e.g. `"1m30s"`; parsed by the validator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurationText(pub String);

/// `listen`: one address or a list of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    One(String),
    Many(Vec<Spanned<String>>),
}

/// An array of strings, each with where it is.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StringList(pub Vec<Spanned<String>>);

/// The top level; the sections themselves are read one by one.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoot {
    #[serde(rename = "admin")]
    _admin: Option<IgnoredAny>,
    #[serde(rename = "global")]
    _global: Option<IgnoredAny>,
    #[serde(rename = "service")]
    _service: Option<IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    pub listen: Field<String>,
    pub token: Field<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGlobal {
    pub workers: Field<Int>,
    pub max_connections: Field<Int>,
    pub shutdown_grace: Field<DurationText>,
    pub control_socket: Field<String>,
    pub drain_delay: Field<DurationText>,
    pub worker_dispatch: Field<String>,
}

/// A `[[service]]`'s own keys; its nested tables are read separately.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawService {
    pub name: Field<String>,
    pub protocol: Field<String>,
    pub listen: Field<Listen>,
    pub strategy: Field<String>,
    pub hash_key: Field<String>,
    pub virtual_nodes: Field<Int>,
    pub table_size: Field<Int>,
    pub hash_version: Field<Int>,
    pub max_connections: Field<Int>,
    pub max_connections_per_source: Field<Int>,
    pub connect_timeout: Field<DurationText>,
    pub connect_attempts: Field<Int>,
    pub idle_timeout: Field<DurationText>,
    pub max_flows: Field<Int>,
    pub proxy_protocol: Field<String>,
    pub accept_proxy_protocol: Field<bool>,
    pub udp_requests: Field<Int>,
    pub udp_responses: Field<Int>,
    pub access_log: Field<String>,
    pub allow: Field<StringList>,
    pub deny: Field<StringList>,
    pub on_all_down: Field<String>,
    pub close_on_down: Field<bool>,
    pub source: Field<String>,
    pub source_port: Field<String>,
    pub mark: Field<Int>,
    pub no_sni: Field<String>,
    pub preread_timeout: Field<DurationText>,
    #[serde(rename = "health")]
    _health: Option<IgnoredAny>,
    #[serde(rename = "outlier")]
    _outlier: Option<IgnoredAny>,
    #[serde(rename = "backend")]
    _backend: Option<IgnoredAny>,
    #[serde(rename = "route")]
    _route: Option<IgnoredAny>,
    #[serde(rename = "discover")]
    _discover: Option<IgnoredAny>,
}

/// A `[[service.route]]`'s own keys; its health and backends are read separately.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub name: Field<String>,
    pub sni: Field<StringList>,
    pub alpn: Field<StringList>,
    pub strategy: Field<String>,
    pub hash_key: Field<String>,
    pub virtual_nodes: Field<Int>,
    pub table_size: Field<Int>,
    pub hash_version: Field<Int>,
    pub max_connections: Field<Int>,
    pub allow: Field<StringList>,
    pub deny: Field<StringList>,
    #[serde(rename = "health")]
    _health: Option<IgnoredAny>,
    #[serde(rename = "backend")]
    _backend: Option<IgnoredAny>,
}

/// One `[[service.route]]` and its nested tables.
pub struct RouteEntry {
    pub fields: Section<RawRoute>,
    pub health: Option<Section<RawHealth>>,
    pub backends: Vec<Section<RawBackend>>,
    /// Whether a non-empty `backend` value was written (even if unreadable).
    pub backend_written: bool,
}

/// `[service.health]`, and a backend's `[service.backend.health]` overrides.
#[derive(Deserialize, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct RawHealth {
    pub kind: Field<String>,
    pub interval: Field<DurationText>,
    pub timeout: Field<DurationText>,
    pub rise: Field<Int>,
    pub fall: Field<Int>,
    pub port: Field<Int>,
    pub send: Field<String>,
    pub send_hex: Field<String>,
    pub expect: Field<String>,
    pub expect_hex: Field<String>,
    pub role: Field<String>,
    pub user: Field<String>,
    pub database: Field<String>,
    pub password: Field<String>,
    pub path: Field<String>,
    pub host: Field<String>,
    pub status: Field<String>,
    pub query: Field<String>,
    pub query_type: Field<String>,
    pub rcodes: Field<StringList>,
    pub agent_port: Field<Int>,
}

/// `over`'s keys where written, else `base`'s: a backend's overrides on top of
/// its service's check.
macro_rules! overlay {
    ($base:expr, $over:expr, $($key:ident),* $(,)?) => {
        RawHealth { $($key: $over.$key.clone().or_else(|| $base.$key.clone())),* }
    };
}

impl RawHealth {
    /// This table with `over`'s keys written on top.
    pub fn overlaid(&self, over: &RawHealth) -> RawHealth {
        overlay!(
            self, over, kind, interval, timeout, rise, fall, port, send, send_hex, expect,
            expect_hex, role, user, database, password, path, host, status, query, query_type,
            rcodes, agent_port,
        )
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOutlier {
    pub consecutive_failures: Field<Int>,
    pub ejection_time: Field<DurationText>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBackend {
    pub address: Field<String>,
    pub weight: Field<Int>,
    pub max_connections: Field<Int>,
    pub backup: Field<bool>,
    pub slow_start: Field<DurationText>,
    #[serde(rename = "health")]
    _health: Option<IgnoredAny>,
    /// `[service.backend.health]`: this backend's check overrides, read on its own.
    #[serde(skip)]
    pub health: Option<Section<RawHealth>>,
}

/// A `[[service.discover]]`: backends found in DNS.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDiscover {
    pub dns: Field<String>,
    pub srv: Field<String>,
    pub port: Field<Int>,
    pub resolvers: Field<StringList>,
    pub refresh: Field<DurationText>,
    pub max_ttl: Field<DurationText>,
    pub timeout: Field<DurationText>,
    pub weight: Field<Int>,
    pub max_backends: Field<Int>,
    pub empty_after: Field<Int>,
    pub backup: Field<bool>,
    pub slow_start: Field<DurationText>,
}

/// One table of the file, read into `T`.
pub struct Section<T> {
    /// Key path of the table, e.g. `service "pg".health`.
    pub path: String,
    /// Where the table starts (its header, or its inline `{`).
    pub span: Span,
    pub value: T,
    /// Keys whose value was rejected while reading (already reported).
    pub broken: BTreeSet<String>,
}

impl<T> Section<T> {
    /// Key path of one of this table's keys.
    pub fn key_path(&self, key: &str) -> String {
        paths::join(&self.path, key)
    }
}

/// One `[[service]]` and its nested tables.
pub struct ServiceEntry {
    pub fields: Section<RawService>,
    pub health: Option<Section<RawHealth>>,
    pub outlier: Option<Section<RawOutlier>>,
    pub backends: Vec<Section<RawBackend>>,
    /// Whether a non-empty `backend` value was written (even if unreadable).
    pub backend_written: bool,
    pub routes: Vec<RouteEntry>,
    /// `[[service.discover]]` groups.
    pub discover: Vec<Section<RawDiscover>>,
    /// Whether a non-empty `discover` value was written (even if unreadable).
    pub discover_written: bool,
}

/// The whole file, read but not yet validated.
pub struct RawDocument {
    pub admin: Option<Section<RawAdmin>>,
    pub global: Option<Section<RawGlobal>>,
    pub services: Vec<ServiceEntry>,
    /// Whether a non-empty `service` value was written (even if unreadable).
    pub service_written: bool,
}

/// Reads `text`, reporting syntax errors, unknown keys and wrong value types.
/// `None` when the text is not valid TOML (nothing further can be trusted).
pub fn read(text: &str, report: &mut Report) -> Option<RawDocument> {
    let (root, syntax_errors) = DeTable::parse_recoverable(text);
    if !syntax_errors.is_empty() {
        for error in syntax_errors {
            let message = format!("TOML syntax error: {}", error.message());
            report.error(error.span(), "", message);
        }
        report.sort_from(0);
        return None;
    }
    let root_span = root.span();
    let root = root.into_inner();
    read_section::<RawRoot>(&root, &root_span, "", ROOT_TABLES, report);
    Some(RawDocument {
        admin: root
            .get("admin")
            .and_then(|v| read_table(v, "admin", "[admin]", report)),
        global: root
            .get("global")
            .and_then(|v| read_table(v, "global", "[global]", report)),
        services: root
            .get("service")
            .map(|v| read_services(v, report))
            .unwrap_or_default(),
        service_written: is_written(root.get("service")),
    })
}

/// Every `[[service]]` entry that could be read.
fn read_services(value: &Spanned<DeValue>, report: &mut Report) -> Vec<ServiceEntry> {
    let Some(items) = array_of_tables(value, "service", "[[service]]", report) else {
        return Vec::new();
    };
    let names: Vec<Option<&str>> = items
        .iter()
        .map(|item| {
            let (_, table) = item.as_ref()?;
            table.get("name")?.get_ref().as_str()
        })
        .collect();
    let labels = paths::service_labels(&names);
    items
        .iter()
        .zip(labels)
        .filter_map(|(item, path)| {
            let (span, table) = item.as_ref()?;
            read_service(table, span, &path, report)
        })
        .collect()
}

fn read_service(
    table: &DeTable,
    span: &Span,
    path: &str,
    report: &mut Report,
) -> Option<ServiceEntry> {
    let fields = read_section::<RawService>(table, span, path, SERVICE_TABLES, report);
    let health = table
        .get("health")
        .and_then(|v| read_table(v, &paths::join(path, "health"), "[service.health]", report));
    let outlier = table.get("outlier").and_then(|v| {
        read_table(
            v,
            &paths::join(path, "outlier"),
            "[service.outlier]",
            report,
        )
    });
    let backends = table
        .get("backend")
        .map(|v| read_backends(v, path, report))
        .unwrap_or_default();
    let routes = table
        .get("route")
        .map(|v| read_routes(v, path, report))
        .unwrap_or_default();
    let discover = table
        .get("discover")
        .map(|v| read_discover(v, path, report))
        .unwrap_or_default();
    Some(ServiceEntry {
        fields: fields?,
        health,
        outlier,
        backends,
        backend_written: is_written(table.get("backend")),
        routes,
        discover,
        discover_written: is_written(table.get("discover")),
    })
}

/// Each table of the array `key` under a service (or route) at
/// `service_path`, read by `read_one` with its table, span and path; items that
/// are not tables, or that `read_one` rejects, are reported and skipped.
fn read_each<T>(
    value: &Spanned<DeValue>,
    service_path: &str,
    (key, header): (&str, &str),
    report: &mut Report,
    mut read_one: impl FnMut(&DeTable<'_>, &Span, &str, &mut Report) -> Option<T>,
) -> Vec<T> {
    let array_path = paths::join(service_path, key);
    let Some(items) = array_of_tables(value, &array_path, header, report) else {
        return Vec::new();
    };
    items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| {
            let (span, table) = item.as_ref()?;
            read_one(table, span, &paths::indexed(service_path, key, i), report)
        })
        .collect()
}

fn read_routes(
    value: &Spanned<DeValue>,
    service_path: &str,
    report: &mut Report,
) -> Vec<RouteEntry> {
    let route = ("route", "[[service.route]]");
    read_each(
        value,
        service_path,
        route,
        report,
        |table, span, path, report| {
            let fields = read_section(table, span, path, ROUTE_TABLES, report);
            let health = table.get("health").and_then(|v| {
                read_table(
                    v,
                    &paths::join(path, "health"),
                    "[service.route.health]",
                    report,
                )
            });
            let backends = table
                .get("backend")
                .map(|v| read_backends(v, path, report))
                .unwrap_or_default();
            Some(RouteEntry {
                fields: fields?,
                health,
                backends,
                backend_written: is_written(table.get("backend")),
            })
        },
    )
}

fn read_backends(
    value: &Spanned<DeValue>,
    service_path: &str,
    report: &mut Report,
) -> Vec<Section<RawBackend>> {
    let backend = ("backend", "[[service.backend]]");
    read_each(
        value,
        service_path,
        backend,
        report,
        |table, span, path, report| {
            let mut section: Section<RawBackend> =
                read_section(table, span, path, BACKEND_TABLES, report)?;
            section.value.health = table.get("health").and_then(|v| {
                let health_path = paths::join(path, "health");
                read_table(v, &health_path, "[service.backend.health]", report)
            });
            Some(section)
        },
    )
}

fn read_discover(
    value: &Spanned<DeValue>,
    service_path: &str,
    report: &mut Report,
) -> Vec<Section<RawDiscover>> {
    let discover = ("discover", "[[service.discover]]");
    read_each(
        value,
        service_path,
        discover,
        report,
        |table, span, path, report| read_section(table, span, path, &[], report),
    )
}

/// A value that must be a table, e.g. `[admin]` or `health = { ... }`.
fn read_table<T: DeserializeOwned>(
    value: &Spanned<DeValue>,
    path: &str,
    header: &str,
    report: &mut Report,
) -> Option<Section<T>> {
    match value.get_ref() {
        DeValue::Table(table) => read_section(table, &value.span(), path, &[], report),
        other => {
            let message = format!("expected a table ({header}), got {}", a_type(other));
            report.at(&value.span(), path, message);
            None
        }
    }
}

/// A value that must be an array of tables, e.g. `[[service]]`; yields each
/// item in place, `None` for (reported) items that are not tables.
fn array_of_tables<'v, 'i>(
    value: &'v Spanned<DeValue<'i>>,
    path: &str,
    header: &str,
    report: &mut Report,
) -> Option<Vec<Option<(Span, &'v DeTable<'i>)>>> {
    let DeValue::Array(items) = value.get_ref() else {
        let message = format!(
            "expected an array of tables ({header}), got {}",
            a_type(value.get_ref())
        );
        report.at(&value.span(), path, message);
        return None;
    };
    let tables = items
        .iter()
        .enumerate()
        .map(|(i, item)| match item.get_ref() {
            DeValue::Table(table) => Some((item.span(), table)),
            other => {
                let message = format!("expected a table, got {}", a_type(other));
                report.at(&item.span(), &format!("{path}[{i}]"), message);
                None
            }
        });
    Some(tables.collect())
}

/// Deserializes one table into `T`. A key serde rejects (unknown, or of the
/// wrong type) is reported, dropped, and the rest read again, so every bad key
/// of the table is reported. `None` only if an error cannot be tied to a key.
/// The values of `nested` keys (tables read on their own) are not copied.
fn read_section<T: DeserializeOwned>(
    table: &DeTable,
    span: &Span,
    path: &str,
    nested: &[&str],
    report: &mut Report,
) -> Option<Section<T>> {
    let mut remaining = own_keys(table, nested);
    let mut broken = BTreeSet::new();
    loop {
        let whole = Spanned::new(span.clone(), DeValue::Table(remaining.clone()));
        let error = match T::deserialize(ValueDeserializer::from(whole)) {
            Ok(value) => {
                let path = path.to_string();
                let span = span.clone();
                return Some(Section {
                    path,
                    span,
                    value,
                    broken,
                });
            }
            Err(error) => error,
        };
        let key = error.span().and_then(|s| key_at(&remaining, s.start));
        let key_path = key
            .as_deref()
            .map_or(path.to_string(), |k| paths::join(path, k));
        let value = key.as_deref().and_then(|k| remaining.get(k));
        let message = unknown_key_message(error.message())
            .unwrap_or_else(|| in_toml_terms(error.message(), value.map(|v| v.get_ref())));
        report.error(error.span(), &key_path, message);
        let key = key?;
        remaining.remove(key.as_str())?;
        broken.insert(key);
    }
}

/// Keys of the top level and of a `[[service]]` whose values are tables read
/// on their own (`T` only notes that they may be there).
const ROOT_TABLES: &[&str] = &["admin", "global", "service"];
const SERVICE_TABLES: &[&str] = &["health", "outlier", "backend", "route", "discover"];
const ROUTE_TABLES: &[&str] = &["health", "backend"];
const BACKEND_TABLES: &[&str] = &["health"];

/// A copy of `table` in which the value of each `nested` key is a stand-in:
/// copying a service's backends (or the whole document) for every retry
/// would cost memory in proportion to the file.
fn own_keys<'i>(table: &DeTable<'i>, nested: &[&str]) -> DeTable<'i> {
    table
        .iter()
        .map(|(key, value)| {
            let value = if nested.contains(&key.get_ref().as_ref()) {
                Spanned::new(value.span(), DeValue::Boolean(true))
            } else {
                value.clone()
            };
            (key.clone(), value)
        })
        .collect()
}

/// Whether a key is present with a value other than an empty array.
fn is_written(value: Option<&Spanned<DeValue>>) -> bool {
    value.is_some_and(|v| !matches!(v.get_ref(), DeValue::Array(items) if items.is_empty()))
}

/// The key of `table` whose key or value holds byte `offset`.
fn key_at(table: &DeTable, offset: usize) -> Option<String> {
    let holds = |s: Span| s.contains(&offset) || s.start == offset;
    table
        .iter()
        .find(|(k, v)| holds(k.span()) || holds(v.span()))
        .map(|(k, _)| k.get_ref().to_string())
}

/// serde's "invalid type" message with TOML's names for types.
fn in_toml_terms(message: &str, value: Option<&DeValue>) -> String {
    let Some((found, expected)) = message
        .strip_prefix("invalid type: ")
        .and_then(|rest| rest.split_once(", expected "))
    else {
        return message.to_string();
    };
    let found = match found {
        "map" if matches!(value, Some(DeValue::Datetime(_))) => "datetime",
        "map" => "table",
        "sequence" => "array",
        other => other,
    };
    format!("invalid type: {found}, expected {expected}")
}

/// "a string", "an integer", ... for messages.
fn a_type(value: &DeValue) -> String {
    let name = value.type_str();
    let article = if name.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    format!("{article} {name}")
}

impl<'de> Deserialize<'de> for Int {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_i64(IntVisitor)
    }
}

struct IntVisitor;

impl de::Visitor<'_> for IntVisitor {
    type Value = Int;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an integer")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Int, E> {
        Ok(Int(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Int, E> {
        i64::try_from(v)
            .map(Int)
            .map_err(|_| E::custom(format!("integer {v} is too large")))
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Int, E> {
        i64::try_from(v)
            .map(Int)
            .map_err(|_| E::custom(format!("integer {v} is too large")))
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Int, E> {
        i64::try_from(v)
            .map(Int)
            .map_err(|_| E::custom(format!("integer {v} is too large")))
    }
}

impl<'de> Deserialize<'de> for DurationText {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(DurationVisitor)
    }
}

struct DurationVisitor;

impl de::Visitor<'_> for DurationVisitor {
    type Value = DurationText;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a duration string such as \"250ms\", \"2s\" or \"1m30s\"")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<DurationText, E> {
        Ok(DurationText(v.to_string()))
    }
}

impl<'de> Deserialize<'de> for Listen {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ListenVisitor)
    }
}

struct ListenVisitor;

impl<'de> de::Visitor<'de> for ListenVisitor {
    type Value = Listen;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an address string such as \"0.0.0.0:6432\", or an array of them")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Listen, E> {
        Ok(Listen::One(v.to_string()))
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<Listen, A::Error> {
        collect_strings(seq).map(Listen::Many)
    }
}

impl<'de> Deserialize<'de> for StringList {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_seq(StringListVisitor)
    }
}

struct StringListVisitor;

impl<'de> de::Visitor<'de> for StringListVisitor {
    type Value = StringList;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of strings, e.g. [\"10.0.0.0/8\"]")
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<StringList, A::Error> {
        collect_strings(seq).map(StringList)
    }
}

fn collect_strings<'de, A: de::SeqAccess<'de>>(
    mut seq: A,
) -> Result<Vec<Spanned<String>>, A::Error> {
    let mut items = Vec::new();
    while let Some(item) = seq.next_element::<Spanned<String>>()? {
        items.push(item);
    }
    Ok(items)
}
