//! The rules that tie a `[service.health]` table to its service: the check's
//! kind must match the service's protocol, and the payload keys (`send` or
//! `send_hex`, `expect` or `expect_hex`) belong to udp checks (which need a
//! payload) and to no others; hex values are decoded here.
//!
//! This file owns those rules and their messages. Reading the table's values
//! and their ranges is `validate.rs`'s job.

use toml::Spanned;

use super::checker::{Checker, text};
use super::file::{Field, RawHealth, Section};
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
        match kind {
            HealthKind::Tcp => self.no_udp_payload_keys(raw),
            HealthKind::Udp => self.udp_payload_present(section),
        }
    }

    /// A tcp check only connects: every udp payload key is a mistake.
    fn no_udp_payload_keys(&mut self, raw: &RawHealth) {
        for (key, field) in udp_payload_keys(raw) {
            if let Some(field) = field {
                let message = "applies to udp checks only, and this check is tcp (a tcp \
                               check only connects); remove it"
                    .to_string();
                self.fail(&field.span(), key, message);
            }
        }
    }

    /// A udp check sends exactly one of `send` / `send_hex`, not empty.
    fn udp_payload_present(&mut self, section: &Section<RawHealth>) {
        let raw = &section.value;
        match (&raw.send, &raw.send_hex) {
            (Some(_), Some(hex)) => {
                let message = "give the payload once: either send (text) or send_hex \
                               (bytes), not both"
                    .to_string();
                self.fail(&hex.span(), "send_hex", message);
            }
            (None, None)
                if !section.broken.contains("send") && !section.broken.contains("send_hex") =>
            {
                let message = "a udp check needs \"send\" (or \"send_hex\"), the payload \
                               each probe sends, e.g. send = \"ping\" (any datagram back is a \
                               success unless expect or expect_hex is set)";
                self.report.at(&section.span, self.path, message);
            }
            (Some(send), None) if send.get_ref().is_empty() => {
                let message = "must not be empty for a udp check: give a payload your \
                               backends answer, e.g. send = \"ping\""
                    .to_string();
                self.fail(&send.span(), "send", message);
            }
            _ => {}
        }
        if let (Some(_), Some(hex)) = (&raw.expect, &raw.expect_hex) {
            let message = "give the expected reply once: either expect (text) or \
                           expect_hex (bytes), not both"
                .to_string();
            self.fail(&hex.span(), "expect_hex", message);
        }
    }

    /// The probe's payload and expected reply prefix, decoded (`send_hex` and
    /// `expect_hex` as hex bytes); a bad value is reported and read as empty.
    pub fn udp_payload(&mut self, raw: &RawHealth) -> (Vec<u8>, Option<Vec<u8>>) {
        let send = match &raw.send_hex {
            Some(hex) => self.hex_bytes("send_hex", hex),
            None => text(&raw.send, "").into_bytes(),
        };
        let expect = match (&raw.expect_hex, &raw.expect) {
            (Some(hex), _) => Some(self.hex_bytes("expect_hex", hex)),
            (None, Some(text)) if text.get_ref().is_empty() => {
                let message = "must not be empty: omit it to accept any reply".to_string();
                self.fail(&text.span(), "expect", message);
                None
            }
            (None, Some(text)) => Some(text.get_ref().clone().into_bytes()),
            (None, None) => None,
        };
        (send, expect)
    }

    /// `field` read as hex digits (whitespace between bytes allowed).
    fn hex_bytes(&mut self, key: &str, field: &Spanned<String>) -> Vec<u8> {
        let digits: String = field
            .get_ref()
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect();
        match hex::decode(&digits) {
            Ok(bytes) if !bytes.is_empty() => bytes,
            Ok(_) => {
                self.fail(&field.span(), key, "must not be empty".to_string());
                Vec::new()
            }
            Err(e) => {
                let message = format!(
                    "must be hex digits, two per byte (e.g. \"ffffffff54\"): {e}, got {:?}",
                    field.get_ref()
                );
                self.fail(&field.span(), key, message);
                Vec::new()
            }
        }
    }
}

/// The keys of `[service.health]` that only a udp check reads.
fn udp_payload_keys(raw: &RawHealth) -> [(&'static str, &Field<String>); 4] {
    [
        ("send", &raw.send),
        ("send_hex", &raw.send_hex),
        ("expect", &raw.expect),
        ("expect_hex", &raw.expect_hex),
    ]
}
