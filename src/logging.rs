//! Logging setup: the filter from `--log-level` or `RUST_LOG`, checked before
//! anything is logged, colour only where a person reads the lines, and the
//! target: stderr (the default) or syslog (`syslog`).
//!
//! This file owns turning the command line and the environment into a global
//! `tracing` subscriber. It does not decide what is logged where.

pub mod syslog;

use std::ffi::OsStr;
use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::cli::{LogFormat, LogTarget};

/// The filter used when neither `--log-level` nor `RUST_LOG` is given.
const DEFAULT_FILTER: &str = "info";

/// Level names a filter may use (case-insensitive); `warning` means `warn`.
const LEVELS: &[&str] = &["off", "error", "warn", "info", "debug", "trace"];

const EXPECTED: &str = "expected a level (off, error, warn or warning, info, debug, trace) \
                        or a filter such as \"info,l4lb::access=warn\"";

/// Installs the global subscriber writing to `target`. `Err` says what is
/// wrong with the filter or the target (or that a subscriber is already installed).
pub fn init(format: LogFormat, level: Option<&str>, target: LogTarget) -> Result<(), String> {
    let filter = chosen_filter(level)?;
    let installed = match target {
        LogTarget::Stderr => {
            let no_color = std::env::var_os("NO_COLOR");
            let ansi = use_colour(std::io::stderr().is_terminal(), no_color.as_deref());
            let builder = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_ansi(ansi)
                .with_writer(std::io::stderr);
            match format {
                LogFormat::Text => builder.try_init(),
                LogFormat::Json => builder.json().flatten_event(true).try_init(),
            }
        }
        LogTarget::Syslog => {
            // syslog stamps each line itself, so the time is left out of the text ones.
            let builder = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_ansi(false)
                .with_writer(syslog::SyslogWriter::connect()?);
            match format {
                LogFormat::Text => builder.without_time().try_init(),
                LogFormat::Json => builder.json().flatten_event(true).try_init(),
            }
        }
    };
    installed.map_err(|e| format!("cannot set up logging: {e}"))
}

/// The filter from `--log-level`, else `RUST_LOG`, else `info`.
fn chosen_filter(level: Option<&str>) -> Result<EnvFilter, String> {
    if let Some(level) = level {
        return parse_filter(level).map_err(|e| format!("--log-level \"{level}\": {e}"));
    }
    match std::env::var("RUST_LOG") {
        Ok(text) if !text.trim().is_empty() => {
            parse_filter(&text).map_err(|e| format!("RUST_LOG=\"{text}\": {e}"))
        }
        Ok(_) | Err(std::env::VarError::NotPresent) => parse_filter(DEFAULT_FILTER),
        Err(std::env::VarError::NotUnicode(_)) => {
            Err(format!("RUST_LOG is not valid UTF-8; {EXPECTED}"))
        }
    }
}

/// A checked filter: comma-separated directives, each a level or
/// `target=level`. A bare word that is not a level is refused (tracing would
/// read it as a target name and silence everything else).
pub fn parse_filter(text: &str) -> Result<EnvFilter, String> {
    let directives = text
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(normalize_directive)
        .collect::<Result<Vec<_>, _>>()?;
    if directives.is_empty() {
        return Err(format!("no directive given; {EXPECTED}"));
    }
    EnvFilter::builder()
        .parse(directives.join(","))
        .map_err(|e| format!("{e}; {EXPECTED}"))
}

/// One directive with its level checked and `warning` spelled `warn`.
fn normalize_directive(directive: &str) -> Result<String, String> {
    let (target, level) = match directive.rsplit_once('=') {
        Some((target, level)) => (Some(target), level),
        None => (None, directive),
    };
    let level = level.trim().to_ascii_lowercase();
    let level = if level == "warning" {
        "warn".to_string()
    } else {
        level
    };
    if !LEVELS.contains(&level.as_str()) {
        let what = match target {
            Some(target) => format!("\"{directive}\": \"{level}\" is not a log level for {target}"),
            None => format!("\"{directive}\" is not a log level"),
        };
        return Err(format!("{what}; {EXPECTED}"));
    }
    Ok(match target {
        Some(target) => format!("{}={level}", target.trim()),
        None => level,
    })
}

/// Colour (ANSI escapes) only on a terminal, and never when `NO_COLOR` is set
/// to anything but the empty string (<https://no-color.org>).
pub fn use_colour(stderr_is_terminal: bool, no_color: Option<&OsStr>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(text: &str) -> Result<String, String> {
        parse_filter(text).map(|f| f.to_string())
    }

    #[test]
    fn levels_and_targets_are_accepted() {
        assert_eq!(filter("debug").as_deref(), Ok("debug"));
        assert_eq!(filter("INFO").as_deref(), Ok("info"));
        assert_eq!(filter("warning").as_deref(), Ok("warn"));
        assert!(filter("info,l4lb::access=warn").is_ok());
        assert!(filter("l4lb=Warning").is_ok_and(|f| f.contains("l4lb=warn")));
        assert!(filter(" info , l4lb=debug ").is_ok());
    }

    #[test]
    fn a_misspelt_level_is_an_error_saying_what_is_accepted() {
        let message = filter("inof").unwrap_err();
        assert!(message.starts_with("\"inof\" is not a log level; expected a level (off, error, warn or warning, info, debug, trace)"), "{message}");
        let message = filter("info,l4lb=verbose").unwrap_err();
        assert!(
            message.starts_with("\"l4lb=verbose\": \"verbose\" is not a log level for l4lb"),
            "{message}"
        );
        assert!(filter("").is_err());
        assert!(filter(" , ").is_err());
        assert!(filter("=info").is_err());
    }

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(use_colour(true, None));
        assert!(use_colour(true, Some(OsStr::new(""))));
        assert!(!use_colour(true, Some(OsStr::new("1"))));
        assert!(!use_colour(false, None));
    }
}
