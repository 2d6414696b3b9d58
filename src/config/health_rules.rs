//! The rules that tie a `[service.health]` table to its service: the check's
//! kind must match the service's protocol, and `send` belongs to udp checks
//! (which need it) and to no others.
//!
//! This file owns those rules and their messages. Reading the table's values
//! and their ranges is `validate.rs`'s job.

use super::checker::Checker;
use super::file::{RawHealth, Section};
use super::model::{HealthKind, Protocol};

/// The check kind used when `kind` is not written: the service's own protocol.
pub fn default_kind(protocol: Protocol) -> HealthKind {
    match protocol {
        Protocol::Tcp => HealthKind::Tcp,
        Protocol::Udp => HealthKind::Udp,
    }
}

fn kind_name(kind: HealthKind) -> &'static str {
    match kind {
        HealthKind::Tcp => "tcp",
        HealthKind::Udp => "udp",
    }
}

impl Checker<'_, '_> {
    /// Reports a check that cannot probe this service, or whose `send` is
    /// missing where it is needed or written where it means nothing.
    pub fn health_fits(
        &mut self,
        section: &Section<RawHealth>,
        kind: HealthKind,
        protocol: Protocol,
    ) {
        let raw = &section.value;
        if kind != default_kind(protocol) {
            let span = raw.kind.as_ref().map_or(section.span.clone(), |k| k.span());
            let message = format!(
                "a {} check cannot probe the backends of a {protocol} service; \
                 use kind = \"{protocol}\"",
                kind_name(kind)
            );
            self.fail(&span, "kind", message);
            return;
        }
        match (kind, &raw.send) {
            (HealthKind::Tcp, Some(send)) => {
                let message = "applies to udp checks only, and this check is tcp (a tcp \
                               check only connects); remove it"
                    .to_string();
                self.fail(&send.span(), "send", message);
            }
            (HealthKind::Udp, None) if !section.broken.contains("send") => {
                let message = "a udp check needs \"send\", the payload each probe sends, \
                               e.g. send = \"ping\" (any datagram back is a success)";
                self.report.at(&section.span, self.path, message);
            }
            (HealthKind::Udp, Some(send)) if send.get_ref().is_empty() => {
                let message = "must not be empty for a udp check: give a payload your \
                               backends answer, e.g. send = \"ping\""
                    .to_string();
                self.fail(&send.span(), "send", message);
            }
            _ => {}
        }
    }
}
