//! Reading a client's TLS ClientHello ahead of the relay, without consuming it:
//! the bytes are *peeked* (`MSG_PEEK`), so the backend later receives the
//! stream exactly as the client sent it. Bounded in size
//! ([`client_hello::MAX_PREREAD`]) and time (`preread_timeout`); each new
//! segment re-parses the whole prefix (at most 16 KiB, once per segment).
//!
//! Waiting for more bytes: the socket stays readable while peeked bytes sit in
//! it, so after a peek that brought nothing new the readiness is cleared and
//! the socket peeked once more (bytes that arrived in between are not missed);
//! the next wake-up then comes from the kernel when a new segment arrives.
//! Only services with routes (or `hash_key = "sni"`) come here.

use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;

use tokio::io::Interest;
use tokio::net::TcpStream;

use crate::proxy::client_hello::{self, ClientHello, MAX_PREREAD, Preread};

/// What the start of a client's stream turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrereadOutcome {
    /// A ClientHello (with or without a server name).
    Hello(ClientHello),
    /// Bytes that are not TLS, or no bytes at all within the timeout (a client
    /// of a protocol where the server speaks first).
    NotTls,
    /// TLS that is refused (malformed, SSLv2, too large, or unfinished in time),
    /// or the client left: the reason, for the log.
    Refused(String),
}

/// Peeks at `stream` until its first bytes say what they are, for at most `timeout`.
pub async fn preread(stream: &TcpStream, timeout: Duration) -> PrereadOutcome {
    let mut buf = vec![0u8; MAX_PREREAD];
    let mut seen = 0;
    let read = read_hello(stream, &mut buf, &mut seen);
    match tokio::time::timeout(timeout, read).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(e)) => PrereadOutcome::Refused(format!("reading the ClientHello: {e}")),
        Err(_) if seen == 0 => PrereadOutcome::NotTls,
        Err(_) => PrereadOutcome::Refused(format!(
            "no complete ClientHello within {} ({seen} bytes came)",
            humantime::format_duration(timeout)
        )),
    }
}

async fn read_hello(
    stream: &TcpStream,
    buf: &mut [u8],
    seen: &mut usize,
) -> io::Result<PrereadOutcome> {
    // Whether to wait for readiness before the next peek.
    let mut wait = true;
    loop {
        if wait {
            stream.readable().await?;
        }
        let n = match peek_now(stream, buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                clear_readiness(stream);
                wait = true;
                continue;
            }
            Err(e) => return Err(e),
        };
        if n == 0 {
            let why = "the client closed before sending a ClientHello";
            return Ok(PrereadOutcome::Refused(why.into()));
        }
        if n > *seen {
            *seen = n;
            match client_hello::parse(&buf[..n]) {
                Preread::Incomplete => {}
                Preread::Hello(hello) => return Ok(PrereadOutcome::Hello(hello)),
                Preread::NotTls => return Ok(PrereadOutcome::NotTls),
                Preread::Invalid(why) => return Ok(PrereadOutcome::Refused(why.into())),
            }
        }
        // Peeked bytes keep the socket readable: after a wake-up, clear that and
        // peek once more at once (bytes that came meanwhile raised no new
        // wake-up); after that second look, wait for the kernel's next one.
        if wait {
            clear_readiness(stream);
        }
        wait = !wait;
    }
}

/// Forgets that `stream` was readable, so the next wait lasts until new bytes arrive.
fn clear_readiness(stream: &TcpStream) {
    let _ = stream.try_io(Interest::READABLE, || {
        Err::<(), _>(io::Error::from(io::ErrorKind::WouldBlock))
    });
}

/// One non-blocking `recv(MSG_PEEK)` into `buf`.
fn peek_now(stream: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    let flags = libc::MSG_PEEK | libc::MSG_DONTWAIT;
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes for the whole call,
    // and the descriptor belongs to `stream`, borrowed for the call.
    let rc = unsafe {
        libc::recv(
            stream.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            flags,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc as usize)
    }
}
