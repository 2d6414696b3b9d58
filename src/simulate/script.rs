//! Scripted events of a simulation: one line each, such as `at 30s kill backend 2`,
//! `at 60s restore`, `at 90s reload weight 3`. Parsing only (pure, no I/O); the
//! engine applies them.
//!
//! Grammar (`N` is a backend's position in the service, counting from 1, or its
//! address as configured):
//!
//! ```text
//! at DURATION kill backend N          the backend's process dies: connects are refused, its sessions are cut
//! at DURATION blackhole backend N     the host stops answering: connects time out, its sessions are cut
//! at DURATION restore [backend N]     a killed or blackholed backend (every one, without N) answers again
//! at DURATION reload [backend N] weight W
//! at DURATION reload [backend N] max_connections M
//! at DURATION drain|maint|ready backend N   the runtime API's actions
//! ```
//!
//! A `reload` without `backend N` changes the backend the previous event named.

use std::time::Duration;

use crate::config::values::parse_duration;

/// Which backend an event names, before it is matched to the service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendRef {
    /// Position in the service's backend list, from 1.
    Number(usize),
    /// The address as configured.
    Address(String),
}

impl std::fmt::Display for BackendRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BackendRef::Number(n) => write!(f, "{n}"),
            BackendRef::Address(a) => f.write_str(a),
        }
    }
}

/// A setting a `reload` event changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setting {
    Weight(u32),
    MaxConnections(usize),
}

/// What happens at an event's time, naming backends by `B`: a [`BackendRef`]
/// as written, or an index into the service's backends once resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action<B = BackendRef> {
    Kill(B),
    Blackhole(B),
    /// `None`: every backend that is down.
    Restore(Option<B>),
    Reload(B, Setting),
    Drain(B),
    Maint(B),
    Ready(B),
}

impl<B> Action<B> {
    /// The backend the action names, if it names one.
    pub fn target(&self) -> Option<&B> {
        match self {
            Action::Kill(b)
            | Action::Blackhole(b)
            | Action::Reload(b, _)
            | Action::Drain(b)
            | Action::Maint(b)
            | Action::Ready(b) => Some(b),
            Action::Restore(b) => b.as_ref(),
        }
    }

    /// The same action with its backend resolved by `resolve`.
    pub fn resolve<C, E>(
        &self,
        mut resolve: impl FnMut(&B) -> Result<C, E>,
    ) -> Result<Action<C>, E> {
        Ok(match self {
            Action::Kill(b) => Action::Kill(resolve(b)?),
            Action::Blackhole(b) => Action::Blackhole(resolve(b)?),
            Action::Restore(None) => Action::Restore(None),
            Action::Restore(Some(b)) => Action::Restore(Some(resolve(b)?)),
            Action::Reload(b, s) => Action::Reload(resolve(b)?, *s),
            Action::Drain(b) => Action::Drain(resolve(b)?),
            Action::Maint(b) => Action::Maint(resolve(b)?),
            Action::Ready(b) => Action::Ready(resolve(b)?),
        })
    }
}

/// One parsed event line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptedEvent<B = BackendRef> {
    pub at: Duration,
    pub action: Action<B>,
    /// The line as written, for the report.
    pub text: String,
}

/// The position (from 0) of the backend `reference` names among `addresses`.
pub fn resolve_backend(reference: &BackendRef, addresses: &[&str]) -> Result<usize, String> {
    let found = match reference {
        BackendRef::Number(n) => (*n <= addresses.len()).then(|| n - 1),
        BackendRef::Address(a) => addresses.iter().position(|x| x == a),
    };
    found.ok_or_else(|| {
        format!(
            "backend {reference}: the service has {} backends ({}); name one by its number from 1 or its address",
            addresses.len(),
            addresses.join(", ")
        )
    })
}

/// Parses one event line; `previous` is the backend the event before it named
/// (what a bare `reload` changes).
pub fn parse_event(text: &str, previous: Option<&BackendRef>) -> Result<ScriptedEvent, String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let (at, rest) = match words.as_slice() {
        ["at", at, rest @ ..] if !rest.is_empty() => (*at, rest),
        _ => {
            return Err(format!(
                "expected \"at DURATION ACTION ...\", got \"{text}\""
            ));
        }
    };
    let at = parse_duration(at, true)?;
    let action = parse_action(rest, previous)?;
    Ok(ScriptedEvent {
        at,
        action,
        text: words.join(" "),
    })
}

