//! `kind = "postgres"`: a StartupMessage (protocol 3.0, the check's user and
//! database) and the server's first answer. An authentication request (or
//! `AuthenticationOk`) passes: the server accepts connections. An
//! `ErrorResponse` fails with its SQLSTATE and message, e.g.
//! `57P03 the database system is shutting down` (or starting up, or not yet
//! accepting connections while in recovery).
//!
//! With `role = "primary"` the check logs in instead (tokio-postgres, with the
//! check's password if any) and runs `SELECT pg_is_in_recovery()`: a server in
//! recovery (a standby) fails.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_postgres::{NoTls, SimpleQueryMessage};

use super::probe::{Failed, Passed, Probe};
use super::wire::printable;
use crate::config::PostgresCheck;

/// Protocol version 3.0.
const PROTOCOL_3_0: i32 = 196_608;
/// Longest first message read: an error with its fields fits easily.
const MAX_MESSAGE: usize = 8192;

impl Probe for PostgresCheck {
    async fn exchange(&self, target: SocketAddr) -> Result<Passed, Failed> {
        if self.require_primary {
            self.primary(target).await
        } else {
            self.startup(target).await
        }
    }
}

impl PostgresCheck {
    async fn startup(&self, target: SocketAddr) -> Result<Passed, Failed> {
        let io = |what: &str, e: std::io::Error| format!("postgres: {what}: {e}");
        let mut stream = TcpStream::connect(target)
            .await
            .map_err(|e| io("connect", e))?;
        stream
            .write_all(&startup_message(&self.user, &self.database))
            .await
            .map_err(|e| io("send", e))?;
        let mut header = [0u8; 5];
        stream
            .read_exact(&mut header)
            .await
            .map_err(|e| io("read", e))?;
        let length = i32::from_be_bytes([header[1], header[2], header[3], header[4]]);
        let body_len = usize::try_from(length - 4).unwrap_or(0).min(MAX_MESSAGE);
        let mut body = vec![0u8; body_len];
        // A short error body is still worth reporting, so read what comes.
        let got = stream.read(&mut body).await.map_err(|e| io("read", e))?;
        body.truncate(got);
        let _ = stream.write_all(&[b'X', 0, 0, 0, 4]).await;
        judge_first_message(header[0], &body)
    }

    async fn primary(&self, target: SocketAddr) -> Result<Passed, Failed> {
        let mut config = tokio_postgres::Config::new();
        config
            .host(target.ip().to_string())
            .port(target.port())
            .user(&self.user)
            .dbname(&self.database)
            .application_name("l4lb-health");
        if let Some(password) = &self.password {
            config.password(password);
        }
        let (client, connection) = config.connect(NoTls).await.map_err(describe)?;
        let query = async {
            let answer = client.simple_query("SELECT pg_is_in_recovery()").await;
            drop(client);
            answer
        };
        let (answer, _) = tokio::join!(query, connection);
        let in_recovery = answer.map_err(describe)?.iter().find_map(|m| match m {
            SimpleQueryMessage::Row(row) => row.get(0).map(|v| v == "t"),
            _ => None,
        });
        match in_recovery {
            Some(false) => Ok(Passed::default()),
            Some(true) => Err(
                "postgres: in recovery (a standby), and role = \"primary\" is \
                               required"
                    .to_string(),
            ),
            None => Err("postgres: pg_is_in_recovery() returned no row".to_string()),
        }
    }
}

/// A StartupMessage for `user` and `database`.
fn startup_message(user: &str, database: &str) -> Vec<u8> {
    let mut body = PROTOCOL_3_0.to_be_bytes().to_vec();
    for (key, value) in [
        ("user", user),
        ("database", database),
        ("application_name", "l4lb-health"),
    ] {
        body.extend_from_slice(key.as_bytes());
        body.push(0);
        body.extend_from_slice(value.as_bytes());
        body.push(0);
    }
    body.push(0);
    let length = i32::try_from(body.len() + 4).unwrap_or(i32::MAX);
    let mut message = length.to_be_bytes().to_vec();
    message.extend_from_slice(&body);
    message
}

/// Passes an authentication request ('R') or a protocol negotiation ('v');
/// fails an `ErrorResponse` ('E') with its code and message.
fn judge_first_message(kind: u8, body: &[u8]) -> Result<Passed, Failed> {
    match kind {
        b'R' | b'v' => Ok(Passed::default()),
        b'E' => {
            let field = |code: u8| error_field(body, code).unwrap_or_default();
            Err(format!("postgres: {} {}", field(b'C'), field(b'M')))
        }
        other => Err(format!(
            "postgres: unexpected first message '{}' (not a PostgreSQL server?)",
            printable(&[other])
        )),
    }
}

/// One field of an `ErrorResponse` body: `code` then a NUL-terminated string.
fn error_field(body: &[u8], code: u8) -> Option<String> {
    body.split(|&b| b == 0)
        .find(|field| field.first() == Some(&code))
        .map(|field| String::from_utf8_lossy(&field[1..]).into_owned())
}

/// `postgres: 57P03 the database system is shutting down`, or the client error.
fn describe(error: tokio_postgres::Error) -> Failed {
    match error.as_db_error() {
        Some(db) => format!("postgres: {} {}", db.code().code(), db.message()),
        None => match std::error::Error::source(&error) {
            Some(cause) => format!("postgres: {error}: {cause}"),
            None => format!("postgres: {error}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_response_fails_with_its_sqlstate_and_message() {
        let body = b"SFATAL\0VFATAL\0C57P03\0Mthe database system is shutting down\0\0";
        assert_eq!(
            judge_first_message(b'E', body),
            Err("postgres: 57P03 the database system is shutting down".to_string())
        );
    }

    #[test]
    fn an_authentication_request_passes() {
        assert_eq!(
            judge_first_message(b'R', &[0, 0, 0, 10]),
            Ok(Passed::default())
        );
    }

    #[test]
    fn the_startup_message_is_length_prefixed_protocol_3() {
        let message = startup_message("u", "d");
        assert_eq!(&message[..4], &(message.len() as i32).to_be_bytes());
        assert_eq!(&message[4..8], &PROTOCOL_3_0.to_be_bytes());
        assert!(message.ends_with(b"l4lb-health\0\0"));
    }
}
