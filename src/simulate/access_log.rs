//! Reads an l4lb JSON access log (`l4lb --log-format json run ...`) into the
//! sessions a replay feeds the simulator.
//!
//! A session's line (`"message":"session closed"`, or `"udp flow closed"`) is
//! written when it ends, so its start is `timestamp - duration_ms`; `client`
//! gives the source address a hashing strategy hashes, and `backend` the
//! backend it was recorded on (to compare with the simulated one). Other log
//! lines, and sessions of other services, are skipped; a line that is not JSON,
//! or an access line without one of these fields, is an error naming its line.
//! Pure: the text is passed in.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use serde_json::Value;

/// One recorded session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedSession {
    /// When it started, from the first recorded start.
    pub start: Duration,
    pub client: SocketAddr,
    pub duration: Duration,
    /// The backend it ran on, as the log names it.
    pub backend: String,
}

/// The sessions of `service` in `text` (the log file `file`), by start time.
pub fn parse(text: &str, file: &str, service: &str) -> Result<Vec<RecordedSession>, String> {
    let mut sessions = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = |what: String| format!("{file}:{}: {what}", i + 1);
        let value: Value =
            serde_json::from_str(line).map_err(|e| at(format!("not a JSON log line ({e})")))?;
        let message = value.get("message").and_then(Value::as_str);
        if !matches!(message, Some("session closed" | "udp flow closed")) {
            continue;
        }
        if value.get("service").and_then(Value::as_str) != Some(service) {
            continue;
        }
        sessions.push(read_session(&value).map_err(at)?);
    }
    let first = sessions.iter().map(|s| s.1).min();
    let mut sessions: Vec<RecordedSession> = sessions
        .into_iter()
        .map(|(mut session, started)| {
            session.start = first.map_or(Duration::ZERO, |f| {
                started.duration_since(f).unwrap_or(Duration::ZERO)
            });
            session
        })
        .collect();
    sessions.sort_by_key(|s| s.start);
    Ok(sessions)
}

/// One access line's session and its absolute start.
fn read_session(value: &Value) -> Result<(RecordedSession, SystemTime), String> {
    let text = |key: &str| {
        value
            .get(key)
            .and_then(Value::as_str)
            .ok_or_else(|| format!("access line without a \"{key}\" string"))
    };
    let ended = text("timestamp")?;
    let ended = humantime::parse_rfc3339_weak(ended)
        .map_err(|e| format!("timestamp \"{ended}\" is not RFC 3339 ({e})"))?;
    let client = text("client")?;
    let client: SocketAddr = client
        .parse()
        .map_err(|_| format!("client \"{client}\" is not an IP:port address"))?;
    let millis = value
        .get("duration_ms")
        .and_then(Value::as_f64)
        .filter(|ms| ms.is_finite() && *ms >= 0.0)
        .ok_or("access line without a \"duration_ms\" number")?;
    let duration = Duration::from_secs_f64(millis / 1000.0);
    let started = ended.checked_sub(duration).unwrap_or(ended);
    let session = RecordedSession {
        start: Duration::ZERO,
        client,
        duration,
        backend: text("backend")?.to_string(),
    };
    Ok((session, started))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(ts: &str, client: &str, backend: &str, ms: f64) -> String {
        format!(
            "{{\"timestamp\":\"{ts}\",\"level\":\"INFO\",\"message\":\"session closed\",\
             \"service\":\"web\",\"client\":\"{client}\",\"backend\":\"{backend}\",\
             \"bytes_up\":1,\"bytes_down\":2,\"duration_ms\":{ms},\"end\":\"client_closed\",\
             \"target\":\"l4lb::access\"}}"
        )
    }

    #[test]
    fn sessions_start_at_their_end_less_their_duration_in_order() {
        let text = [
            line("2026-01-01T00:00:02.000000Z", "192.0.2.1:4000", "a", 1500.0),
            "{\"timestamp\":\"2026-01-01T00:00:00Z\",\"message\":\"l4lb started\"}".to_string(),
            line("2026-01-01T00:00:01.000000Z", "192.0.2.2:4001", "b", 250.5),
            line("2026-01-01T00:00:09Z", "192.0.2.3:1", "a", 0.0).replace("\"web\"", "\"other\""),
        ]
        .join("\n");
        let sessions = parse(&text, "log", "web").unwrap();
        assert_eq!(sessions.len(), 2);
        // a: ended at 2s after 1.5s, so started at 0.5s; b: 1s - 0.2505s = 0.7495s.
        assert_eq!(sessions[0].client, "192.0.2.1:4000".parse().unwrap());
        assert_eq!(sessions[0].start, Duration::ZERO);
        assert_eq!(sessions[0].backend, "a");
        assert_eq!(sessions[0].duration, Duration::from_millis(1500));
        assert_eq!(sessions[1].backend, "b");
        assert_eq!(sessions[1].start, Duration::from_micros(249_500));
    }

    #[test]
    fn bad_lines_are_named() {
        let error = parse("\nnot json\n", "log", "web").unwrap_err();
        assert!(error.starts_with("log:2: not a JSON log line"), "{error}");
        let text = line("2026-01-01T00:00:02Z", "nowhere", "a", 1.0);
        let error = parse(&text, "log", "web").unwrap_err();
        assert!(error.contains("log:1: client \"nowhere\""), "{error}");
        let text = line("yesterday", "192.0.2.1:1", "a", 1.0);
        assert!(parse(&text, "log", "web").unwrap_err().contains("RFC 3339"));
    }
}
