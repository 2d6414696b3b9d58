//! Sockets towards backends from a chosen source: the client's own address
//! (`IP_TRANSPARENT` / `IPV6_TRANSPARENT`), a fixed local address
//! (`IP_BIND_ADDRESS_NO_PORT`, so a TCP port is chosen at connect time and the
//! same port can serve several backends), and `SO_MARK`.
//!
//! Which address to bind is decided by the pure
//! [`BackendSource::local_address`]; this file only applies it to sockets.
//! A service without these keys keeps the plain connect (nothing extra per
//! connection). socket2 has no setter for `IP_BIND_ADDRESS_NO_PORT`, so that
//! one option is set through `libc::setsockopt` in [`set_bind_address_no_port`].

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tokio::net::{TcpSocket, TcpStream, UdpSocket};

use crate::config::{BackendSource, FamilyMismatch};

/// Connects to `backend` for `client`, from the service's source.
pub async fn connect_tcp(
    source: &BackendSource,
    client: SocketAddr,
    backend: SocketAddr,
) -> io::Result<TcpStream> {
    if source.is_plain() {
        return TcpStream::connect(backend).await;
    }
    let local = source
        .local_address(client, backend)
        .map_err(mismatch_error)?;
    let socket = prepared(source, backend, Type::STREAM, Protocol::TCP)?;
    if let Some(local) = local {
        bind_source(&socket, local, true)?;
    }
    let stream: std::net::TcpStream = socket.into();
    TcpSocket::from_std_stream(stream).connect(backend).await
}

/// A non-blocking UDP socket connected to `backend` for `client`'s flow, from
/// the service's source (an ephemeral port of the wildcard address when the
/// kernel chooses).
pub fn connect_udp(
    source: &BackendSource,
    client: SocketAddr,
    backend: SocketAddr,
) -> io::Result<UdpSocket> {
    let local = source
        .local_address(client, backend)
        .map_err(mismatch_error)?;
    let socket = prepared(source, backend, Type::DGRAM, Protocol::UDP)?;
    match local {
        Some(local) => bind_source(&socket, local, false)?,
        None => socket.bind(&SockAddr::from(wildcard(backend)))?,
    }
    socket.connect(&SockAddr::from(backend))?;
    UdpSocket::from_std(socket.into())
}

/// A non-blocking socket of `backend`'s family with the service's transparent
/// flag and mark set, not yet bound.
pub fn prepared(
    source: &BackendSource,
    backend: SocketAddr,
    kind: Type,
    protocol: Protocol,
) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(backend), kind, Some(protocol))?;
    socket.set_nonblocking(true)?;
    if source.is_transparent() {
        set_transparent(&socket, backend)?;
    }
    if source.mark != 0 {
        socket.set_mark(source.mark)?;
    }
    Ok(socket)
}

/// `IP_TRANSPARENT` or `IPV6_TRANSPARENT`, by the family of `backend`.
pub fn set_transparent(socket: &Socket, backend: SocketAddr) -> io::Result<()> {
    match backend {
        SocketAddr::V4(_) => socket.set_ip_transparent_v4(true),
        SocketAddr::V6(_) => socket.set_ip_transparent_v6(true),
    }
}

/// Binds `local`. A port that is taken (the client's own, when kept) gives way
/// to one the kernel chooses. On TCP a port left to the kernel is chosen at
/// connect time (`IP_BIND_ADDRESS_NO_PORT`), so binding never uses up ports.
pub fn bind_source(socket: &Socket, local: SocketAddr, tcp: bool) -> io::Result<()> {
    if tcp && local.port() == 0 {
        set_bind_address_no_port(socket)?;
    }
    match socket.bind(&SockAddr::from(local)) {
        Err(e) if e.kind() == io::ErrorKind::AddrInUse && local.port() != 0 => {
            bind_source(socket, SocketAddr::new(local.ip(), 0), tcp)
        }
        other => other,
    }
}

/// `IP_BIND_ADDRESS_NO_PORT` (also honoured by IPv6 sockets at the `SOL_IP` level).
pub fn set_bind_address_no_port(socket: &Socket) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: a valid descriptor owned by `socket`, and a pointer to a c_int
    // that outlives the call, with its exact size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The unspecified address of `backend`'s family, port 0.
fn wildcard(backend: SocketAddr) -> SocketAddr {
    match backend {
        SocketAddr::V4(_) => (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    }
}

/// A source of the wrong family: this host's problem, not the backend's.
fn mismatch_error(mismatch: FamilyMismatch) -> io::Error {
    io::Error::new(io::ErrorKind::Unsupported, mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SourceAddress;

    fn fixed(ip: &str) -> BackendSource {
        BackendSource {
            address: SourceAddress::Fixed(ip.parse().unwrap()),
            ..BackendSource::default()
        }
    }

    #[tokio::test]
    async fn a_fixed_source_is_the_address_the_backend_sees() {
        let backend = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let to = backend.local_addr().unwrap();
        let client: SocketAddr = "192.0.2.1:4000".parse().unwrap();
        let stream = connect_tcp(&fixed("127.0.0.2"), client, to).await.unwrap();
        let (_, peer) = backend.accept().await.unwrap();
        assert_eq!(peer.ip(), "127.0.0.2".parse::<std::net::IpAddr>().unwrap());
        assert_eq!(stream.local_addr().unwrap(), peer);
    }

    #[test]
    fn a_udp_flow_socket_binds_the_fixed_source() {
        let backend = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = backend.local_addr().unwrap();
        let client: SocketAddr = "192.0.2.1:4000".parse().unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let socket = runtime.block_on(async { connect_udp(&fixed("127.0.0.3"), client, to) });
        let local = socket.unwrap().local_addr().unwrap();
        assert_eq!(local.ip(), "127.0.0.3".parse::<std::net::IpAddr>().unwrap());
        assert_ne!(local.port(), 0);
    }

    #[test]
    fn a_taken_port_gives_way_to_one_the_kernel_chooses() {
        let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let wanted = taken.local_addr().unwrap();
        let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
        bind_source(&socket, wanted, false).unwrap();
        let bound = socket.local_addr().unwrap().as_socket().unwrap();
        assert_eq!(bound.ip(), wanted.ip());
        assert_ne!(bound.port(), wanted.port());
        assert_ne!(bound.port(), 0);
    }

    #[tokio::test]
    async fn a_source_of_the_other_family_is_refused_before_any_packet() {
        let client: SocketAddr = "192.0.2.1:4000".parse().unwrap();
        let to: SocketAddr = "[::1]:9".parse().unwrap();
        let refused = connect_tcp(&fixed("127.0.0.2"), client, to)
            .await
            .unwrap_err();
        assert_eq!(refused.kind(), io::ErrorKind::Unsupported);
    }
}
