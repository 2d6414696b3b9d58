//! UDP sockets: the service's listening socket and the connected socket of one flow.
//!
//! The listening socket is set up like the TCP listeners (`listener::bound_socket`:
//! SO_REUSEADDR, SO_REUSEPORT, IPV6_V6ONLY on IPv6), plus a large receive buffer
//! to ride out bursts. Each flow gets its own socket connected to its backend: the
//! kernel then filters replies to that backend and reports ICMP errors (as
//! ECONNREFUSED) on it. This file only creates sockets.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use socket2::{Protocol, Type};
use tokio::net::UdpSocket;

use crate::proxy::listener::bound_socket;

/// Receive buffer requested for listening sockets (the kernel may grant less).
const LISTEN_RECV_BUFFER: usize = 4 * 1024 * 1024;

/// Binds a non-blocking listening socket of a UDP service.
pub fn bind_udp(addr: SocketAddr) -> io::Result<std::net::UdpSocket> {
    let socket = bound_socket(addr, Type::DGRAM, Protocol::UDP, |socket| {
        // Best effort: the kernel caps it at net.core.rmem_max.
        let _ = socket.set_recv_buffer_size(LISTEN_RECV_BUFFER);
        Ok(())
    })?;
    Ok(socket.into())
}

/// A socket on an ephemeral port, connected to `backend`.
pub fn connect_upstream(backend: SocketAddr) -> io::Result<UdpSocket> {
    let local: SocketAddr = match backend {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = std::net::UdpSocket::bind(local)?;
    socket.connect(backend)?;
    socket.set_nonblocking(true)?;
    UdpSocket::from_std(socket)
}
