//! Sockets this process was given at start, already bound, waiting for the
//! listener that asks for their address.
//!
//! A predecessor hands its sockets over the control socket (see `takeover`);
//! any other source (a service manager's socket activation) adds its own
//! sockets here the same way, naming itself in [`SocketOrigin`]. Sockets are
//! keyed by (protocol, bound local address): a listener whose configured
//! address is one of them takes the whole group (a SO_REUSEPORT group may be
//! several sockets) and binds only what is still missing. Whatever nobody took
//! is closed once the process has started, with a log line naming each, so an
//! address that left the configuration stops being served.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;

use serde::Serialize;
use tracing::{info, warn};

use crate::config::Protocol;
use crate::socket_activation::ActivatedSocket;

/// Where an inherited socket came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SocketOrigin {
    /// The l4lb process this one upgraded from (over the control socket).
    Predecessor,
    /// systemd: a socket unit, or the file-descriptor store on a restart
    /// (`LISTEN_FDS`, see `socket_activation`).
    Systemd,
}

impl SocketOrigin {
    pub fn as_str(self) -> &'static str {
        match self {
            SocketOrigin::Predecessor => "predecessor",
            SocketOrigin::Systemd => "systemd",
        }
    }
}

impl fmt::Display for SocketOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One inherited socket that nobody took.
#[derive(Debug)]
pub struct Leftover {
    pub protocol: Protocol,
    pub local: SocketAddr,
    pub origin: SocketOrigin,
    pub fd: OwnedFd,
}

/// The pool of inherited sockets, by (protocol, bound local address).
#[derive(Debug, Default)]
pub struct InheritedSockets {
    by_address: HashMap<(Protocol, SocketAddr), Vec<(OwnedFd, SocketOrigin)>>,
}

impl InheritedSockets {
    pub fn add(
        &mut self,
        protocol: Protocol,
        local: SocketAddr,
        fd: OwnedFd,
        origin: SocketOrigin,
    ) {
        self.by_address
            .entry((protocol, local))
            .or_default()
            .push((fd, origin));
    }

    /// Every inherited socket listening on `addr` (a SO_REUSEPORT group may be
    /// several), in the order they were added.
    pub fn take(&mut self, protocol: Protocol, addr: SocketAddr) -> Vec<(OwnedFd, SocketOrigin)> {
        self.by_address
            .remove(&(protocol, addr))
            .unwrap_or_default()
    }

    /// Adds the sockets systemd passed (see `socket_activation`), logging each.
    pub fn add_activated(&mut self, sockets: Vec<ActivatedSocket>) {
        for socket in sockets {
            info!(name = %socket.name, protocol = %socket.protocol, address = %socket.local,
                "socket passed by systemd");
            self.add(
                socket.protocol,
                socket.local,
                socket.fd,
                SocketOrigin::Systemd,
            );
        }
    }

    pub fn is_empty(&self) -> bool {
        self.by_address.is_empty()
    }

    /// How many sockets are waiting.
    pub fn len(&self) -> usize {
        self.by_address.values().map(Vec::len).sum()
    }

    /// What nobody took.
    pub fn into_leftovers(self) -> Vec<Leftover> {
        let mut leftovers: Vec<Leftover> = self
            .by_address
            .into_iter()
            .flat_map(|((protocol, local), fds)| {
                fds.into_iter().map(move |(fd, origin)| Leftover {
                    protocol,
                    local,
                    origin,
                    fd,
                })
            })
            .collect();
        leftovers.sort_by_key(|l| (l.local, l.protocol.as_str()));
        leftovers
    }

    /// Closes what nobody took, logging each (the configuration no longer lists it).
    pub fn close_leftovers(self) {
        for leftover in self.into_leftovers() {
            match leftover.origin {
                SocketOrigin::Predecessor => info!(protocol = %leftover.protocol,
                    address = %leftover.local, origin = %leftover.origin,
                    "inherited socket not in the configuration: closed"),
                // systemd keeps its own copy open: clients still queue there.
                SocketOrigin::Systemd => warn!(protocol = %leftover.protocol,
                    address = %leftover.local,
                    "socket passed by systemd is not in the configuration: l4lb closed its copy, \
                     but systemd keeps it open and clients connecting there wait; remove it from \
                     the socket unit (or restart without the fd store)"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fd() -> OwnedFd {
        std::net::UdpSocket::bind("127.0.0.1:0")
            .expect("socket")
            .into()
    }

    #[test]
    fn a_group_is_taken_whole_once_and_the_rest_is_left_over() {
        let a: SocketAddr = "127.0.0.1:7000".parse().expect("address");
        let b: SocketAddr = "127.0.0.1:7001".parse().expect("address");
        let mut pool = InheritedSockets::default();
        pool.add(Protocol::Tcp, a, fd(), SocketOrigin::Predecessor);
        pool.add(Protocol::Tcp, a, fd(), SocketOrigin::Predecessor);
        pool.add(Protocol::Udp, a, fd(), SocketOrigin::Predecessor);
        pool.add(Protocol::Tcp, b, fd(), SocketOrigin::Predecessor);
        assert_eq!(pool.len(), 4);
        assert_eq!(pool.take(Protocol::Tcp, a).len(), 2);
        assert!(pool.take(Protocol::Tcp, a).is_empty(), "taken once");
        assert_eq!(
            pool.take(Protocol::Udp, a).len(),
            1,
            "protocol is part of the key"
        );
        let left = pool.into_leftovers();
        assert_eq!(left.len(), 1);
        assert_eq!((left[0].protocol, left[0].local), (Protocol::Tcp, b));
    }
}
