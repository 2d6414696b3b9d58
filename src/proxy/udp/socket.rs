//! UDP sockets: the service's listening socket and the connected socket of one flow.
//!
//! The listening socket is set up like the TCP listeners (`listener::bound_socket`:
//! SO_REUSEADDR, SO_REUSEPORT, IPV6_V6ONLY on IPv6), plus a large receive buffer
//! to ride out bursts. Each flow gets its own socket connected to its backend
//! (`proxy::backend_socket::connect_udp`, from the service's `source`): the
//! kernel then filters replies to that backend and reports ICMP errors (as
//! ECONNREFUSED) on it. This file only creates listening sockets.

use std::io;
use std::net::SocketAddr;

use socket2::{Protocol, Type};

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
