//! This process's own UDP listen addresses, so that a datagram claiming one of
//! them as its source is refused instead of starting a loop.
//!
//! Replies leave from a service's listen address. A datagram whose source is a
//! listen address of this process (spoofed, or a reply of one service reaching
//! another) would make l4lb answer itself: the reply comes back as a client
//! datagram, is forwarded, answered, and so on forever. A source is "own" when
//! it is exactly a UDP listen address (IP and port), or, for a wildcard listen
//! address `0.0.0.0:P` / `[::]:P`, when its port is `P` and its IP is one of this
//! host's (loopback, or an interface address known when the listeners last
//! changed) in the same address family. A remote host sending from its own port
//! `P` is not refused.
//!
//! Pure matching; `host_ips` reads the interface addresses. Knows nothing of
//! services or sockets.

use std::net::{IpAddr, SocketAddr};

/// The UDP listen addresses of this process, and this host's IP addresses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnAddresses {
    /// Listen addresses with a specific IP.
    specific: Vec<(IpAddr, u16)>,
    /// Wildcard listen addresses (`0.0.0.0:P`, `[::]:P`).
    wildcard: Vec<SocketAddr>,
    /// Interface addresses of this host (loopback ones need not be listed).
    host_ips: Vec<IpAddr>,
}

impl OwnAddresses {
    /// `listen`: every UDP address bound (with its real port); `host_ips`: the
    /// interface addresses of this host.
    pub fn new(listen: impl IntoIterator<Item = SocketAddr>, host_ips: Vec<IpAddr>) -> Self {
        let (wildcard, specific): (Vec<SocketAddr>, Vec<SocketAddr>) =
            listen.into_iter().partition(|a| a.ip().is_unspecified());
        OwnAddresses {
            specific: specific
                .iter()
                .map(|a| (a.ip().to_canonical(), a.port()))
                .collect(),
            wildcard,
            host_ips: host_ips.iter().map(IpAddr::to_canonical).collect(),
        }
    }

    /// Whether `source` is one of this process's own UDP listen addresses.
    pub fn contains(&self, source: SocketAddr) -> bool {
        let (ip, port) = (source.ip().to_canonical(), source.port());
        self.specific.contains(&(ip, port))
            || self.wildcard.iter().any(|listen| {
                listen.port() == port && listen.is_ipv4() == ip.is_ipv4() && self.is_host_ip(ip)
            })
    }

    fn is_host_ip(&self, ip: IpAddr) -> bool {
        ip.is_loopback() || self.host_ips.contains(&ip)
    }
}

/// This host's interface addresses; an error (logged by the caller) leaves
/// only loopback known.
pub fn host_ips() -> std::io::Result<Vec<IpAddr>> {
    Ok(if_addrs::get_if_addrs()?
        .iter()
        .map(if_addrs::Interface::ip)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().expect("socket address literal")
    }

    fn own(listen: &[&str], host: &[&str]) -> OwnAddresses {
        let host = host.iter().map(|ip| ip.parse().expect("ip literal"));
        OwnAddresses::new(listen.iter().map(|a| addr(a)), host.collect())
    }

    #[test]
    fn a_specific_listen_address_matches_only_itself() {
        let own = own(&["127.0.0.1:5353", "[::1]:5353"], &[]);
        assert!(own.contains(addr("127.0.0.1:5353")));
        assert!(own.contains(addr("[::1]:5353")));
        assert!(own.contains(addr("[::ffff:127.0.0.1]:5353")), "v4-mapped");
        assert!(!own.contains(addr("127.0.0.2:5353")), "another loopback IP");
        assert!(!own.contains(addr("127.0.0.1:5354")), "another port");
    }

    #[test]
    fn a_wildcard_matches_its_port_on_this_hosts_addresses_only() {
        let own = own(&["0.0.0.0:53"], &["192.0.2.7", "2001:db8::7"]);
        assert!(own.contains(addr("127.0.0.1:53")));
        assert!(own.contains(addr("127.9.9.9:53")), "all of 127/8 is local");
        assert!(own.contains(addr("192.0.2.7:53")), "an interface address");
        assert!(
            !own.contains(addr("198.51.100.1:53")),
            "a remote host may use port 53"
        );
        assert!(!own.contains(addr("192.0.2.7:54")));
        assert!(
            !own.contains(addr("[::1]:53")),
            "0.0.0.0 does not listen on IPv6"
        );
        assert!(!own.contains(addr("[2001:db8::7]:53")));
    }

    #[test]
    fn an_ipv6_wildcard_matches_ipv6_sources_only() {
        let own = own(&["[::]:53"], &["192.0.2.7", "2001:db8::7"]);
        assert!(own.contains(addr("[::1]:53")));
        assert!(own.contains(addr("[2001:db8::7]:53")));
        assert!(!own.contains(addr("127.0.0.1:53")));
        assert!(!own.contains(addr("192.0.2.7:53")));
    }

    #[test]
    fn nothing_is_own_without_listen_addresses() {
        let own = own(&[], &["192.0.2.7"]);
        assert!(!own.contains(addr("127.0.0.1:53")));
        assert!(!own.contains(addr("192.0.2.7:53")));
    }

    #[test]
    fn this_hosts_addresses_include_loopback() {
        let ips = host_ips().expect("interface addresses");
        assert!(ips.iter().any(IpAddr::is_loopback), "{ips:?}");
    }
}
