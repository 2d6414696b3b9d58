//! Reading the keys of one check kind from a `[service.health]` table into its
//! [`Check`]: payloads (`send`/`send_hex`, `expect`/`expect_hex`), roles,
//! credentials, the HTTP path and status range, the DNS query and RCODEs, the
//! agent port.
//!
//! Which keys a kind takes at all is `health_rules.rs`; this file reads the
//! values of the keys that belong to the kind being read.

use std::ops::RangeInclusive;

use super::checker::Checker;
use super::file::{Field, Int, RawHealth, Section};
use super::health_check::*;
use super::values::{parse_choice, parse_dns_name, parse_hex, parse_status_range};

const POSTGRES_ROLES: &[(&str, bool)] = &[("any", false), ("primary", true)];
const REDIS_ROLES: &[(&str, bool)] = &[("any", false), ("master", true)];
const DEFAULT_POSTGRES_USER: &str = "l4lb";
const DEFAULT_HTTP_STATUS: RangeInclusive<u16> = 200..=399;

impl Checker<'_, '_> {
    /// The settings of a `kind` check, reporting every bad value.
    pub fn check_settings(&mut self, section: &Section<RawHealth>, kind: HealthKind) -> Check {
        let raw = &section.value;
        match kind {
            HealthKind::Tcp => Check::Tcp(TcpCheck {
                send: self.bytes(("send", &raw.send), ("send_hex", &raw.send_hex)),
                expect: self.expected(raw),
            }),
            HealthKind::Udp => Check::Udp(UdpCheck {
                send: self.bytes(("send", &raw.send), ("send_hex", &raw.send_hex)),
                expect: self.expected(raw),
            }),
            HealthKind::Postgres => Check::Postgres(self.postgres(raw)),
            HealthKind::Redis => Check::Redis(RedisCheck {
                user: self.non_empty("user", &raw.user),
                password: self.non_empty("password", &raw.password),
                require_master: self.role(&raw.role, REDIS_ROLES),
            }),
            HealthKind::Mysql => Check::Mysql,
            HealthKind::Http => Check::Http(self.http(raw)),
            HealthKind::Dns => Check::Dns(self.dns(section)),
            HealthKind::Agent => Check::Agent(AgentCheck {
                port: self.agent_port(section),
            }),
        }
    }

    /// The bytes of a text key or of its `_hex` twin (not both), empty when neither.
    fn bytes(&mut self, text: (&str, &Field<String>), hex: (&str, &Field<String>)) -> Vec<u8> {
        match (text.1, hex.1) {
            (Some(_), Some(h)) => {
                let message = format!("{} and {} are both set; keep one", text.0, hex.0);
                self.fail(&h.span(), hex.0, message);
                Vec::new()
            }
            (Some(t), None) => t.get_ref().as_bytes().to_vec(),
            (None, Some(h)) => parse_hex(h.get_ref()).unwrap_or_else(|message| {
                self.fail(&h.span(), hex.0, message);
                Vec::new()
            }),
            (None, None) => Vec::new(),
        }
    }

    /// `expect` / `expect_hex`: the prefix a tcp or udp reply must start with.
    fn expected(&mut self, raw: &RawHealth) -> Option<Vec<u8>> {
        let (key, field) = match (&raw.expect, &raw.expect_hex) {
            (Some(text), _) => ("expect", text),
            (None, Some(hex)) => ("expect_hex", hex),
            (None, None) => return None,
        };
        let written = field.get_ref();
        let empty = if key == "expect" {
            written.is_empty()
        } else {
            written.trim().is_empty()
        };
        if empty {
            let message = "must not be empty: every reply starts with nothing; give the bytes \
                           the reply must start with, or remove it"
                .to_string();
            self.fail(&field.span(), key, message);
        }
        Some(self.bytes(("expect", &raw.expect), ("expect_hex", &raw.expect_hex)))
    }

