//! The first bytes of a TCP session, around the PROXY protocol: reading the header
//! an upstream balancer put in front of a client's stream (`accept_proxy_protocol`,
//! strictly, within a deadline), and building what is written to the backend
//! before the relay starts (our own header, when `proxy_protocol` is on, then any
//! client bytes that arrived with the header).

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::config::ProxyProtocol;
use crate::proxy::proxy_protocol::{self, MAX_HEADER_LEN, Parsed, ProxyHeader, Version};

/// How long a client may take to send its PROXY header.
pub const HEADER_DEADLINE: Duration = Duration::from_secs(3);

/// Who the client really is, per the header it sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientOrigin {
    /// The original client (the TCP peer when the header says LOCAL).
    pub source: SocketAddr,
    /// The address the original client connected to, when a header said so.
    pub destination: Option<SocketAddr>,
    /// Stream bytes that arrived after the header; they go to the backend first.
    pub early_data: Vec<u8>,
}

impl ClientOrigin {
    /// A client that connected directly (no PROXY header expected).
    pub fn direct(peer: SocketAddr) -> ClientOrigin {
        ClientOrigin {
            source: peer,
            destination: None,
            early_data: Vec::new(),
        }
    }
}

/// Reads and checks a PROXY v1/v2 header at the start of `client`'s stream.
pub async fn read_header(client: &mut TcpStream, peer: SocketAddr) -> io::Result<ClientOrigin> {
    let read = async {
        let mut buf = Vec::with_capacity(256);
        loop {
            match proxy_protocol::parse(&buf).map_err(invalid)? {
                Parsed::Complete { header, consumed } => {
                    return Ok::<_, io::Error>((header, buf.split_off(consumed)));
                }
                Parsed::Incomplete { at_least } => {
                    let want = at_least.unwrap_or(1).clamp(1, MAX_HEADER_LEN - buf.len());
                    read_more(client, &mut buf, want).await?;
                }
            }
        }
    };
    let (header, early_data) = tokio::time::timeout(HEADER_DEADLINE, read)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no PROXY header in time"))??;
    let (source, destination) = match header {
        ProxyHeader::Proxy {
            source,
            destination,
        } => (source, Some(destination)),
        ProxyHeader::Local => (peer, None),
    };
    Ok(ClientOrigin {
        source,
        destination,
        early_data,
    })
}

/// Reads exactly `want` more bytes into `buf` (never past the header, which the
/// parser's lower bound guarantees).
async fn read_more(client: &mut TcpStream, buf: &mut Vec<u8>, want: usize) -> io::Result<()> {
    let start = buf.len();
    buf.resize(start + want, 0);
    let result = client.read_exact(&mut buf[start..]).await;
    if result.is_err() {
        buf.truncate(start);
    }
    result.map(drop)
}

fn invalid(e: proxy_protocol::ParseError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

/// The PROXY version `mode` sends, if any.
pub fn header_version(mode: ProxyProtocol) -> Option<Version> {
    match mode {
        ProxyProtocol::Off => None,
        ProxyProtocol::V1 => Some(Version::V1),
        ProxyProtocol::V2 | ProxyProtocol::V2Every => Some(Version::V2),
    }
}

/// What to write to the backend before relaying: a PROXY header for
/// `(version, source, destination)` when given, then `early_data`.
pub fn backend_preamble(
    header: Option<(Version, SocketAddr, SocketAddr)>,
    early_data: Vec<u8>,
) -> Vec<u8> {
    let Some((version, source, destination)) = header else {
        return early_data;
    };
    let mut preamble = proxy_protocol::encode(version, source, destination);
    preamble.extend(early_data);
    preamble
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().expect("literal address")
    }

    #[test]
    fn preamble_is_the_header_then_the_early_bytes() {
        let header = (Version::V1, addr("192.0.2.1:1111"), addr("192.0.2.2:2222"));
        let preamble = backend_preamble(Some(header), b"hello".to_vec());
        assert_eq!(
            preamble,
            b"PROXY TCP4 192.0.2.1 192.0.2.2 1111 2222\r\nhello"
        );
        assert_eq!(header_version(ProxyProtocol::Off), None);
        assert!(backend_preamble(None, vec![]).is_empty());
    }
}
