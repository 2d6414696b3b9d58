//! The rules of `[[service.route]]` tables: server-name patterns (exact names
//! and single-label `*.` wildcards), ALPN lists, route names, and routes that
//! would match the same clients (an exact name beats a wildcard; two identical
//! routes are an error). Routes belong to tcp services only.
//!
//! Pure checks (`sni_pattern`) and the reporting around them; the backends of
//! a route are built with the service's in `validate.rs`.

use std::collections::HashMap;
use std::net::IpAddr;

use toml::Spanned;

use super::checker::Checker;
use super::file::{RawRoute, RouteEntry, Section, StringList};
use super::model::{DEFAULT_ROUTE, HashKey, Protocol, RouteConfig, SniPattern, StrategyConfig};
use super::paths;
use super::report::{Report, Span};
use super::strategy::StrategyKeys;
use super::values::as_usize;

/// Longest DNS name.
const MAX_NAME_LEN: usize = 253;

/// A server-name pattern as written in `sni`, checked and lower-cased.
pub fn sni_pattern(text: &str) -> Result<SniPattern, String> {
    let lower = text.to_ascii_lowercase();
    if let Some(suffix) = lower.strip_prefix("*.") {
        if suffix.contains('*') {
            return Err(wildcard_message(text));
        }
        check_host_name(suffix).map_err(|why| format!("invalid wildcard \"{text}\": {why}"))?;
        return Ok(SniPattern::Wildcard(suffix.to_string()));
    }
    if lower.contains('*') {
        return Err(wildcard_message(text));
    }
    check_host_name(&lower).map_err(|why| format!("invalid server name \"{text}\": {why}"))?;
    Ok(SniPattern::Exact(lower))
}

fn wildcard_message(text: &str) -> String {
    format!(
        "invalid wildcard \"{text}\": a wildcard must be the whole leftmost label, \
         followed by a name, as in \"*.example.com\" (it matches one label)"
    )
}

/// A DNS host name: labels of 1 to 63 letters, digits, '-' or '_', no trailing
/// dot, not an IP address (clients never send one as SNI).
fn check_host_name(name: &str) -> Result<(), String> {
    if name.parse::<IpAddr>().is_ok() {
        return Err("an IP address is never sent as a server name (RFC 6066)".into());
    }
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(format!("expected 1 to {MAX_NAME_LEN} characters"));
    }
    if name.ends_with('.') {
        return Err("no trailing dot: clients send the name without one".into());
    }
    for label in name.split('.') {
        let chars_ok = label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if label.is_empty() || label.len() > 63 || !chars_ok {
            return Err(format!(
                "label \"{label}\" must be 1 to 63 letters, digits, '-' or '_'"
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!("label \"{label}\" must not start or end with '-'"));
        }
    }
    Ok(())
}

/// One route's patterns with where each is written, for the overlap check.
pub struct WrittenRoute {
    pub name: String,
    pub patterns: Vec<(SniPattern, Span, String)>,
    /// Sorted, for comparing routes.
    pub alpn: Vec<String>,
}

impl Checker<'_, '_> {
    /// One route's settings (its backends come later). `inherited` is the
    /// service's strategy, used when the route sets none of the strategy keys.
    pub fn route(
        &mut self,
        section: &Section<RawRoute>,
        inherited: StrategyConfig,
        backends: usize,
    ) -> (RouteConfig, WrittenRoute) {
        let raw = &section.value;
        let patterns = self.sni_patterns(section);
        let alpn = self.alpn(&raw.alpn);
        let keys = StrategyKeys::from(raw);
        let strategy = if keys.any_written() {
            self.strategy(&keys, backends)
        } else {
            inherited
        };
        let name = match &raw.name {
            Some(name) => name.get_ref().clone(),
            None => patterns
                .first()
                .map_or_else(String::new, |(p, _, _)| p.to_string()),
        };
        let limit = self.int("max_connections", &raw.max_connections, 0..=i64::MAX, 0);
        let route = RouteConfig {
            name: name.clone(),
            sni: patterns.iter().map(|(p, _, _)| p.clone()).collect(),
            alpn: alpn.clone(),
            strategy,
            max_connections: as_usize(limit),
            allow: self.cidrs("allow", &raw.allow),
            deny: self.cidrs("deny", &raw.deny),
        };
        let mut sorted = alpn;
        sorted.sort();
        let written = WrittenRoute {
            name,
            patterns,
            alpn: sorted,
        };
        (route, written)
    }

    fn sni_patterns(&mut self, section: &Section<RawRoute>) -> Vec<(SniPattern, Span, String)> {
        let example = "[\"db1.example.com\", \"*.api.example.com\"]";
        let Some(list) = self.required(section, "sni", &section.value.sni, example) else {
            return Vec::new();
        };
        if list.get_ref().0.is_empty() {
            let message = format!("must list at least one server name, e.g. {example}");
            self.fail(&list.span(), "sni", message);
        }
        let mut seen: HashMap<SniPattern, ()> = HashMap::new();
        let mut patterns = Vec::new();
        for (i, item) in list.get_ref().0.iter().enumerate() {
            let path = paths::indexed(self.path, "sni", i);
            match sni_pattern(item.get_ref()) {
                Err(message) => self.report.at(&item.span(), &path, message),
                Ok(pattern) if seen.contains_key(&pattern) => {
                    let message = format!("\"{pattern}\" is listed twice in this route");
                    self.report.at(&item.span(), &path, message);
                }
                Ok(pattern) => {
                    seen.insert(pattern.clone(), ());
                    patterns.push((pattern, item.span(), path));
                }
            }
        }
        patterns
    }

