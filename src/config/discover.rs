//! The rules of a `[[service.discover]]` group: exactly one of `dns` and
//! `srv`, a `port` with `dns` only, resolver addresses as `IP:port`, and the
//! refresh policy (`"ttl"` or a fixed interval).
//!
//! This file checks one group's keys; it does no lookups (the runtime's
//! `discovery` module does).

use std::net::SocketAddr;
use std::time::Duration;

use super::checker::{Checker, flag};
use super::file::{RawDiscover, Section};
use super::model::{DiscoverConfig, DiscoverQuery, Refresh};
use super::paths;
use super::values::{as_u32, as_usize, parse_duration};

const DEFAULT_MAX_TTL: Duration = Duration::from_secs(30);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// One checked group; `None` when it cannot be used (every problem reported).
pub fn discover_group(c: &mut Checker, section: &Section<RawDiscover>) -> Option<DiscoverConfig> {
    let raw = &section.value;
    let weight = c.int("weight", &raw.weight, 1..=1000, 1);
    let max_backends = c.int("max_backends", &raw.max_backends, 1..=10_000, 64);
    let empty_after = c.int("empty_after", &raw.empty_after, 1..=100, 3);
    let timeout = c.positive_duration("timeout", &raw.timeout, DEFAULT_TIMEOUT);
    let max_ttl = c.positive_duration("max_ttl", &raw.max_ttl, DEFAULT_MAX_TTL);
    let slow_start = c.duration("slow_start", &raw.slow_start, Duration::ZERO, true);
    let refresh = refresh(c, section, max_ttl);
    let resolvers = resolvers(c, section);
    let query = query(c, section)?;
    Some(DiscoverConfig {
        query,
        resolvers,
        refresh: refresh?,
        timeout,
        weight: as_u32(weight),
        max_backends: as_usize(max_backends),
        empty_after: as_u32(empty_after),
        backup: flag(&raw.backup),
        slow_start: slow_start.unwrap_or(Duration::ZERO),
    })
}

fn query(c: &mut Checker, section: &Section<RawDiscover>) -> Option<DiscoverQuery> {
    let raw = &section.value;
    let port = raw.port.as_ref();
    match (&raw.dns, &raw.srv) {
        (Some(dns), None) => {
            let name = checked_name(c, "dns", dns.get_ref(), &dns.span())?;
            if port.is_none() {
                if !section.broken.contains("port") {
                    let message = "missing required key \"port\": a dns group needs the port \
                                   its addresses serve on, e.g. port = 5432";
                    c.report.at(&section.span, c.path, message.to_string());
                }
                return None;
            }
            let port = c.int("port", &raw.port, 1..=65535, 0);
            let port = u16::try_from(port).ok().filter(|&p| p != 0)?;
            Some(DiscoverQuery::Dns { name, port })
        }
        (None, Some(srv)) => {
            if let Some(port) = port {
                let message = "an srv group takes each target's port from its SRV record; \
                               remove port"
                    .to_string();
                c.fail(&port.span(), "port", message);
            }
            let name = checked_name(c, "srv", srv.get_ref(), &srv.span())?;
            Some(DiscoverQuery::Srv { name })
        }
        (Some(_), Some(srv)) => {
            let message = "set either dns (A/AAAA records) or srv (SRV records), not both";
            c.fail(&srv.span(), "srv", message.to_string());
            None
        }
        (None, None) => {
            let message = "missing \"dns\" or \"srv\": the name to discover backends from, \
                           e.g. dns = \"pg.service.consul\" or srv = \"_pg._tcp.db.example\"";
            c.report.at(&section.span, c.path, message.to_string());
            None
        }
    }
}

/// A DNS name: 1 to 253 characters of letters, digits, `-`, `_` and dots.
fn checked_name(
    c: &mut Checker,
    key: &str,
    name: &str,
    span: &std::ops::Range<usize>,
) -> Option<String> {
    let labels_ok = name
        .trim_end_matches('.')
        .split('.')
        .all(|l| !l.is_empty() && l.len() <= 63);
    let chars_ok = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if name.is_empty() || name.len() > 253 || !labels_ok || !chars_ok {
        let message = format!(
            "invalid DNS name \"{name}\": expected dot-separated labels of letters, digits, \
             '-' and '_', e.g. \"pg.service.consul\""
        );
        c.fail(span, key, message);
        return None;
    }
    Some(name.to_string())
}

fn refresh(c: &mut Checker, section: &Section<RawDiscover>, max_ttl: Duration) -> Option<Refresh> {
    let Some(value) = &section.value.refresh else {
        return Some(Refresh::Ttl { max: max_ttl });
    };
    let text = value.get_ref().0.as_str();
    if text == "ttl" {
        return Some(Refresh::Ttl { max: max_ttl });
    }
    if let Some(max) = &section.value.max_ttl {
        let message = "max_ttl bounds refresh = \"ttl\" only; with a fixed refresh interval, \
                       remove it"
            .to_string();
        c.fail(&max.span(), "max_ttl", message);
    }
    match parse_duration(text, false) {
        Ok(every) => Some(Refresh::Every(every.max(Duration::from_secs(1)))),
        Err(message) => {
            let message = format!("{message}; or \"ttl\" to follow the answers' TTLs");
            c.fail(&value.span(), "refresh", message);
            None
        }
    }
}

/// The listed name servers (`IP:port`, or a bare IP for port 53).
fn resolvers(c: &mut Checker, section: &Section<RawDiscover>) -> Vec<SocketAddr> {
    let Some(list) = &section.value.resolvers else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for (i, item) in list.get_ref().0.iter().enumerate() {
        let text = item.get_ref();
        let parsed = text
            .parse::<SocketAddr>()
            .or_else(|_| text.parse().map(|ip| SocketAddr::new(ip, 53)));
        match parsed {
            Ok(addr) => found.push(addr),
            Err(_) => {
                let message = format!(
                    "invalid resolver address \"{text}\": expected IP:port or IP, e.g. \
                     \"127.0.0.1:8600\" (a resolver is never a host name)"
                );
                let key_path = paths::indexed(c.path, "resolvers", i);
                c.report.at(&item.span(), &key_path, message);
            }
        }
    }
    found
}
