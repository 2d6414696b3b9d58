//! `kind = "mysql"`: the server's first packet. A greeting (protocol 10)
//! passes; an error packet (`0xff`, e.g. `1040 Too many connections` or
//! `1130 Host is not allowed to connect`) fails with its code and message. The
//! probe then closes without logging in, as HAProxy's `mysql-check` does
//! without a user.

use std::net::SocketAddr;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use super::probe::{Failed, Passed, Probe};
use super::wire::{printable, read_up_to};

/// Longest first packet read.
const MAX_PACKET: usize = 16 * 1024;
const PROTOCOL_10: u8 = 10;
const ERROR_PACKET: u8 = 0xff;

/// The greeting check (it has no settings).
pub struct MysqlGreeting;

impl Probe for MysqlGreeting {
    async fn exchange(&self, target: SocketAddr) -> Result<Passed, Failed> {
        let io = |what: &str, e: std::io::Error| format!("mysql: {what}: {e}");
        let mut stream = TcpStream::connect(target)
            .await
            .map_err(|e| io("connect", e))?;
        let mut header = [0u8; 4];
        stream
            .read_exact(&mut header)
            .await
            .map_err(|e| io("read", e))?;
        let length = u32::from_le_bytes([header[0], header[1], header[2], 0]) as usize;
        let payload = read_up_to(&mut stream, length.min(MAX_PACKET))
            .await
            .map_err(|e| io("read", e))?;
        judge_first_packet(&payload)
    }
}

fn judge_first_packet(payload: &[u8]) -> Result<Passed, Failed> {
    match payload.first() {
        Some(&PROTOCOL_10) => Ok(Passed::default()),
        Some(&ERROR_PACKET) => Err(error_packet(payload)),
        Some(other) => Err(format!(
            "mysql: unexpected greeting (protocol {other}, expected 10)"
        )),
        None => Err("mysql: empty greeting".to_string()),
    }
}

/// `mysql: 1040 Too many connections` from `ff, code (LE u16), [#SQLSTATE], text`.
fn error_packet(payload: &[u8]) -> Failed {
    let code = match payload.get(1..3) {
        Some(&[low, high]) => u16::from_le_bytes([low, high]),
        _ => 0,
    };
    let mut text = payload.get(3..).unwrap_or_default();
    if text.first() == Some(&b'#') {
        text = text.get(6..).unwrap_or_default();
    }
    format!("mysql: {code} {}", printable(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_protocol_10_greeting_passes_and_an_error_packet_fails_with_its_text() {
        assert_eq!(
            judge_first_packet(b"\x0a10.11.6-MariaDB\0"),
            Ok(Passed::default())
        );
        assert_eq!(
            judge_first_packet(b"\xff\x10\x04Too many connections"),
            Err("mysql: 1040 Too many connections".to_string())
        );
        assert_eq!(
            judge_first_packet(b"\xff\x6a\x04#HY000Host is blocked"),
            Err("mysql: 1130 Host is blocked".to_string())
        );
    }
}
