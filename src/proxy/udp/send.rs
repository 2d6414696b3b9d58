//! Sending one datagram with one non-blocking system call, and what a failed
//! send means for the flow.
//!
//! A send can fail for three kinds of reasons, and only one of them is the
//! backend's (or the client's) fault: a full socket buffer is a lost datagram,
//! as the kernel itself would lose it; a datagram too big for the path
//! (EMSGSIZE: over what the destination's address family can carry, e.g. a
//! 65,520-byte IPv6 datagram to an IPv4 backend, or a full-size one plus a
//! PROXY header) is the sender's own problem; anything else (ICMP unreachable,
//! no route) breaks the flow.

use std::io;
use std::net::SocketAddr;

use socket2::{SockAddr, SockRef};
use tokio::net::UdpSocket;

/// Why a datagram could not be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendFailure {
    /// The socket buffer is full: this datagram is lost, the flow is fine.
    Full,
    /// The datagram is too big to be sent at all: its sender's problem.
    TooBig,
    /// The destination cannot be reached (e.g. ICMP port unreachable).
    Broken,
}

impl SendFailure {
    pub fn of(error: &io::Error) -> SendFailure {
        if error.kind() == io::ErrorKind::WouldBlock {
            SendFailure::Full
        } else if error.raw_os_error() == Some(libc::EMSGSIZE) {
            SendFailure::TooBig
        } else {
            SendFailure::Broken
        }
    }
}

/// Sends with one non-blocking system call. (The runtime's own `try_send` would
/// also refuse while it has not yet seen the socket become writable, which drops
/// the first datagram of every new flow.)
pub fn send_now(socket: &UdpSocket, data: &[u8], to: Option<SocketAddr>) -> io::Result<usize> {
    let socket = SockRef::from(socket);
    match to {
        Some(address) => socket.send_to(data, &SockAddr::from(address)),
        None => socket.send(data),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_unreachable_destination_breaks_a_flow() {
        let full = io::Error::from(io::ErrorKind::WouldBlock);
        let too_big = io::Error::from_raw_os_error(libc::EMSGSIZE);
        let refused = io::Error::from_raw_os_error(libc::ECONNREFUSED);
        assert_eq!(SendFailure::of(&full), SendFailure::Full);
        assert_eq!(SendFailure::of(&too_big), SendFailure::TooBig);
        assert_eq!(SendFailure::of(&refused), SendFailure::Broken);
    }
}
