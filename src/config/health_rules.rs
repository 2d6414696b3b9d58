//! The rules that tie a `[service.health]` table to its service: the check's
//! kind must be one that can probe the service's backends, and each
//! kind-specific key belongs to the kinds that use it (a udp check needs its
//! payload; a dns check its query; an agent check its port).
//!
//! This file owns those rules and their messages. Reading the table's values
//! and their ranges is `validate.rs` and `health_keys.rs`'s job.

use super::checker::Checker;
use super::file::{RawHealth, Section};
use super::model::{HealthKind, Protocol};
use super::report::Span;

use HealthKind::{Agent, Dns, Http, Mysql, Postgres, Redis, Tcp, Udp};

/// The check kind used when `kind` is not written: the service's own protocol.
pub fn default_kind(protocol: Protocol) -> HealthKind {
    match protocol {
        Protocol::Tcp => Tcp,
        Protocol::Udp => Udp,
    }
}

/// The kinds that can probe the backends of a `protocol` service.
fn kinds_for(protocol: Protocol) -> &'static [HealthKind] {
    match protocol {
        Protocol::Tcp => &[Tcp, Postgres, Redis, Mysql, Http, Agent],
        Protocol::Udp => &[Udp, Dns, Http, Agent],
    }
}

/// Each kind-specific key with where it is written and the kinds that take it.
fn kind_keys(raw: &RawHealth) -> [(&'static str, Option<Span>, &'static [HealthKind]); 15] {
    [
        ("send", raw.send.as_ref().map(|f| f.span()), &[Tcp, Udp]),
        (
            "send_hex",
            raw.send_hex.as_ref().map(|f| f.span()),
            &[Tcp, Udp],
        ),
        ("expect", raw.expect.as_ref().map(|f| f.span()), &[Tcp, Udp]),
        (
            "expect_hex",
            raw.expect_hex.as_ref().map(|f| f.span()),
            &[Tcp, Udp],
        ),
        (
            "role",
            raw.role.as_ref().map(|f| f.span()),
            &[Postgres, Redis],
        ),
        (
            "user",
            raw.user.as_ref().map(|f| f.span()),
            &[Postgres, Redis],
        ),
        (
            "database",
            raw.database.as_ref().map(|f| f.span()),
            &[Postgres],
        ),
        (
            "password",
            raw.password.as_ref().map(|f| f.span()),
            &[Postgres, Redis],
        ),
        ("path", raw.path.as_ref().map(|f| f.span()), &[Http]),
        ("host", raw.host.as_ref().map(|f| f.span()), &[Http]),
        ("status", raw.status.as_ref().map(|f| f.span()), &[Http]),
        ("query", raw.query.as_ref().map(|f| f.span()), &[Dns]),
        (
            "query_type",
            raw.query_type.as_ref().map(|f| f.span()),
            &[Dns],
        ),
        ("rcodes", raw.rcodes.as_ref().map(|f| f.span()), &[Dns]),
        (
            "agent_port",
            raw.agent_port.as_ref().map(|f| f.span()),
            &[Agent],
        ),
    ]
}

/// `"a"`, `"a" or "b"`, `"a", "b" or "c"`.
fn either(kinds: &[HealthKind]) -> String {
    let names: Vec<String> = kinds
        .iter()
        .map(|k| format!("\"{}\"", k.as_str()))
        .collect();
    match names.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

impl Checker<'_, '_> {
    /// Reports a check that cannot probe this service, and keys written for
    /// another kind or missing for this one. False when the kind does not fit
    /// (its own keys are then not worth reading).
    pub fn health_fits(
        &mut self,
        section: &Section<RawHealth>,
        kind: HealthKind,
        protocol: Protocol,
    ) -> bool {
        let raw = &section.value;
        let fitting = kinds_for(protocol);
        if !fitting.contains(&kind) {
            let span = raw.kind.as_ref().map_or(section.span.clone(), |k| k.span());
            let message = format!(
                "a {} check cannot probe the backends of a {protocol} service; \
                 use kind = {}",
                kind.as_str(),
                either(fitting)
            );
            self.fail(&span, "kind", message);
            return false;
        }
        for (key, span, kinds) in kind_keys(raw) {
            if let Some(span) = span.filter(|_| !kinds.contains(&kind)) {
                let message = format!(
                    "applies to {} checks only, and this check is {}; remove it",
                    either(kinds),
                    kind.as_str()
                );
                self.fail(&span, key, message);
            }
        }
        if kind == Udp {
            self.udp_payload(section);
        }
        self.keys_this_kind_would_ignore(raw, kind);
        if kind == Http && protocol == Protocol::Udp && raw.port.is_none() {
            let message = "an http check of a udp service needs \"port\", the TCP port of the \
                           backends' HTTP health endpoint, e.g. port = 8080";
            self.report.at(&section.span, self.path, message);
        }
        true
    }

    /// `port` on an agent check (which connects to `agent_port`) and
    /// `password` on a postgres check that does not log in.
    fn keys_this_kind_would_ignore(&mut self, raw: &RawHealth, kind: HealthKind) {
        if let (Agent, Some(port)) = (kind, &raw.port) {
            let message = "an agent check connects to agent_port on the backend's IP; \
                           remove port"
                .to_string();
            self.fail(&port.span(), "port", message);
        }
        let logs_in = raw.role.as_ref().is_some_and(|r| r.get_ref() == "primary");
        if let (Postgres, Some(password), false) = (kind, &raw.password, logs_in) {
            let message = "a postgres check logs in only with role = \"primary\" (otherwise it \
                           stops at the server's first answer); add role = \"primary\" or \
                           remove password"
                .to_string();
            self.fail(&password.span(), "password", message);
        }
    }

    /// A udp check needs a non-empty payload.
    fn udp_payload(&mut self, section: &Section<RawHealth>) {
        let raw = &section.value;
        let broken = section.broken.contains("send") || section.broken.contains("send_hex");
        match (&raw.send, &raw.send_hex) {
            (None, None) if !broken => {
                let message = "a udp check needs \"send\", the payload each probe sends, \
                               e.g. send = \"ping\" (any datagram back is a success)";
                self.report.at(&section.span, self.path, message);
            }
            (Some(send), None) if send.get_ref().is_empty() => {
                let message = "must not be empty for a udp check: give a payload your \
                               backends answer, e.g. send = \"ping\""
                    .to_string();
                self.fail(&send.span(), "send", message);
            }
            (None, Some(hex)) if hex.get_ref().trim().is_empty() => {
                let message = "must not be empty for a udp check: give a payload your \
                               backends answer, e.g. send_hex = \"70696e67\""
                    .to_string();
                self.fail(&hex.span(), "send_hex", message);
            }
            _ => {}
        }
    }
}
