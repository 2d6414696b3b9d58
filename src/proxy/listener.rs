//! Listening sockets, created the way a load balancer needs them.
//!
//! SO_REUSEADDR (restart without waiting for TIME_WAIT), SO_REUSEPORT (a new l4lb
//! process can bind the same addresses while the old one drains), IPV6_V6ONLY on
//! IPv6 sockets (so `[::]:p` and `0.0.0.0:p` can be listed side by side, as in
//! nginx), and a deep accept backlog. Sockets come in SO_REUSEPORT groups, one
//! socket per worker thread (`bind_group`). This file only creates sockets.

use std::io;
use std::net::{SocketAddr, TcpListener};

use socket2::{Domain, Protocol, Socket, Type};

/// Accept backlog of every TCP listener (the kernel caps it at net.core.somaxconn).
pub const LISTEN_BACKLOG: i32 = 4096;

/// Binds a non-blocking TCP listener on `addr`, with TCP_NODELAY, which Linux
/// passes on to every accepted socket (one system call fewer per client).
pub fn bind_tcp(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = bound_socket(addr, Type::STREAM, Protocol::TCP, |s| {
        s.set_tcp_nodelay(true)
    })?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

/// `count` sockets (at least one) bound to `addr` by `bind`, all in one
/// SO_REUSEPORT group: when `addr` asks for port 0, the port the first socket got
/// is the one the others bind.
pub fn bind_group<S>(
    addr: SocketAddr,
    count: usize,
    bind: impl Fn(SocketAddr) -> io::Result<S>,
    local_addr: impl Fn(&S) -> io::Result<SocketAddr>,
) -> io::Result<Vec<S>> {
    let first = bind(addr)?;
    let shared = SocketAddr::new(addr.ip(), local_addr(&first)?.port());
    let mut group = vec![first];
    for _ in 1..count {
        group.push(bind(shared)?);
    }
    Ok(group)
}

/// A non-blocking socket of `kind` bound to `addr` with SO_REUSEADDR,
/// SO_REUSEPORT and (for IPv6) IPV6_V6ONLY; `tune` sets anything else before
/// the bind.
pub fn bound_socket(
    addr: SocketAddr,
    kind: Type,
    protocol: Protocol,
    tune: impl FnOnce(&Socket) -> io::Result<()>,
) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), kind, Some(protocol))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    tune(&socket)?;
    socket.bind(&addr.into())?;
    Ok(socket)
}
