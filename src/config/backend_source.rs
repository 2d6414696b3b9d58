//! Where backend connections come from: the `source`, `source_port` and `mark`
//! keys of a service, as checked values.
//!
//! This file owns only the data types and their small, pure helpers; the rules
//! are in `source_rules.rs`, the sockets that apply them in
//! `proxy::backend_socket`.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

/// `source`: the local address of backend connections (tcp) and flow sockets (udp).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SourceAddress {
    /// The kernel chooses (by the route to the backend). The default.
    #[default]
    Kernel,
    /// `"client"`: the client's own address (`IP_TRANSPARENT`).
    Client,
    /// A fixed local address of this host (`IP_BIND_ADDRESS_NO_PORT` on tcp).
    Fixed(IpAddr),
}

/// `source_port`: the local port when connecting from the client's address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SourcePort {
    /// The kernel chooses at connect time. The default.
    #[default]
    Any,
    /// The client's own port where it is free, else the kernel's choice.
    Client,
}

/// The three keys together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BackendSource {
    pub address: SourceAddress,
    pub port: SourcePort,
    /// `SO_MARK` on backend sockets; 0 = none (the kernel's default mark).
    pub mark: u32,
}

impl BackendSource {
    /// Whether nothing is asked of the kernel beyond a plain connect.
    pub fn is_plain(&self) -> bool {
        *self == BackendSource::default()
    }

    /// Whether `IP_TRANSPARENT` is needed (and so CAP_NET_ADMIN or CAP_NET_RAW).
    pub fn is_transparent(&self) -> bool {
        self.address == SourceAddress::Client
    }

    /// For `l4lb check`'s summary: "from the client's address and port, mark 42";
    /// `None` when plain.
    pub fn describe(&self) -> Option<String> {
        let from = match (self.address, self.port) {
            (SourceAddress::Kernel, _) => None,
            (SourceAddress::Client, SourcePort::Any) => Some("from the client's address".into()),
            (SourceAddress::Client, SourcePort::Client) => {
                Some("from the client's address and port".into())
            }
            (SourceAddress::Fixed(ip), _) => Some(format!("from {ip}")),
        };
        let mark = (self.mark != 0).then(|| format!("mark {}", self.mark));
        let parts: Vec<String> = from.into_iter().chain(mark).collect();
        (!parts.is_empty()).then(|| parts.join(", "))
    }

    /// The address to bind before connecting from `client` to `backend`:
    /// `Ok(None)` lets the kernel choose. `Err`: the client's address is of
    /// another family than the backend's, so it cannot be used.
    pub fn local_address(
        &self,
        client: SocketAddr,
        backend: SocketAddr,
    ) -> Result<Option<SocketAddr>, FamilyMismatch> {
        let ip = match self.address {
            SourceAddress::Kernel => return Ok(None),
            SourceAddress::Fixed(ip) => ip,
            // A client on this very host: a loopback source cannot leave it
            // (the kernel drops such packets), and this host's own address is
            // the client's anyway.
            SourceAddress::Client if is_loopback(client.ip()) && !is_loopback(backend.ip()) => {
                return Ok(None);
            }
            SourceAddress::Client => client.ip(),
        };
        let ip = same_family(ip, backend.ip()).ok_or(FamilyMismatch { ip, backend })?;
        let port = match (self.address, self.port) {
            (SourceAddress::Client, SourcePort::Client) => client.port(),
            _ => 0,
        };
        Ok(Some(SocketAddr::new(ip, port)))
    }
}

/// Loopback, IPv4-mapped loopback included.
fn is_loopback(ip: IpAddr) -> bool {
    ip.to_canonical().is_loopback()
}

/// `ip` in the family of `like`: as it is, or an IPv4-mapped IPv6 address
/// unmapped; `None` when that is impossible.
fn same_family(ip: IpAddr, like: IpAddr) -> Option<IpAddr> {
    match (ip, like) {
        (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => Some(ip),
        (IpAddr::V6(v6), IpAddr::V4(_)) => v6.to_ipv4_mapped().map(IpAddr::V4),
        (IpAddr::V4(_), IpAddr::V6(_)) => None,
    }
}

/// A source address that cannot reach a backend of the other family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FamilyMismatch {
    pub ip: IpAddr,
    pub backend: SocketAddr,
}

impl fmt::Display for FamilyMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot connect from {} to backend {}: the addresses are of different families",
            self.ip, self.backend
        )
    }
}

impl std::error::Error for FamilyMismatch {}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn the_kernel_chooses_by_default() {
        let source = BackendSource::default();
        assert!(source.is_plain());
        let local = source.local_address(addr("10.0.0.5:4000"), addr("10.1.0.1:5432"));
        assert_eq!(local, Ok(None));
    }

    #[test]
    fn client_source_keeps_the_client_port_only_when_asked() {
        let client = addr("10.0.0.5:4000");
        let backend = addr("10.1.0.1:5432");
        let mut source = BackendSource {
            address: SourceAddress::Client,
            ..BackendSource::default()
        };
        assert_eq!(
            source.local_address(client, backend),
            Ok(Some(addr("10.0.0.5:0")))
        );
        source.port = SourcePort::Client;
        assert_eq!(source.local_address(client, backend), Ok(Some(client)));
    }

    #[test]
    fn a_fixed_source_never_takes_the_client_port() {
        let source = BackendSource {
            address: SourceAddress::Fixed("192.0.2.7".parse().unwrap()),
            port: SourcePort::Client,
            mark: 0,
        };
        let local = source.local_address(addr("10.0.0.5:4000"), addr("10.1.0.1:5432"));
        assert_eq!(local, Ok(Some(addr("192.0.2.7:0"))));
    }

    #[test]
    fn the_summary_names_the_source_and_the_mark() {
        let mut source = BackendSource::default();
        assert_eq!(source.describe(), None);
        source.mark = 42;
        assert_eq!(source.describe().as_deref(), Some("mark 42"));
        source.address = SourceAddress::Client;
        source.port = SourcePort::Client;
        let text = source.describe();
        assert_eq!(
            text.as_deref(),
            Some("from the client's address and port, mark 42")
        );
    }

    #[test]
    fn a_client_on_this_host_reaches_a_remote_backend_from_this_hosts_address() {
        let source = BackendSource {
            address: SourceAddress::Client,
            port: SourcePort::Client,
            mark: 0,
        };
        let local_client = addr("127.0.0.1:4000");
        assert_eq!(
            source.local_address(local_client, addr("10.1.0.1:80")),
            Ok(None)
        );
        let local_backend = addr("127.0.0.2:80");
        let kept = source.local_address(local_client, local_backend);
        assert_eq!(kept, Ok(Some(local_client)));
    }

    #[test]
    fn families_must_match_and_mapped_addresses_are_unmapped() {
        let source = BackendSource {
            address: SourceAddress::Client,
            ..BackendSource::default()
        };
        let v6_backend = addr("[2001:db8::1]:5432");
        let refused = source.local_address(addr("10.0.0.5:4000"), v6_backend);
        assert!(refused.is_err());
        let mapped = source.local_address(addr("[::ffff:10.0.0.5]:4000"), addr("10.1.0.1:80"));
        assert_eq!(mapped, Ok(Some(addr("10.0.0.5:0"))));
    }
}
