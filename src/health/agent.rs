//! `kind = "agent"` (HAProxy's agent-check): connect to `agent_port` on the
//! backend's IP and read one line (at most 512 bytes, to `\n` or the close).
//! Words are separated by spaces, commas or tabs, case-insensitive:
//! `up` / `ready` pass; `down`, `fail`, `stopped`, `drain`, `maint` fail
//! (the backend takes no new clients); `N%` passes and sets the backend's
//! share of new clients to N% of its weight. Other words are ignored; a line
//! with no state and no weight fails.

use std::net::SocketAddr;

use tokio::net::TcpStream;

use super::probe::{Failed, Passed, Probe};
use super::wire::{printable, read_line};
use crate::config::AgentCheck;

const MAX_LINE: usize = 512;

impl Probe for AgentCheck {
    async fn exchange(&self, target: SocketAddr) -> Result<Passed, Failed> {
        let mut stream = TcpStream::connect(target)
            .await
            .map_err(|e| format!("agent: connect: {e}"))?;
        let line = read_line(&mut stream, MAX_LINE)
            .await
            .map_err(|e| format!("agent: read: {e}"))?;
        judge_line(&String::from_utf8_lossy(&line))
    }
}

/// What an agent's line says.
fn judge_line(line: &str) -> Result<Passed, Failed> {
    let mut weight = None;
    let mut up = None;
    for word in line.split([' ', ',', '\t']).filter(|w| !w.is_empty()) {
        let word = word.to_ascii_lowercase();
        if let Some(percent) = word.strip_suffix('%') {
            weight = percent.parse::<u32>().ok().map(|p| p.min(100));
            continue;
        }
        match word.as_str() {
            "up" | "ready" => up = Some(Ok(())),
            "down" | "fail" | "stopped" | "drain" | "maint" => up = Some(Err(word)),
            _ => {}
        }
    }
    match (up, weight) {
        (Some(Err(state)), _) => Err(format!("agent: {state}")),
        (Some(Ok(())), weight) | (None, weight @ Some(_)) => Ok(Passed { weight }),
        (None, None) => Err(format!(
            "agent: no state or weight in \"{}\"",
            printable(line.as_bytes())
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_and_weights() {
        assert_eq!(judge_line("up"), Ok(Passed { weight: None }));
        assert_eq!(judge_line("READY 75%"), Ok(Passed { weight: Some(75) }));
        assert_eq!(judge_line("50%"), Ok(Passed { weight: Some(50) }));
        assert_eq!(judge_line("drain"), Err("agent: drain".to_string()));
        assert_eq!(judge_line("75%,maint"), Err("agent: maint".to_string()));
        assert!(judge_line("hello").is_err());
        assert!(judge_line("").is_err());
    }
}
