//! One listen address's group of sockets, made from inherited sockets when
//! there are any (a predecessor's, or a service manager's) and bound afresh
//! otherwise — whatever the number of workers.
//!
//! Every inherited socket is served: a socket with connections or datagrams
//! queued in it must not be closed, so when there are fewer workers than
//! inherited sockets a worker serves several (see `ListenerSet::start`).
//! When there are more workers than inherited sockets:
//! - TCP: each extra worker gets a new SO_REUSEPORT member when binding one
//!   works (the kernel then spreads new connections over every member, and a
//!   new member starts empty, so nothing queued is at stake); when it does not
//!   (an inherited socket without SO_REUSEPORT, or a privileged port this
//!   process may not bind), the extra worker serves a duplicate of an inherited
//!   socket instead — both workers accept from one queue.
//! - UDP: the group is served exactly as inherited, with no new member and no
//!   duplicate. Adding a member makes the kernel rehash clients over the
//!   sockets, and a handed-over flow whose client moved to another socket (and
//!   worker) would become a new flow — a new source port towards the backend,
//!   maybe another backend. Reading one socket from two workers would split a
//!   client's datagrams between two flow tables the same way. So extra workers
//!   serve no socket of that address until the next plain restart.
//!
//! Every socket is checked before use: an inherited socket must be of the
//! protocol its key says (and for TCP, listening), or the listener fails to
//! start with an error naming the address.

use std::io;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::os::fd::{AsFd, OwnedFd};

use rustix::net::SocketType;
use serde::Serialize;

use crate::config::Protocol;
use crate::proxy::listener::{bind_group, bind_tcp};
use crate::proxy::udp::socket::bind_udp;

use super::inherited::SocketOrigin;

/// Where one socket of a group came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "source", content = "origin")]
pub enum SocketSource {
    /// Bound by this process.
    Bound,
    /// Inherited as it is.
    Inherited(SocketOrigin),
    /// A duplicate of an inherited socket, for one more worker.
    Shared(SocketOrigin),
}

impl std::fmt::Display for SocketSource {
    /// `bound`, the origin (`predecessor`), or `shared:` and the origin.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SocketSource::Bound => f.write_str("bound"),
            SocketSource::Inherited(origin) => write!(f, "{origin}"),
            SocketSource::Shared(origin) => write!(f, "shared:{origin}"),
        }
    }
}

/// The sockets of one group, each with where it came from.
pub type Group<S> = Vec<(S, SocketSource)>;

/// `workers` TCP listeners on `addr` (port 0 resolved by the first), or the
/// inherited ones topped up to `workers`.
pub fn tcp_group(
    addr: SocketAddr,
    workers: usize,
    inherited: Vec<(OwnedFd, SocketOrigin)>,
) -> io::Result<Group<TcpListener>> {
    if inherited.is_empty() {
        let group = bind_group(addr, workers, bind_tcp, TcpListener::local_addr)?;
        return Ok(group
            .into_iter()
            .map(|l| (l, SocketSource::Bound))
            .collect());
    }
    let mut group = Vec::new();
    for (fd, origin) in inherited {
        check(&fd, Protocol::Tcp, addr)?;
        let listener = TcpListener::from(fd);
        listener.set_nonblocking(true)?;
        group.push((listener, SocketSource::Inherited(origin)));
    }
    let (inherited_count, mut next) = (group.len(), 0);
    while group.len() < workers {
        let member = match bind_tcp(addr) {
            Ok(listener) => (listener, SocketSource::Bound),
            Err(_) => {
                // Only inherited sockets are shared, in turn.
                let (listener, source) = &group[next % inherited_count];
                let origin = match source {
                    SocketSource::Inherited(o) | SocketSource::Shared(o) => *o,
                    SocketSource::Bound => SocketOrigin::Predecessor,
                };
                next += 1;
                (listener.try_clone()?, SocketSource::Shared(origin))
            }
        };
        group.push(member);
    }
    Ok(group)
}

/// `workers` UDP sockets on `addr`, or exactly the inherited ones.
pub fn udp_group(
    addr: SocketAddr,
    workers: usize,
    inherited: Vec<(OwnedFd, SocketOrigin)>,
) -> io::Result<Group<UdpSocket>> {
    if inherited.is_empty() {
        let group = bind_group(addr, workers, bind_udp, UdpSocket::local_addr)?;
        return Ok(group
            .into_iter()
            .map(|s| (s, SocketSource::Bound))
            .collect());
    }
    inherited
        .into_iter()
        .map(|(fd, origin)| {
            check(&fd, Protocol::Udp, addr)?;
            let socket = UdpSocket::from(fd);
            socket.set_nonblocking(true)?;
            Ok((socket, SocketSource::Inherited(origin)))
        })
        .collect()
}