    fn alpn(&mut self, field: &Option<Spanned<StringList>>) -> Vec<String> {
        let Some(list) = field else {
            return Vec::new();
        };
        let mut protocols: Vec<String> = Vec::new();
        for (i, item) in list.get_ref().0.iter().enumerate() {
            let text = item.get_ref();
            let path = paths::indexed(self.path, "alpn", i);
            if text.is_empty() || text.len() > 255 {
                let message =
                    format!("an ALPN protocol name is 1 to 255 bytes, e.g. \"h2\"; got \"{text}\"");
                self.report.at(&item.span(), &path, message);
            } else if protocols.contains(text) {
                let message = format!("\"{text}\" is listed twice");
                self.report.at(&item.span(), &path, message);
            } else {
                protocols.push(text.clone());
            }
        }
        if list.get_ref().0.is_empty() {
            let message = "must list at least one protocol, or be left out (any)".to_string();
            self.fail(&list.span(), "alpn", message);
        }
        protocols
    }
}

/// Reports routes that cannot be used as written: on a udp service, without a
/// usable name, with a name used twice, or matching exactly what another route
/// matches (the same pattern for the same ALPN list).
pub fn check_routes(
    report: &mut Report,
    protocol: Protocol,
    entries: &[RouteEntry],
    written: &[WrittenRoute],
) {
    if protocol == Protocol::Udp {
        for entry in entries {
            let message = "routes apply to tcp services only (they read the TLS ClientHello), \
                           and this service is udp; remove the route";
            report.at(&entry.fields.span, &entry.fields.path, message);
        }
        return;
    }
    check_names(report, entries, written);
    let mut first: HashMap<(&SniPattern, &[String]), (&str, &Span, &str)> = HashMap::new();
    for route in written {
        for (pattern, span, path) in &route.patterns {
            let key = (pattern, route.alpn.as_slice());
            match first.get(&key) {
                Some((other, other_span, other_path)) => {
                    let place = report.describe(other_span);
                    let message = format!(
                        "\"{pattern}\" is already routed by route \"{other}\" \
                         ({other_path} at {place}) for the same ALPN protocols; \
                         two routes cannot match the same clients"
                    );
                    report.at(span, path, message);
                }
                None => {
                    first.insert(key, (&route.name, span, path));
                }
            }
        }
    }
}

fn check_names(report: &mut Report, entries: &[RouteEntry], written: &[WrittenRoute]) {
    let mut seen: HashMap<&str, Span> = HashMap::new();
    for (entry, route) in entries.iter().zip(written) {
        let fields = &entry.fields;
        let span = &fields
            .value
            .name
            .as_ref()
            .map_or(fields.span.clone(), |n| n.span());
        let path = fields.key_path("name");
        let name = route.name.as_str();
        if name.is_empty() {
            continue; // no sni: already reported
        }
        if name == DEFAULT_ROUTE {
            let message = format!(
                "\"{DEFAULT_ROUTE}\" names the service's own [[service.backend]] list; \
                 give this route another name"
            );
            report.at(span, &path, message);
        } else if fields.value.name.is_some() && !paths::is_valid_service_name(name) {
            let message = format!(
                "invalid route name \"{name}\": expected 1 to {} characters from A-Z, a-z, \
                 0-9, '_', '.' and '-'",
                paths::MAX_SERVICE_NAME_LEN
            );
            report.at(span, &path, message);
        } else if let Some(first) = seen.get(name) {
            let place = report.describe(first);
            let message = format!(
                "duplicate route name \"{name}\" (first at {place}); set `name` to tell them apart"
            );
            report.at(span, &path, message);
        } else {
            seen.insert(name, span.clone());
        }
    }
}

/// Reports `hash_key = "sni"` on a udp service.
pub fn check_sni_hashing(
    report: &mut Report,
    protocol: Protocol,
    hash_key: HashKey,
    span: Option<Span>,
    path: &str,
) {
    if protocol == Protocol::Udp && hash_key == HashKey::Sni {
        let message = "\"sni\" hashes the TLS server name, which only tcp services read; \
                       use \"source_ip\" or \"source_ip_port\"";
        report.error(span, path, message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_names_and_single_label_wildcards() {
        assert_eq!(
            sni_pattern("DB1.Example.com"),
            Ok(SniPattern::Exact("db1.example.com".into()))
        );
        assert_eq!(
            sni_pattern("*.api.example.com"),
            Ok(SniPattern::Wildcard("api.example.com".into()))
        );
        for bad in [
            "*",
            "*.",
            "a*.example.com",
            "*.*.example.com",
            "api.*.com",
            "**.x",
        ] {
            let error = sni_pattern(bad).expect_err(bad);
            assert!(error.contains("wildcard"), "{bad}: {error}");
        }
        for bad in [
            "",
            "a..b",
            "a.b.",
            "-a.b",
            "a b",
            "10.0.0.1",
            "::1",
            "ä.example",
        ] {
            assert!(sni_pattern(bad).is_err(), "{bad}");
        }
        assert!(sni_pattern(&format!("{}.com", "a".repeat(64))).is_err());
    }
}
