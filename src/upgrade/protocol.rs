//! The upgrade protocol: versioned messages, each a frame of a 4-byte
//! big-endian length and that many bytes of JSON.
//!
//! A session: the successor says `Hello`; the running process answers `Hello`
//! (or `Refused` — another protocol version, an upgrade already under way). Then
//! the successor asks `SendSockets` (answered by `Sockets`, its descriptors
//! following in the same order), `SendFlows` (answered by `Flows`, one
//! descriptor per flow following), and ends with `Ready` (answered by `Done`
//! once the old process stopped accepting) or `Failed`. `Describe` asks what
//! would be handed over, without descriptors (`l4lb check`). A peer that
//! closes or falls silent ends the session: nothing changes in the old process.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::Protocol;
use crate::proxy::udp::flows::handoff::FlowState;

/// Spoken by this binary; a peer with another one is refused.
pub const PROTOCOL_VERSION: u32 = 1;

/// The largest frame either side accepts (a flow list of 100,000 fits).
pub const MAX_FRAME: usize = 64 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Message {
    Hello {
        protocol_version: u32,
        pid: u32,
        version: String,
        /// The configuration file the sender runs.
        #[serde(default)]
        config: PathBuf,
        /// The sender's network namespace (`net:[inode]`; empty when unknown):
        /// sockets from another namespace are of no use.
        #[serde(default)]
        net_namespace: String,
    },
    Refused {
        reason: String,
    },
    Describe,
    Description {
        sockets: Vec<SocketRecord>,
        udp_flows: usize,
    },
    SendSockets,
    /// Followed by one descriptor per record, in order.
    Sockets {
        sockets: Vec<SocketRecord>,
    },
    SendFlows,
    /// Followed by one descriptor per record (the flow's backend socket).
    Flows {
        flows: Vec<FlowRecord>,
    },
    Ready {
        pid: u32,
    },
    Failed {
        reason: String,
    },
    Done,
}

/// What a listening socket is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SocketRole {
    Service,
    Admin,
}

/// One listening socket handed over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SocketRecord {
    pub protocol: Protocol,
    pub role: SocketRole,
    pub local: SocketAddr,
    /// The kernel's identity of the socket (the same in both processes).
    pub id: u64,
}

/// One UDP flow handed over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowRecord {
    /// The `id` of the listening socket its client's datagrams arrive on.
    pub listener: u64,
    /// The backend's address as configured.
    pub backend: String,
    /// Where its socket is connected.
    pub backend_addr: SocketAddr,
    pub state: FlowState,
}

/// Why a session could not go on.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("the peer closed the control connection")]
    Closed,
    #[error("a frame of {0} bytes is over the {MAX_FRAME}-byte limit")]
    TooBig(usize),
    #[error("unreadable message: {0}")]
    Malformed(#[from] serde_json::Error),
}

/// `message` as one frame.
pub fn encode(message: &Message) -> Result<Vec<u8>, ProtocolError> {
    let body = serde_json::to_vec(message)?;
    if body.len() > MAX_FRAME {
        return Err(ProtocolError::TooBig(body.len()));
    }
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&body);
    Ok(frame)
}

/// The length a frame header announces, checked against the limit.
pub fn frame_len(header: [u8; 4]) -> Result<usize, ProtocolError> {
    let len = u32::from_be_bytes(header) as usize;
    if len > MAX_FRAME {
        return Err(ProtocolError::TooBig(len));
    }
    Ok(len)
}

pub fn decode(body: &[u8]) -> Result<Message, ProtocolError> {
    Ok(serde_json::from_slice(body)?)
}

/// Writes one message (blocking).
pub fn write(mut stream: impl Write, message: &Message) -> Result<(), ProtocolError> {
    stream.write_all(&encode(message)?)?;
    Ok(())
}

/// Reads exactly one message (blocking) — never a byte past it, so the
/// descriptors that may follow stay attached to the bytes that carry them.
pub fn read(mut stream: impl Read) -> Result<Message, ProtocolError> {
    let mut header = [0u8; 4];
    read_exact(&mut stream, &mut header)?;
    let mut body = vec![0u8; frame_len(header)?];
    read_exact(&mut stream, &mut body)?;
    decode(&body)
}

fn read_exact(stream: &mut impl Read, buf: &mut [u8]) -> Result<(), ProtocolError> {
    stream.read_exact(buf).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => ProtocolError::Closed,
        _ => ProtocolError::Io(e),
    })
}

/// This process's `Hello`, running `config`.
pub fn hello(config: &Path) -> Message {
    Message::Hello {
        protocol_version: PROTOCOL_VERSION,
        pid: std::process::id(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        config: config
            .canonicalize()
            .unwrap_or_else(|_| config.to_path_buf()),
        net_namespace: net_namespace(),
    }
}

/// This process's network namespace, as `/proc/self/ns/net` names it.
pub fn net_namespace() -> String {
    std::fs::read_link("/proc/self/ns/net")
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_survives_its_frame() {
        let message = Message::Sockets {
            sockets: vec![SocketRecord {
                protocol: Protocol::Udp,
                role: SocketRole::Service,
                local: "127.0.0.1:5353".parse().expect("address"),
                id: 42,
            }],
        };
        let frame = encode(&message).expect("encode");
        assert_eq!(read(&frame[..]).expect("read"), message);
    }

    #[test]
    fn an_oversized_or_truncated_frame_is_an_error() {
        let huge = (MAX_FRAME as u32 + 1).to_be_bytes();
        assert!(matches!(read(&huge[..]), Err(ProtocolError::TooBig(_))));
        let frame = encode(&Message::Done).expect("encode");
        let cut = &frame[..frame.len() - 1];
        assert!(matches!(read(cut), Err(ProtocolError::Closed)));
        let junk = [0, 0, 0, 2, b'{', b'x'];
        assert!(matches!(read(&junk[..]), Err(ProtocolError::Malformed(_))));
    }

    #[test]
    fn a_hello_of_another_version_still_reads_as_a_hello() {
        let text =
            br#"{"type":"hello","protocol_version":7,"pid":1,"version":"9.0.0","extra":true}"#;
        let Message::Hello {
            protocol_version, ..
        } = decode(text).expect("decode")
        else {
            panic!("not a hello");
        };
        assert_eq!(protocol_version, 7);
    }
}
