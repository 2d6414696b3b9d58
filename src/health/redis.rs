//! `kind = "redis"`: with a password, `AUTH [user] password` must answer
//! `+OK`; then `PING` must answer `+PONG` (a loading or unauthenticated server
//! answers an error and fails). With `role = "master"`, `INFO replication` must
//! report `role:master`. Commands are sent as RESP arrays.

use std::net::SocketAddr;

use tokio::io::{AsyncRead, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::probe::{Failed, Passed, Probe};
use super::wire::{printable, read_line, read_up_to};
use crate::config::RedisCheck;

/// Longest simple reply line read.
const MAX_LINE: usize = 512;
/// Longest `INFO replication` answer read.
const MAX_INFO: usize = 64 * 1024;

impl Probe for RedisCheck {
    async fn exchange(&self, target: SocketAddr) -> Result<Passed, Failed> {
        let stream = TcpStream::connect(target)
            .await
            .map_err(|e| format!("redis: connect: {e}"))?;
        let mut stream = BufReader::new(stream);
        if let Some(password) = &self.password {
            let mut auth = vec!["AUTH"];
            auth.extend(self.user.as_deref());
            auth.push(password);
            command(&mut stream, &auth).await?;
            expect_line(&mut stream, "AUTH", b"+OK").await?;
        }
        command(&mut stream, &["PING"]).await?;
        expect_line(&mut stream, "PING", b"+PONG").await?;
        if self.require_master {
            command(&mut stream, &["INFO", "replication"]).await?;
            let info = bulk_string(&mut stream).await?;
            let role = info
                .lines()
                .find_map(|line| line.strip_prefix("role:"))
                .unwrap_or("unknown");
            if role.trim() != "master" {
                return Err(format!(
                    "redis: role:{}, and role = \"master\" is required",
                    role.trim()
                ));
            }
        }
        Ok(Passed::default())
    }
}

/// Sends `words` as one RESP array.
async fn command(stream: &mut BufReader<TcpStream>, words: &[&str]) -> Result<(), Failed> {
    let mut message = format!("*{}\r\n", words.len()).into_bytes();
    for word in words {
        message.extend_from_slice(format!("${}\r\n", word.len()).as_bytes());
        message.extend_from_slice(word.as_bytes());
        message.extend_from_slice(b"\r\n");
    }
    stream
        .get_mut()
        .write_all(&message)
        .await
        .map_err(|e| format!("redis: send: {e}"))
}

async fn reply_line(stream: &mut (impl AsyncRead + Unpin)) -> Result<Vec<u8>, Failed> {
    read_line(stream, MAX_LINE)
        .await
        .map_err(|e| format!("redis: read: {e}"))
}

/// The next reply must be `wanted`; anything else fails, quoting it.
async fn expect_line(
    stream: &mut (impl AsyncRead + Unpin),
    what: &str,
    wanted: &[u8],
) -> Result<(), Failed> {
    let line = reply_line(stream).await?;
    if line != wanted {
        return Err(format!("redis: {what} answered \"{}\"", printable(&line)));
    }
    Ok(())
}

/// A `$N\r\n...\r\n` reply, as text.
async fn bulk_string(stream: &mut (impl AsyncRead + Unpin)) -> Result<String, Failed> {
    let header = reply_line(stream).await?;
    let length = header
        .strip_prefix(b"$")
        .and_then(|n| std::str::from_utf8(n).ok())
        .and_then(|n| n.parse::<usize>().ok())
        .ok_or_else(|| format!("redis: INFO answered \"{}\"", printable(&header)))?;
    let body = read_up_to(stream, length.min(MAX_INFO))
        .await
        .map_err(|e| format!("redis: read: {e}"))?;
    Ok(String::from_utf8_lossy(&body).into_owned())
}