fn parse_action(words: &[&str], previous: Option<&BackendRef>) -> Result<Action, String> {
    match words {
        ["kill", "backend", b] => Ok(Action::Kill(backend_ref(b)?)),
        ["blackhole", "backend", b] => Ok(Action::Blackhole(backend_ref(b)?)),
        ["restore"] => Ok(Action::Restore(None)),
        ["restore", "backend", b] => Ok(Action::Restore(Some(backend_ref(b)?))),
        ["drain", "backend", b] => Ok(Action::Drain(backend_ref(b)?)),
        ["maint", "backend", b] => Ok(Action::Maint(backend_ref(b)?)),
        ["ready", "backend", b] => Ok(Action::Ready(backend_ref(b)?)),
        ["reload", "backend", b, key, value] => {
            Ok(Action::Reload(backend_ref(b)?, setting(key, value)?))
        }
        ["reload", key, value] => {
            let target = previous.cloned().ok_or_else(|| {
                "\"reload\" without \"backend N\" changes the backend the previous event \
                 named, and no event before it names one"
                    .to_string()
            })?;
            Ok(Action::Reload(target, setting(key, value)?))
        }
        _ => Err(format!(
            "unknown action \"{}\"; expected kill/blackhole/restore/drain/maint/ready backend N, \
             restore, or reload [backend N] weight W / max_connections M",
            words.join(" ")
        )),
    }
}

fn backend_ref(word: &str) -> Result<BackendRef, String> {
    if word.chars().all(|c| c.is_ascii_digit()) {
        let n: usize = word
            .parse()
            .map_err(|_| format!("backend number {word} is too large"))?;
        if n == 0 {
            return Err("backends are numbered from 1 (backend 1 is the first)".to_string());
        }
        return Ok(BackendRef::Number(n));
    }
    Ok(BackendRef::Address(word.to_string()))
}

fn setting(key: &str, value: &str) -> Result<Setting, String> {
    let number: i64 = value
        .parse()
        .map_err(|_| format!("{key}: expected a whole number, got \"{value}\""))?;
    match key {
        "weight" if (1..=1000).contains(&number) => Ok(Setting::Weight(number as u32)),
        "weight" => Err(format!("weight: must be between 1 and 1000, got {number}")),
        "max_connections" if number >= 0 => Ok(Setting::MaxConnections(number as usize)),
        "max_connections" => Err(format!("max_connections: must be 0 or more, got {number}")),
        _ => Err(format!(
            "reload can change \"weight\" or \"max_connections\", not \"{key}\""
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_lines_parse() {
        let kill = parse_event("at 30s kill backend 2", None).unwrap();
        assert_eq!(kill.at, Duration::from_secs(30));
        assert_eq!(kill.action, Action::Kill(BackendRef::Number(2)));
        let restore = parse_event("at 60s  restore", kill.action.target()).unwrap();
        assert_eq!(restore.action, Action::Restore(None));
        assert_eq!(restore.text, "at 60s restore");
        let reload = parse_event("at 90s reload weight 3", kill.action.target()).unwrap();
        assert_eq!(
            reload.action,
            Action::Reload(BackendRef::Number(2), Setting::Weight(3))
        );
        let by_address = parse_event("at 1m reload backend 10.0.0.1:80 max_connections 5", None);
        assert_eq!(
            by_address.unwrap().action,
            Action::Reload(
                BackendRef::Address("10.0.0.1:80".into()),
                Setting::MaxConnections(5)
            )
        );
    }

    #[test]
    fn backends_resolve_by_number_or_address() {
        let addresses = ["10.0.0.1:80", "10.0.0.2:80"];
        assert_eq!(resolve_backend(&BackendRef::Number(2), &addresses), Ok(1));
        let by_address = BackendRef::Address("10.0.0.1:80".into());
        assert_eq!(resolve_backend(&by_address, &addresses), Ok(0));
        let error = resolve_backend(&BackendRef::Number(3), &addresses).unwrap_err();
        assert!(
            error.contains("has 2 backends (10.0.0.1:80, 10.0.0.2:80)"),
            "{error}"
        );
    }

    #[test]
    fn mistakes_say_what_is_expected() {
        let cases = [
            ("kill backend 2", "expected \"at DURATION"),
            ("at soon kill backend 2", "invalid duration"),
            ("at 1s explode backend 2", "unknown action"),
            ("at 1s kill backend 0", "numbered from 1"),
            ("at 1s reload weight 3", "no event before it"),
            ("at 1s reload backend 1 weight 0", "between 1 and 1000"),
            ("at 1s reload backend 1 colour 3", "not \"colour\""),
        ];
        for (line, expected) in cases {
            let error = parse_event(line, None).unwrap_err();
            assert!(error.contains(expected), "{line}: {error}");
        }
    }
}
