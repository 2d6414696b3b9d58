//! Key paths: how error messages name a place in the configuration, e.g.
//! `service "pg".backend[2].weight`.
//!
//! This file owns the spelling of key paths and the service-name rule they
//! depend on. It does not report errors.

use std::collections::HashSet;

/// Longest service name allowed.
pub const MAX_SERVICE_NAME_LEN: usize = 64;

/// `parent.key`, or just `key` at the top level.
pub fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// `parent.key[index]`.
pub fn indexed(parent: &str, key: &str, index: usize) -> String {
    format!("{}[{index}]", join(parent, key))
}

/// Whether `name` matches `[A-Za-z0-9_.-]{1,64}`.
pub fn is_valid_service_name(name: &str) -> bool {
    (1..=MAX_SERVICE_NAME_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// The path of each `[[service]]`: `service "NAME"` when its name is valid and
/// not taken by an earlier service, else `service[i]`.
pub fn service_labels(names: &[Option<&str>]) -> Vec<String> {
    let mut seen = HashSet::new();
    names
        .iter()
        .enumerate()
        .map(|(i, name)| match name {
            Some(name) if is_valid_service_name(name) && seen.insert(*name) => {
                format!("service \"{name}\"")
            }
            _ => format!("service[{i}]"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_paths() {
        assert_eq!(join("", "global"), "global");
        assert_eq!(join("global", "workers"), "global.workers");
        assert_eq!(
            indexed("service \"a\"", "backend", 2),
            "service \"a\".backend[2]"
        );
    }

    #[test]
    fn service_names() {
        assert!(is_valid_service_name("pg-main_1.v2"));
        assert!(is_valid_service_name(&"a".repeat(64)));
        assert!(!is_valid_service_name(&"a".repeat(65)));
        assert!(!is_valid_service_name(""));
        assert!(!is_valid_service_name("a b"));
        assert!(!is_valid_service_name("pé"));
    }

    #[test]
    fn labels_fall_back_to_indexes_for_bad_or_repeated_names() {
        let labels = service_labels(&[Some("pg"), None, Some("a b"), Some("pg"), Some("web")]);
        assert_eq!(
            labels,
            [
                "service \"pg\"",
                "service[1]",
                "service[2]",
                "service[3]",
                "service \"web\""
            ]
        );
    }
}
