//! `kind = "dns"`: one query (recursion desired, class IN) for the configured
//! name and type, over UDP from a connected socket. It passes on a response
//! with the query's ID whose RCODE is in the allowed set; a response with
//! another ID is ignored (it is not ours), one with another RCODE fails, e.g.
//! `dns: REFUSED for example.com`.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use tokio::net::UdpSocket;

use super::probe::{Failed, Passed, Probe};
use crate::config::{DNS_RCODES, DnsCheck};
use crate::random;

const HEADER_LEN: usize = 12;

impl Probe for DnsCheck {
    async fn exchange(&self, target: SocketAddr) -> Result<Passed, Failed> {
        let io = |e: std::io::Error| format!("dns: {e}");
        let local: SocketAddr = match target {
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let socket = UdpSocket::bind(local).await.map_err(io)?;
        socket.connect(target).await.map_err(io)?;
        let id = (random::next_u64() & 0xffff) as u16;
        socket
            .send(&query(id, &self.name, self.query_type))
            .await
            .map_err(io)?;
        let mut reply = [0u8; 1500];
        loop {
            let len = socket.recv(&mut reply).await.map_err(io)?;
            if let Some(rcode) = response_rcode(&reply[..len], id) {
                return self.judge(rcode);
            }
        }
    }
}

impl DnsCheck {
    fn judge(&self, rcode: u8) -> Result<Passed, Failed> {
        if self.rcodes.contains(&rcode) {
            return Ok(Passed::default());
        }
        let allowed: Vec<&str> = self.rcodes.iter().map(|&c| rcode_name(c)).collect();
        Err(format!(
            "dns: {} for {} (allowed: {})",
            rcode_name(rcode),
            self.name,
            allowed.join(", ")
        ))
    }
}

fn rcode_name(code: u8) -> &'static str {
    DNS_RCODES
        .iter()
        .find(|(_, c)| *c == code)
        .map_or("RCODE>5", |(name, _)| name)
}

/// A query for `name` (dot-separated, already checked) of type `query_type`.
fn query(id: u16, name: &str, query_type: u16) -> Vec<u8> {
    let mut message = Vec::with_capacity(HEADER_LEN + name.len() + 6);
    message.extend_from_slice(&id.to_be_bytes());
    message.extend_from_slice(&[0x01, 0x00]); // a standard query, recursion desired
    message.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]); // one question
    for label in name.split('.').filter(|l| !l.is_empty()) {
        message.push(label.len().min(63) as u8);
        message.extend_from_slice(label.as_bytes());
    }
    message.push(0);
    message.extend_from_slice(&query_type.to_be_bytes());
    message.extend_from_slice(&1u16.to_be_bytes()); // class IN
    message
}

/// The RCODE of `reply` if it is a response to query `id`.
fn response_rcode(reply: &[u8], id: u16) -> Option<u8> {
    let header = reply.get(..HEADER_LEN)?;
    let is_response = header[2] & 0x80 != 0;
    (u16::from_be_bytes([header[0], header[1]]) == id && is_response).then_some(header[3] & 0x0f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_encodes_each_label_and_the_type() {
        let message = query(0x1234, "ok.test", 28);
        assert_eq!(&message[..4], &[0x12, 0x34, 0x01, 0x00]);
        assert_eq!(
            &message[HEADER_LEN..],
            b"\x02ok\x04test\x00\x00\x1c\x00\x01"
        );
    }

    #[test]
    fn only_a_response_with_our_id_counts() {
        let mut reply = query(7, "ok.test", 1);
        reply[2] |= 0x80;
        reply[3] = 0x85; // RA + REFUSED
        assert_eq!(response_rcode(&reply, 7), Some(5));
        assert_eq!(response_rcode(&reply, 8), None);
        assert_eq!(
            response_rcode(&query(7, "ok.test", 1), 7),
            None,
            "a query, not a response"
        );
    }
}
