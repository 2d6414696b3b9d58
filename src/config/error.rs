//! The public error types of configuration loading: one [`ConfigError`] per
//! problem, and [`ConfigErrors`], every problem found in one file.
//!
//! This file owns only the types and how they print. Turning byte offsets into
//! lines and columns, and collecting errors, is `report.rs`'s job.

use std::fmt;
use std::path::Path;

/// How many errors are printed before the rest are only counted: past a
/// screenful, more lines help no one find the first mistake.
pub const SHOWN_ERRORS: usize = 100;

/// One problem in a configuration file, pinned to where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file as the user named it.
    pub file: String,
    /// 1-based line of the offending value, when known.
    pub line: Option<usize>,
    /// 1-based column (in characters) of the offending value, when known.
    pub column: Option<usize>,
    /// Where in the configuration, e.g. `service "pg".backend[2].weight`;
    /// empty for problems that belong to no key (I/O, syntax).
    pub key_path: String,
    /// What is wrong and what is expected.
    pub message: String,
}

impl fmt::Display for ConfigError {
    /// `{file}:{line}:{col}: {key_path}: {message}`, leaving out the parts
    /// that are unknown or empty.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        f.write_str(": ")?;
        if !self.key_path.is_empty() {
            write!(f, "{}: ", self.key_path)?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Every problem found in one configuration file (never empty when returned
/// as an error by `load` or `parse`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// One error about the file as a whole (it cannot be read, ...).
    pub fn about_file(file: &Path, message: String) -> ConfigErrors {
        ConfigErrors(vec![ConfigError {
            file: file.display().to_string(),
            line: None,
            column: None,
            key_path: String::new(),
            message,
        }])
    }

    /// The first `limit` errors, one line each, then `… and N more errors`
    /// when some were left out.
    pub fn capped_lines(&self, limit: usize) -> Vec<String> {
        let mut lines: Vec<String> = self.0.iter().take(limit).map(|e| e.to_string()).collect();
        let more = self.0.len().saturating_sub(limit);
        if more > 0 {
            let plural = if more == 1 { "" } else { "s" };
            lines.push(format!("… and {more} more error{plural}"));
        }
        lines
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.0.iter()
    }
}

impl fmt::Display for ConfigErrors {
    /// One error per line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl<'a> IntoIterator for &'a ConfigErrors {
    type Item = &'a ConfigError;
    type IntoIter = std::slice::Iter<'a, ConfigError>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl IntoIterator for ConfigErrors {
    type Item = ConfigError;
    type IntoIter = std::vec::IntoIter<ConfigError>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(line: Option<usize>, column: Option<usize>, key_path: &str) -> ConfigError {
        ConfigError {
            file: "lb.toml".to_string(),
            line,
            column,
            key_path: key_path.to_string(),
            message: "must be between 1 and 1000, got 0".to_string(),
        }
    }

    #[test]
    fn display_has_every_part_when_known() {
        let e = error(Some(14), Some(11), "service \"pg\".backend[2].weight");
        assert_eq!(
            e.to_string(),
            "lb.toml:14:11: service \"pg\".backend[2].weight: must be between 1 and 1000, got 0"
        );
    }

    #[test]
    fn display_drops_unknown_position_and_empty_key_path() {
        assert_eq!(
            error(None, None, "").to_string(),
            "lb.toml: must be between 1 and 1000, got 0"
        );
        assert_eq!(
            error(Some(3), None, "global").to_string(),
            "lb.toml:3: global: must be between 1 and 1000, got 0"
        );
    }

    #[test]
    fn errors_print_one_per_line() {
        let errors = ConfigErrors(vec![error(Some(1), Some(2), "a"), error(None, None, "b")]);
        assert_eq!(errors.len(), 2);
        assert!(!errors.is_empty());
        assert_eq!(
            errors.to_string(),
            "lb.toml:1:2: a: must be between 1 and 1000, got 0\n\
             lb.toml: b: must be between 1 and 1000, got 0"
        );
        assert_eq!(errors.iter().count(), 2);
    }

    #[test]
    fn capped_lines_count_what_they_leave_out() {
        let errors = ConfigErrors((0..5).map(|i| error(Some(i), None, "a")).collect());
        let lines = errors.capped_lines(3);
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[2], "lb.toml:2: a: must be between 1 and 1000, got 0");
        assert_eq!(lines[3], "… and 2 more errors");
        assert_eq!(errors.capped_lines(4)[4], "… and 1 more error");
        assert_eq!(errors.capped_lines(5).len(), 5);
    }
}
