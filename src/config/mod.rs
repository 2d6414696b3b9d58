//! The configuration of l4lb: loading `lb.toml` into a checked [`Config`].
//!
//! The pipeline is `text -> file.rs` (TOML syntax, unknown keys, value types)
//! `-> validate.rs` (defaults, ranges, addresses, cross-key rules)
//! collecting every error
//! on the way, each pinned to a file, line, column and key path. This module
//! owns that pipeline and its public entry points; it does not start anything
//! from the configuration.

mod address;
pub mod backend_source;
mod checker;
mod discover;
mod error;
mod file;
mod health_check;
mod health_keys;
mod health_rules;
mod host_lookup;
pub mod model;
mod paths;
pub(crate) mod report;
mod routes;
mod source;
mod source_rules;
mod strategy;
mod suggest;
mod validate;
pub(crate) mod values;

#[cfg(test)]
mod tests;

use std::path::Path;

pub use address::own_listener_reached;
pub use error::{ConfigError, ConfigErrors, SHOWN_ERRORS};
pub use model::*;

use address::Resolve;
use report::Report;

pub use source::MAX_CONFIG_BYTES;

/// Reads and checks the configuration file at `path`. A file that cannot be
/// read, is not a regular file or is larger than [`MAX_CONFIG_BYTES`] is one
/// error naming it. This blocks (file I/O, host-name lookups): async callers
/// run it on a blocking thread.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    match source::read_config_text(path) {
        Ok(text) => parse(&text, path),
        Err(message) => Err(ConfigErrors::about_file(path, message)),
    }
}

/// Checks configuration `text`; `source` names it in messages and becomes
/// [`Config::source`]. Host names are resolved with the asynchronous resolver
/// of `host_lookup` (on a thread of its own), never with `getaddrinfo`.
pub fn parse(text: &str, source: &Path) -> Result<Config, ConfigErrors> {
    parse_with(text, source, host_lookup::system_resolve)
}

/// Risky but valid settings worth a loud warning, one line each.
pub fn warnings(config: &Config) -> Vec<String> {
    let mut warnings = Vec::new();
    let open_admin = config
        .admin
        .as_ref()
        .filter(|a| !a.listen.ip().is_loopback() && a.token.is_empty());
    if let Some(admin) = open_admin {
        warnings.push(format!(
            "{}: admin.listen {} is not a loopback address and admin.token is empty: \
             anyone who can reach it can read the status and drain or take backends \
             out of service; set a token or listen on 127.0.0.1",
            config.source.display(),
            admin.listen
        ));
    }
    warnings
}

/// [`parse`] with the given host-name resolver.
fn parse_with(text: &str, source: &Path, resolve: Resolve) -> Result<Config, ConfigErrors> {
    let mut report = Report::new(source.display().to_string(), text);
    let Some(doc) = file::read(text, &mut report) else {
        return Err(report.into_errors());
    };
    let config = validate::validate(&doc, source, resolve, &mut report);
    report.sort_from(0);
    if report.has_errors() {
        Err(report.into_errors())
    } else {
        Ok(config)
    }
}
