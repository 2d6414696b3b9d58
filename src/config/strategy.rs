//! The `strategy` of a service and the keys that belong to particular
//! strategies (`hash_key`, `hash_version`, `virtual_nodes`, `table_size`).
//!
//! This file owns the rules tying those keys together. Checking single values
//! is `values.rs`; the other service keys are `validate.rs`.

use super::checker::Checker;
use super::file::{Field, Int, RawRoute, RawService};
use super::model::{HashKey, HashVersion, StrategyConfig, StrategyKind};
use super::values::{as_u32, check_table_size};

const HASH_KEYS: &[(&str, HashKey)] = &[
    ("source_ip", HashKey::SourceIp),
    ("source_ip_port", HashKey::SourceIpPort),
    ("sni", HashKey::Sni),
];

/// The keys that choose a strategy, in a `[[service]]` or a `[[service.route]]`.
pub struct StrategyKeys<'r> {
    pub strategy: &'r Field<String>,
    pub hash_key: &'r Field<String>,
    pub virtual_nodes: &'r Field<Int>,
    pub table_size: &'r Field<Int>,
    pub hash_version: &'r Field<Int>,
}

impl<'r> From<&'r RawService> for StrategyKeys<'r> {
    fn from(raw: &'r RawService) -> Self {
        StrategyKeys {
            strategy: &raw.strategy,
            hash_key: &raw.hash_key,
            virtual_nodes: &raw.virtual_nodes,
            table_size: &raw.table_size,
            hash_version: &raw.hash_version,
        }
    }
}

impl<'r> From<&'r RawRoute> for StrategyKeys<'r> {
    fn from(raw: &'r RawRoute) -> Self {
        StrategyKeys {
            strategy: &raw.strategy,
            hash_key: &raw.hash_key,
            virtual_nodes: &raw.virtual_nodes,
            table_size: &raw.table_size,
            hash_version: &raw.hash_version,
        }
    }
}

impl StrategyKeys<'_> {
    /// Whether any of the keys is written.
    pub fn any_written(&self) -> bool {
        self.strategy.is_some()
            || self.hash_key.is_some()
            || self.virtual_nodes.is_some()
            || self.table_size.is_some()
            || self.hash_version.is_some()
    }
}

impl Checker<'_, '_> {
    /// The strategy and its parameters, reporting keys the strategy does not use.
    pub fn strategy(&mut self, raw: &StrategyKeys, backends: usize) -> StrategyConfig {
        let defaults = StrategyConfig::default();
        let choices = StrategyKind::ALL.map(|k| (k.as_str(), k));
        let kind = self.choice("strategy", raw.strategy, &choices, defaults.kind);
        let hash_key = self.choice("hash_key", raw.hash_key, HASH_KEYS, defaults.hash_key);
        let virtual_nodes = self.int("virtual_nodes", raw.virtual_nodes, 1..=1000, 160);
        let hash_version = self.hash_version(raw);
        let mut table_size = defaults.table_size;
        if let Some(kind) = kind {
            let applies = StrategyApplies {
                kind,
                named: raw.strategy.is_some(),
            };
            self.only_for(&applies, "hash_key", raw.hash_key, StrategyKind::is_hashing);
            self.only_for(
                &applies,
                "hash_version",
                raw.hash_version,
                StrategyKind::is_hashing,
            );
            self.only_for(&applies, "virtual_nodes", raw.virtual_nodes, |k| {
                k == StrategyKind::ConsistentHash
            });
            self.only_for(&applies, "table_size", raw.table_size, |k| {
                k == StrategyKind::Maglev
            });
            if kind == StrategyKind::Maglev {
                table_size = self.table_size(raw, backends);
            }
        }
        StrategyConfig {
            kind: kind.unwrap_or(defaults.kind),
            hash_key: hash_key.unwrap_or(defaults.hash_key),
            virtual_nodes: as_u32(virtual_nodes),
            table_size,
            hash_version,
        }
    }

    /// `hash_version`: one this l4lb knows, the default (1) when absent.
    fn hash_version(&mut self, raw: &StrategyKeys) -> HashVersion {
        let default = StrategyConfig::default().hash_version;
        let Some(value) = raw.hash_version else {
            return default;
        };
        let number = value.get_ref().0;
        HashVersion::from_number(number).unwrap_or_else(|| {
            let known: Vec<String> = HashVersion::ALL.map(|v| v.number().to_string()).into();
            let message = format!(
                "unknown hash version {number}; this l4lb knows {} (the client-to-backend \
                 mapping of each is frozen)",
                known.join(", ")
            );
            self.fail(&value.span(), "hash_version", message);
            default
        })
    }

    /// Reports `key` set although the service's strategy does not use it.
    fn only_for<T>(
        &mut self,
        strategy: &StrategyApplies,
        key: &str,
        field: &Field<T>,
        used_by: fn(StrategyKind) -> bool,
    ) {
        let Some(value) = field else {
            return;
        };
        if used_by(strategy.kind) {
            return;
        }
        let users: Vec<String> = StrategyKind::ALL
            .into_iter()
            .filter(|&k| used_by(k))
            .map(|k| format!("\"{k}\""))
            .collect();
        let plural = if users.len() == 1 { "y" } else { "ies" };
        let message = format!(
            "only applies to strateg{plural} {}, but strategy is {}",
            users.join(", "),
            strategy.describe()
        );
        self.fail(&value.span(), key, message);
    }

    fn table_size(&mut self, raw: &StrategyKeys, backends: usize) -> usize {
        let default = StrategyConfig::default().table_size;
        match (raw.table_size, raw.strategy) {
            (Some(value), _) => {
                check_table_size(value.get_ref().0, backends).unwrap_or_else(|message| {
                    self.fail(&value.span(), "table_size", message);
                    default
                })
            }
            (None, Some(strategy)) if backends > default => {
                let message = format!(
                    "the default table_size ({default}) is smaller than the number of \
                     backends ({backends}); set table_size to a prime at least that large"
                );
                self.fail(&strategy.span(), "table_size", message);
                default
            }
            (None, _) => default,
        }
    }
}

/// The service's strategy, for messages about keys it does not use.
struct StrategyApplies {
    kind: StrategyKind,
    /// Whether `strategy` was written (else it is the default).
    named: bool,
}

impl StrategyApplies {
    fn describe(&self) -> String {
        let default = if self.named { "" } else { " (the default)" };
        format!("\"{}\"{default}", self.kind)
    }
}
