//! Source-address access control: `allow` and `deny` CIDR lists (IPv4 and IPv6).
//!
//! An empty `allow` list lets everyone in; `deny` wins over `allow`. IPv4-mapped
//! IPv6 addresses (`::ffff:a.b.c.d`, as seen on dual-stack sockets) are matched as
//! the IPv4 addresses they are. Pure: no I/O.

use std::net::IpAddr;

use ipnet::IpNet;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Acl {
    allow: Vec<IpNet>,
    deny: Vec<IpNet>,
}

impl Acl {
    pub fn new(allow: Vec<IpNet>, deny: Vec<IpNet>) -> Acl {
        Acl { allow, deny }
    }

    /// Whether the lists restrict anyone at all (so the check can be skipped).
    pub fn is_open(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty()
    }

    /// Whether a client from `ip` may use the service.
    pub fn permits(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        let listed = |nets: &[IpNet]| nets.iter().any(|net| net.contains(&ip));
        !listed(&self.deny) && (self.allow.is_empty() || listed(&self.allow))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter()
            .map(|n| n.parse().expect("literal CIDR"))
            .collect()
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("literal IP")
    }

    #[test]
    fn empty_lists_let_everyone_in() {
        let acl = Acl::default();
        assert!(acl.is_open());
        assert!(acl.permits(ip("203.0.113.9")));
        assert!(acl.permits(ip("2001:db8::1")));
    }

    #[test]
    fn allow_list_admits_only_its_networks() {
        let acl = Acl::new(nets(&["10.0.0.0/8", "2001:db8::/32"]), vec![]);
        assert!(acl.permits(ip("10.1.2.3")));
        assert!(acl.permits(ip("2001:db8:1::5")));
        assert!(!acl.permits(ip("192.0.2.1")));
        assert!(!acl.permits(ip("2001:db9::1")));
    }

    #[test]
    fn deny_wins_over_allow() {
        let acl = Acl::new(nets(&["10.0.0.0/8"]), nets(&["10.1.0.0/16"]));
        assert!(acl.permits(ip("10.2.0.1")));
        assert!(!acl.permits(ip("10.1.0.1")));
    }

    #[test]
    fn deny_alone_refuses_only_its_networks() {
        let acl = Acl::new(vec![], nets(&["127.0.0.66/32"]));
        assert!(!acl.permits(ip("127.0.0.66")));
        assert!(acl.permits(ip("127.0.0.67")));
    }

    #[test]
    fn ipv4_mapped_addresses_match_ipv4_networks() {
        let acl = Acl::new(nets(&["192.0.2.0/24"]), vec![]);
        assert!(acl.permits(ip("::ffff:192.0.2.10")));
        assert!(!acl.permits(ip("::ffff:198.51.100.1")));
    }
}