/// Fails unless `fd` is a socket of `protocol` (a listening one for TCP) bound to `addr`.
fn check(fd: &OwnedFd, protocol: Protocol, addr: SocketAddr) -> io::Result<()> {
    let kind = rustix::net::sockopt::socket_type(fd.as_fd())?;
    let fits = match protocol {
        Protocol::Tcp => {
            kind == SocketType::STREAM && rustix::net::sockopt::socket_acceptconn(fd.as_fd())?
        }
        Protocol::Udp => kind == SocketType::DGRAM,
    };
    let local = socket2::SockRef::from(fd).local_addr()?.as_socket();
    if !fits || local != Some(addr) {
        let what = match protocol {
            Protocol::Tcp => "a listening tcp socket",
            Protocol::Udp => "a udp socket",
        };
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("the inherited socket for {addr} is not {what} bound there"),
        ));
    }
    Ok(())
}

/// The kernel's identity of a socket (its inode), the same in every process
/// holding it: how flows handed over are matched to the socket they came in on.
pub fn socket_id(fd: impl AsFd) -> io::Result<u64> {
    Ok(rustix::fs::fstat(fd)?.st_ino)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inherited_tcp(count: usize) -> (SocketAddr, Vec<(OwnedFd, SocketOrigin)>) {
        let any: SocketAddr = "127.0.0.1:0".parse().expect("address");
        let group = bind_group(any, count, bind_tcp, TcpListener::local_addr).expect("group");
        let addr = group[0].local_addr().expect("address");
        let fds = group
            .into_iter()
            .map(|l| (OwnedFd::from(l), SocketOrigin::Predecessor))
            .collect();
        (addr, fds)
    }

    #[test]
    fn more_tcp_workers_than_inherited_sockets_bind_new_members() {
        let (addr, fds) = inherited_tcp(1);
        let group = tcp_group(addr, 3, fds).expect("group");
        let sources: Vec<SocketSource> = group.iter().map(|(_, s)| *s).collect();
        let inherited = SocketSource::Inherited(SocketOrigin::Predecessor);
        assert_eq!(
            sources,
            [inherited, SocketSource::Bound, SocketSource::Bound]
        );
        assert!(group.iter().all(|(l, _)| l.local_addr().ok() == Some(addr)));
    }

    #[test]
    fn an_inherited_socket_without_reuseport_is_shared_by_the_extra_workers() {
        let plain = TcpListener::bind("127.0.0.1:0").expect("listener");
        let addr = plain.local_addr().expect("address");
        let fds = vec![(OwnedFd::from(plain), SocketOrigin::Predecessor)];
        let group = tcp_group(addr, 2, fds).expect("group");
        assert_eq!(group[1].1, SocketSource::Shared(SocketOrigin::Predecessor));
        let ids: Vec<u64> = group
            .iter()
            .map(|(l, _)| socket_id(l).expect("id"))
            .collect();
        assert_eq!(ids[0], ids[1], "one kernel socket, two descriptors");
    }

    #[test]
    fn fewer_workers_keep_every_inherited_socket_and_udp_gets_no_new_member() {
        let (addr, fds) = inherited_tcp(3);
        assert_eq!(tcp_group(addr, 1, fds).expect("group").len(), 3);
        let udp = bind_udp("127.0.0.1:0".parse().expect("address")).expect("udp");
        let addr = udp.local_addr().expect("address");
        let fds = vec![(OwnedFd::from(udp), SocketOrigin::Predecessor)];
        assert_eq!(udp_group(addr, 4, fds).expect("group").len(), 1);
    }

    #[test]
    fn a_socket_of_the_wrong_kind_or_address_is_refused() {
        let udp = bind_udp("127.0.0.1:0".parse().expect("address")).expect("udp");
        let addr = udp.local_addr().expect("address");
        let fds = vec![(OwnedFd::from(udp), SocketOrigin::Predecessor)];
        let error = tcp_group(addr, 1, fds).expect_err("a udp socket for tcp");
        assert!(
            error.to_string().contains("not a listening tcp socket"),
            "{error}"
        );
        let (addr, fds) = inherited_tcp(1);
        let elsewhere = SocketAddr::new(addr.ip(), addr.port().wrapping_add(1));
        assert!(tcp_group(elsewhere, 1, fds).is_err());
    }
}
