//! `/status` as terminal text: a heading for the process, then per service a
//! line and a table of its backends. Pure: a JSON document in, text out (with
//! ANSI colour on the state column only when asked for).
//!
//! Reads the document loosely (a missing field shows as `-`), so an l4lb of
//! another version still prints. Does not fetch anything.

use serde_json::Value;

const HEADINGS: [&str; 9] = [
    "BACKEND",
    "STATE",
    "WEIGHT",
    "ACTIVE",
    "TOTAL",
    "FAILS",
    "BYTES UP/DOWN",
    "EJECTIONS",
    "HEALTH",
];
/// The columns aligned to the right (numbers).
const NUMERIC: [bool; 9] = [false, false, true, true, true, true, true, true, false];

/// The whole `/status` document as text.
pub fn render(status: &Value, colour: bool) -> String {
    let mut out = format!(
        "l4lb {} · up {} · configuration generation {}{}\n",
        text(status, "version"),
        duration(
            status
                .get("uptime_seconds")
                .and_then(Value::as_f64)
                .unwrap_or(0.0)
        ),
        text(status, "config_generation"),
        if status.get("draining").and_then(Value::as_bool) == Some(true) {
            " · DRAINING"
        } else {
            ""
        }
    );
    for service in list(status, "services") {
        out.push('\n');
        out.push_str(&service_heading(service));
        out.push_str(&backend_table(list(service, "backends"), colour));
    }
    out
}

fn service_heading(service: &Value) -> String {
    let backends = list(service, "backends");
    let up = backends.iter().filter(|b| text(b, "state") == "up").count();
    let protocol = text(service, "protocol");
    let load = match protocol.as_str() {
        "udp" => format!("{} udp flows", text(service, "udp_flows")),
        _ => format!("{} active connections", text(service, "active_connections")),
    };
    let listen: Vec<String> = list(service, "listen").iter().map(plain).collect();
    format!(
        "service {} · {protocol} {} · {} · {load} · {up}/{} backends up\n",
        text(service, "name"),
        listen.join(", "),
        text(service, "strategy"),
        backends.len()
    )
}

fn backend_table(backends: &[Value], colour: bool) -> String {
    let rows: Vec<[String; 9]> = backends.iter().map(backend_cells).collect();
    let mut widths = HEADINGS.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = line(&HEADINGS.map(String::from), &widths, None);
    for (row, backend) in rows.iter().zip(backends) {
        let state = colour.then(|| text(backend, "state"));
        out.push_str(&line(row, &widths, state.as_deref()));
    }
    out
}

/// One aligned line, indented by two; the state cell coloured for `state`.
fn line(cells: &[String; 9], widths: &[usize; 9], state: Option<&str>) -> String {
    let mut out = String::from(" ");
    for (i, cell) in cells.iter().enumerate() {
        let pad = " ".repeat(widths[i].saturating_sub(cell.chars().count()));
        let cell = match (i, state) {
            (1, Some(state)) => format!("\x1b[{}m{cell}\x1b[0m", ansi(state)),
            _ => cell.clone(),
        };
        out.push(' ');
        match (i == cells.len() - 1, NUMERIC[i]) {
            (true, _) => out.push_str(&cell),
            (false, true) => out.push_str(&format!("{pad}{cell} ")),
            (false, false) => out.push_str(&format!("{cell}{pad} ")),
        }
    }
    out.truncate(out.trim_end().len());
    out.push('\n');
    out
}

fn ansi(state: &str) -> &'static str {
    match state {
        "up" => "32",
        "down" => "31",
        "draining" => "33",
        _ => "90",
    }
}

fn backend_cells(backend: &Value) -> [String; 9] {
    let mut address = text(backend, "address");
    if backend.get("backup").and_then(Value::as_bool) == Some(true) {
        address.push_str(" (backup)");
    }
    let mut ejections = text(backend, "ejections");
    if let Some(left) = backend.get("ejected_until").and_then(Value::as_f64) {
        ejections.push_str(&format!(" (ejected, {left:.1}s left)"));
    }
    [
        address,
        text(backend, "state"),
        text(backend, "weight"),
        text(backend, "active_connections"),
        text(backend, "total_connections"),
        text(backend, "connect_failures"),
        format!(
            "{}/{}",
            bytes(backend.get("bytes_upstream")),
            bytes(backend.get("bytes_downstream"))
        ),
        ejections,
        health(backend.get("health")),
    ]
}

