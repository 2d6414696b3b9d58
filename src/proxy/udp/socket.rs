//! UDP sockets: the service's listening socket and the connected socket of one flow.
//!
//! The listening socket uses SO_REUSEADDR and SO_REUSEPORT like the TCP listeners,
//! IPV6_V6ONLY on IPv6, and a large receive buffer to ride out bursts. Each flow gets
//! its own socket connected to its backend: the kernel then filters replies to that
//! backend and reports ICMP errors (as ECONNREFUSED) on it. This file only creates
//! sockets.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;

/// Receive buffer requested for listening sockets (the kernel may grant less).
const LISTEN_RECV_BUFFER: usize = 4 * 1024 * 1024;

/// Binds the listening socket of a UDP service; must be called inside a tokio runtime.
pub fn bind_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    let _ = socket.set_recv_buffer_size(LISTEN_RECV_BUFFER);
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
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
