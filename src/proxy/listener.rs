//! Listening sockets, created the way a load balancer needs them.
//!
//! SO_REUSEADDR (restart without waiting for TIME_WAIT), SO_REUSEPORT (a new l4lb
//! process can bind the same addresses while the old one drains), IPV6_V6ONLY on
//! IPv6 sockets (so `[::]:p` and `0.0.0.0:p` can be listed side by side, as in
//! nginx), and a deep accept backlog. Sockets come in SO_REUSEPORT groups, one
//! socket per worker thread (`bind_group`). The admin endpoint's listener is
//! the exception: exclusive, without SO_REUSEPORT (`bind_tcp_exclusive`). This
//! file only creates sockets.

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

/// Binds a non-blocking TCP listener on `addr` that no other socket can share:
/// SO_REUSEADDR (a restart need not wait for TIME_WAIT) but not SO_REUSEPORT, so
/// a second process asking for the same address fails instead of silently taking
/// a share of its connections. For the admin endpoint, which is one process's.
pub fn bind_tcp_exclusive(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.set_tcp_nodelay(true)?;
    socket.bind(&addr.into())?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::ErrorKind;
    use std::net::TcpStream;

    #[test]
    fn a_group_shares_one_port_and_the_kernel_feeds_every_socket() {
        let any_port: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let group = bind_group(any_port, 2, bind_tcp, TcpListener::local_addr).unwrap();
        let port = group[0].local_addr().unwrap().port();
        assert_ne!(port, 0);
        assert_eq!(group[1].local_addr().unwrap().port(), port);
        let clients: Vec<TcpStream> = (0..64)
            .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
            .collect();
        // Each handshake lands in one socket's queue or the other's.
        let mut accepted = [0usize; 2];
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while accepted.iter().sum::<usize>() < clients.len() {
            assert!(
                std::time::Instant::now() < deadline,
                "accepted {accepted:?}"
            );
            for (listener, count) in group.iter().zip(&mut accepted) {
                match listener.accept() {
                    Ok(_) => *count += 1,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(e) => panic!("accept: {e}"),
                }
            }
        }
        assert_eq!(accepted.iter().sum::<usize>(), clients.len());
        assert!(accepted.iter().all(|&n| n > 0), "spread: {accepted:?}");
    }

    #[test]
    fn an_exclusive_listener_shares_its_address_with_nobody() {
        let exclusive = bind_tcp_exclusive("127.0.0.1:0".parse().unwrap()).unwrap();
        let taken = exclusive.local_addr().unwrap();
        let error = bind_tcp_exclusive(taken).expect_err("a second exclusive bind");
        assert_eq!(error.kind(), ErrorKind::AddrInUse);
        let error = bind_tcp(taken).expect_err("a SO_REUSEPORT bind");
        assert_eq!(error.kind(), ErrorKind::AddrInUse);
        drop(exclusive);
        let shared = bind_tcp(taken).unwrap();
        let error = bind_tcp_exclusive(taken).expect_err("an exclusive bind on a shared port");
        assert_eq!(error.kind(), ErrorKind::AddrInUse);
        drop(shared);
    }

    #[test]
    fn a_taken_address_fails_the_whole_group() {
        let first = bind_tcp("127.0.0.1:0".parse().unwrap()).unwrap();
        let taken = first.local_addr().unwrap();
        // A socket without SO_REUSEPORT on that port keeps the group out.
        drop(first);
        let plain = std::net::TcpListener::bind(taken).unwrap();
        let group = bind_group(taken, 2, bind_tcp, TcpListener::local_addr);
        assert!(group.is_err());
        drop(plain);
    }
}