    fn postgres(&mut self, raw: &RawHealth) -> PostgresCheck {
        let user = self
            .non_empty("user", &raw.user)
            .unwrap_or_else(|| DEFAULT_POSTGRES_USER.to_string());
        let database = self
            .non_empty("database", &raw.database)
            .unwrap_or_else(|| user.clone());
        PostgresCheck {
            password: self.non_empty("password", &raw.password),
            require_primary: self.role(&raw.role, POSTGRES_ROLES),
            user,
            database,
        }
    }

    fn http(&mut self, raw: &RawHealth) -> HttpCheck {
        let path = match &raw.path {
            Some(p)
                if !p.get_ref().starts_with('/') || p.get_ref().contains(char::is_whitespace) =>
            {
                let message = format!(
                    "must start with \"/\" and contain no spaces, e.g. \"/healthz\"; got \"{}\"",
                    p.get_ref()
                );
                self.fail(&p.span(), "path", message);
                "/".to_string()
            }
            Some(p) => p.get_ref().clone(),
            None => "/".to_string(),
        };
        let status = match &raw.status {
            Some(s) => parse_status_range(s.get_ref()).unwrap_or_else(|message| {
                self.fail(&s.span(), "status", message);
                DEFAULT_HTTP_STATUS
            }),
            None => DEFAULT_HTTP_STATUS,
        };
        HttpCheck {
            path,
            host: self.non_empty("host", &raw.host),
            status,
        }
    }

    fn dns(&mut self, section: &Section<RawHealth>) -> DnsCheck {
        let raw = &section.value;
        let name = match self.required(section, "query", &raw.query, "\"example.com\"") {
            Some(q) => parse_dns_name(q.get_ref()).unwrap_or_else(|message| {
                self.fail(&q.span(), "query", message);
                String::new()
            }),
            None => String::new(),
        };
        let query_type = match &raw.query_type {
            Some(t) => parse_choice(t.get_ref(), DNS_QUERY_TYPES).unwrap_or_else(|message| {
                self.fail(&t.span(), "query_type", message);
                1
            }),
            None => 1,
        };
        DnsCheck {
            name,
            query_type,
            rcodes: self.rcodes(raw),
        }
    }

    fn rcodes(&mut self, raw: &RawHealth) -> Vec<u8> {
        let Some(list) = &raw.rcodes else {
            return vec![0];
        };
        if list.get_ref().0.is_empty() {
            let message = "must name at least one RCODE, e.g. [\"NOERROR\"]".to_string();
            self.fail(&list.span(), "rcodes", message);
        }
        let mut codes = Vec::new();
        for (i, item) in list.get_ref().0.iter().enumerate() {
            match parse_choice(item.get_ref(), DNS_RCODES) {
                Ok(code) => codes.push(code),
                Err(message) => {
                    let path = super::paths::indexed(self.path, "rcodes", i);
                    self.report.at(&item.span(), &path, message);
                }
            }
        }
        codes
    }

    fn agent_port(&mut self, section: &Section<RawHealth>) -> u16 {
        let field: &Field<Int> = &section.value.agent_port;
        if self
            .required(section, "agent_port", field, "9999")
            .is_none()
        {
            return 0;
        }
        let port = self.int("agent_port", field, 1..=65535, 0);
        u16::try_from(port).unwrap_or(0)
    }

    /// `role`: whether the stronger role is required.
    fn role(&mut self, field: &Field<String>, roles: &[(&str, bool)]) -> bool {
        self.choice("role", field, roles, false).unwrap_or(false)
    }

    /// A text key that, when written, must not be empty.
    fn non_empty(&mut self, key: &str, field: &Field<String>) -> Option<String> {
        let value = field.as_ref()?;
        if value.get_ref().is_empty() {
            let message = "must not be empty; remove it to use the default".to_string();
            self.fail(&value.span(), key, message);
            return None;
        }
        Some(value.get_ref().clone())
    }
}
