//! Checking the keys of one table: each key's value is checked, a problem is
//! reported at that key, and a stand-in is returned so checking goes on.
//!
//! This file owns the generic checks (required keys, integers, durations,
//! choices, CIDR lists, addresses). The rules of particular tables are in
//! `validate.rs` and `strategy.rs`; the value checks themselves are pure
//! functions in `values.rs` and `address.rs`.

use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::time::Duration;

use ipnet::IpNet;
use toml::Spanned;

use super::address::{Resolve, resolve_address};
use super::file::{DurationText, Field, Int, Section, StringList};
use super::paths;
use super::report::{Report, Span};
use super::values::{check_int, parse_choice, parse_cidr, parse_duration};

/// Checks the keys of one table, reporting each problem at its key.
pub struct Checker<'s, 'a> {
    pub report: &'s mut Report<'a>,
    resolve: Resolve,
    /// Key path of the table being checked.
    pub path: &'s str,
}

impl<'s, 'a> Checker<'s, 'a> {
    pub fn new(report: &'s mut Report<'a>, resolve: Resolve, path: &'s str) -> Self {
        Checker {
            report,
            resolve,
            path,
        }
    }

    /// Key path of one of the table's keys.
    pub fn key(&self, key: &str) -> String {
        paths::join(self.path, key)
    }

    /// Reports a problem with `key`'s value at `span`.
    pub fn fail(&mut self, span: &Span, key: &str, message: String) {
        let key_path = self.key(key);
        self.report.at(span, &key_path, message);
    }

    /// The value of a key that must be present, reporting it missing at the
    /// table (unless its value was already reported as unreadable).
    pub fn required<'f, T, S>(
        &mut self,
        section: &Section<S>,
        key: &str,
        field: &'f Field<T>,
        example: &str,
    ) -> Option<&'f Spanned<T>> {
        if field.is_none() && !section.broken.contains(key) {
            let message = format!("missing required key \"{key}\", e.g. {key} = {example}");
            self.report.at(&section.span, self.path, message);
        }
        field.as_ref()
    }

    /// The integer, `default` when absent or out of `range` (reported).
    pub fn int(
        &mut self,
        key: &str,
        field: &Field<Int>,
        range: RangeInclusive<i64>,
        default: i64,
    ) -> i64 {
        let Some(value) = field else {
            return default;
        };
        check_int(value.get_ref().0, &range).unwrap_or_else(|message| {
            self.fail(&value.span(), key, message);
            default
        })
    }

    /// The duration, `default` when absent, `None` when invalid (reported).
    pub fn duration(
        &mut self,
        key: &str,
        field: &Field<DurationText>,
        default: Duration,
        zero_allowed: bool,
    ) -> Option<Duration> {
        let Some(value) = field else {
            return Some(default);
        };
        parse_duration(&value.get_ref().0, zero_allowed)
            .map_err(|message| self.fail(&value.span(), key, message))
            .ok()
    }

    /// A duration that must be greater than zero, `default` when absent or
    /// invalid (reported).
    pub fn positive_duration(
        &mut self,
        key: &str,
        field: &Field<DurationText>,
        default: Duration,
    ) -> Duration {
        self.duration(key, field, default, false).unwrap_or(default)
    }

    /// The named choice, `default` when absent, `None` when invalid (reported).
    pub fn choice<T: Copy>(
        &mut self,
        key: &str,
        field: &Field<String>,
        choices: &[(&str, T)],
        default: T,
    ) -> Option<T> {
        let Some(value) = field else {
            return Some(default);
        };
        parse_choice(value.get_ref(), choices)
            .map_err(|message| self.fail(&value.span(), key, message))
            .ok()
    }

    /// Every entry of a CIDR list that parses, reporting the others.
    pub fn cidrs(&mut self, key: &str, field: &Field<StringList>) -> Vec<IpNet> {
        let Some(list) = field else {
            return Vec::new();
        };
        let mut nets = Vec::new();
        for (i, item) in list.get_ref().0.iter().enumerate() {
            match parse_cidr(item.get_ref()) {
                Ok(net) => nets.push(net),
                Err(message) => {
                    let key_path = paths::indexed(self.path, key, i);
                    self.report.at(&item.span(), &key_path, message);
                }
            }
        }
        nets
    }

    /// The address `text` resolves to, reporting why when it does not.
    pub fn address(&mut self, key_path: &str, text: &Spanned<String>) -> Option<SocketAddr> {
        resolve_address(text.get_ref(), self.resolve)
            .map_err(|message| self.report.at(&text.span(), key_path, message))
            .ok()
    }
}

/// A boolean key, false when absent.
pub fn flag(field: &Field<bool>) -> bool {
    field.as_ref().is_some_and(|f| *f.get_ref())
}

/// A string key, `default` when absent.
pub fn text(field: &Field<String>, default: &str) -> String {
    field.as_ref().map_or(default, |f| f.get_ref()).to_string()
}
