//! Listening sockets, created the way a load balancer needs them.
//!
//! SO_REUSEADDR (restart without waiting for TIME_WAIT), SO_REUSEPORT (a new l4lb
//! process can bind the same addresses while the old one drains), IPV6_V6ONLY on
//! IPv6 sockets (so `[::]:p` and `0.0.0.0:p` can be listed side by side, as in
//! nginx), and a deep accept backlog. This file only creates sockets.

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;

/// Accept backlog of every TCP listener (the kernel caps it at net.core.somaxconn).
pub const LISTEN_BACKLOG: i32 = 4096;

/// Binds a TCP listener on `addr`; must be called inside a tokio runtime.
pub fn bind_tcp(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    TcpListener::from_std(socket.into())
}