/// The health record in a few words: the last result and why it failed, and
/// the counts of probes and transitions.
fn health(record: Option<&Value>) -> String {
    let Some(h) = record.filter(|h| h.is_object()) else {
        return "no active checks".into();
    };
    let last = match h.get("last_result").and_then(Value::as_str) {
        Some(result) => result.to_string(),
        None => "not probed yet".into(),
    };
    let error = match h.get("last_error").and_then(Value::as_str) {
        Some(e) => format!(": {e}"),
        None => String::new(),
    };
    format!(
        "{last}{error} ({} passed, {} failed, {} timed out; marked up {}, down {})",
        text(h, "checks_passed"),
        text(h, "checks_failed"),
        text(h, "checks_timed_out"),
        text(h, "times_marked_up"),
        text(h, "times_marked_down")
    )
}

fn list<'a>(value: &'a Value, key: &str) -> &'a [Value] {
    value
        .get(key)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// A field as text (`-` when absent or null).
fn text(value: &Value, key: &str) -> String {
    value.get(key).map_or_else(|| "-".into(), plain)
}

fn plain(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn bytes(value: Option<&Value>) -> String {
    let Some(mut n) = value.and_then(Value::as_f64) else {
        return "-".into();
    };
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut unit = 0;
    while n >= 1024.0 && unit < units.len() - 1 {
        n /= 1024.0;
        unit += 1;
    }
    match unit {
        0 => format!("{n:.0} B"),
        _ => format!("{n:.1} {}", units[unit]),
    }
}

fn duration(seconds: f64) -> String {
    let s = seconds.max(0.0) as u64;
    match (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60) {
        (0, 0, 0, secs) => format!("{secs}s"),
        (0, 0, m, secs) => format!("{m}m {secs}s"),
        (0, h, m, _) => format!("{h}h {m}m"),
        (d, h, _, _) => format!("{d}d {h}h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Value {
        serde_json::json!({
            "version": "0.1.0", "uptime_seconds": 3725.2, "config_generation": 2, "draining": false,
            "services": [{
                "name": "pg", "protocol": "tcp", "listen": ["127.0.0.1:6432"], "strategy": "round_robin",
                "active_connections": 1, "udp_flows": 0,
                "backends": [
                    {"address": "127.0.0.1:5432", "state": "up", "weight": 1, "backup": false,
                     "active_connections": 1, "total_connections": 10, "connect_failures": 0,
                     "bytes_upstream": 2048, "bytes_downstream": 10, "ejections": 0, "ejected": false,
                     "ejected_until": null, "health": {"last_result": "success", "last_error": null,
                     "checks_passed": 7, "checks_failed": 0, "checks_timed_out": 0,
                     "times_marked_up": 0, "times_marked_down": 0}},
                    {"address": "127.0.0.1:5433", "state": "down", "weight": 20, "backup": true,
                     "active_connections": 0, "total_connections": 0, "connect_failures": 3,
                     "ejections": 1, "ejected": true, "ejected_until": 12.5, "health": null}
                ]
            }]
        })
    }

    #[test]
    fn a_table_per_service_with_aligned_columns() {
        let text = render(&sample(), false);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "l4lb 0.1.0 · up 1h 2m · configuration generation 2"
        );
        assert_eq!(
            lines[2],
            "service pg · tcp 127.0.0.1:6432 · round_robin · 1 active connections · 1/2 backends up"
        );
        assert!(lines[3].starts_with("  BACKEND "), "{}", lines[3]);
        assert!(lines[4].contains("127.0.0.1:5432  "), "{}", lines[4]);
        assert!(lines[4].contains("2.0 KiB/10 B"), "{}", lines[4]);
        assert!(
            lines[4].ends_with("success (7 passed, 0 failed, 0 timed out; marked up 0, down 0)")
        );
        assert!(lines[5].contains("127.0.0.1:5433 (backup)"), "{}", lines[5]);
        assert!(lines[5].contains("1 (ejected, 12.5s left)"), "{}", lines[5]);
        assert!(lines[5].ends_with("no active checks"), "{}", lines[5]);
        let state_column = lines[3].find("STATE").expect("heading");
        assert_eq!(lines[4].find("up ").expect("state"), state_column);
        assert_eq!(lines[5].find("down ").expect("state"), state_column);
        assert!(!text.contains('\x1b'));
    }

    #[test]
    fn colour_marks_the_state_only() {
        let text = render(&sample(), true);
        assert!(text.contains("\x1b[32mup\x1b[0m"), "{text}");
        assert!(text.contains("\x1b[31mdown\x1b[0m"), "{text}");
        assert_eq!(text.matches('\x1b').count(), 4);
    }

    #[test]
    fn missing_fields_show_as_dashes() {
        let text = render(
            &serde_json::json!({"services": [{"backends": [{}]}]}),
            false,
        );
        assert!(text.starts_with("l4lb - · up 0s"), "{text}");
        assert!(text.contains("-/-"), "{text}");
    }
}
