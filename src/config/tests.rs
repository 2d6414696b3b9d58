//! End-to-end tests of the configuration pipeline: text in, `Config` or the
//! exact error lines out. Helpers shared by the test files under `tests/`.
//!
//! Tests here use only literal IPs, `localhost` and `nonexistent.invalid`, so
//! they never depend on real DNS.

mod defaults;
mod features;
mod messages;
mod mistakes;
mod properties;
mod routes;
mod source_keys;
mod structure;
mod udp_keys;

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use super::*;

/// Joins lines into a file, so a test's line numbers are the slice indexes + 1.
fn lines(lines: &[&str]) -> String {
    let mut text = lines.join("\n");
    text.push('\n');
    text
}

/// A valid tcp service "pg" (lines 1-3), then `extra` from line 4, then one
/// backend `127.0.0.1:5432`.
fn service_with(extra: &[&str]) -> String {
    let mut all = vec!["[[service]]", "name = \"pg\"", "listen = \"127.0.0.1:0\""];
    all.extend_from_slice(extra);
    all.extend_from_slice(&["[[service.backend]]", "address = \"127.0.0.1:5432\""]);
    lines(&all)
}

/// A udp service "dns" (lines 1-4), then `extra` from line 5, then one backend.
fn udp_service_with(extra: &[&str]) -> String {
    let mut all = vec![
        "[[service]]",
        "name = \"dns\"",
        "protocol = \"udp\"",
        "listen = \"127.0.0.1:0\"",
    ];
    all.extend_from_slice(extra);
    all.extend_from_slice(&["[[service.backend]]", "address = \"127.0.0.1:1054\""]);
    lines(&all)
}

/// A valid tcp service "pg" whose one backend (lines 4-5) gets `extra` from
/// line 6.
fn backend_with(extra: &[&str]) -> String {
    let mut all = vec![
        "[[service]]",
        "name = \"pg\"",
        "listen = \"127.0.0.1:0\"",
        "[[service.backend]]",
        "address = \"127.0.0.1:5432\"",
    ];
    all.extend_from_slice(extra);
    lines(&all)
}

/// A resolver that knows only `localhost`.
fn no_dns(host: &str, port: u16) -> io::Result<Option<SocketAddr>> {
    match host {
        "localhost" => Ok(Some(SocketAddr::from(([127, 0, 0, 1], port)))),
        _ => Err(io::Error::other("no DNS in tests")),
    }
}

fn source() -> &'static Path {
    Path::new("lb.toml")
}

/// Parses as `l4lb` does.
fn check(text: &str) -> Result<Config, ConfigErrors> {
    parse(text, source())
}

fn valid(text: &str) -> Config {
    check(text).unwrap_or_else(|e| panic!("expected a valid config, got:\n{e}"))
}

fn render(errors: ConfigErrors) -> Vec<String> {
    errors.iter().map(ToString::to_string).collect()
}

/// Every error line for `text`.
fn errors(text: &str) -> Vec<String> {
    match check(text) {
        Ok(_) => panic!("expected errors, the config is valid:\n{text}"),
        Err(errors) => render(errors),
    }
}

/// The one error line for `text`.
fn error(text: &str) -> String {
    let mut all = errors(text);
    assert_eq!(all.len(), 1, "expected exactly one error, got {all:#?}");
    all.remove(0)
}

#[test]
fn the_example_lb_toml_is_valid() {
    let config = valid(include_str!("../../lb.toml"));
    let summaries: Vec<String> = config.services.iter().map(|s| s.summary()).collect();
    assert_eq!(
        summaries,
        [
            "service \"pg\": tcp 0.0.0.0:6432 -> 3 backends + 1 backup (least_connections), \
             health tcp every 2s, outlier ejection after 5 failures for 30s",
            "service \"dns\": udp 0.0.0.0:1053 -> 2 backends (maglev), health udp every 2s",
        ]
    );
}
