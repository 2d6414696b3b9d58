//! Socket addresses: parsing `IP:port`, `[IPv6]:port` and `host:port`,
//! resolving host names, and finding listen addresses that collide.
//!
//! This file owns what an address may look like and when two listeners
//! overlap. It does not know which keys hold addresses: `validate.rs` does.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use super::model::{Protocol, ServiceConfig};
use super::report::{Report, Span};

/// Resolves a host name and port to its first address (`None`: no address).
pub type Resolve = fn(&str, u16) -> io::Result<Option<SocketAddr>>;

const EXPECTED_FORMS: &str = "expected IP:port, [IPv6]:port or host:port";

/// Parses an address, resolving a host name with `resolve`.
pub fn resolve_address(text: &str, resolve: Resolve) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let (host, port) = split_host_port(text)?;
    if looks_like_ipv4(host) {
        return Err(format!(
            "invalid IPv4 address \"{host}\" in \"{text}\": expected four numbers from 0 to \
             255 separated by dots, e.g. \"10.0.0.11:5432\""
        ));
    }
    match resolve(host, port) {
        Ok(Some(addr)) => Ok(addr),
        Ok(None) => Err(format!("host \"{host}\" resolved to no addresses")),
        Err(e) => Err(format!("cannot resolve host \"{host}\" in \"{text}\": {e}")),
    }
}

/// Whether `host` is made of digits and dots only: an attempt at an IPv4
/// literal (host names of that shape are not resolved either).
fn looks_like_ipv4(host: &str) -> bool {
    host.bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

/// Splits `host:port` where host is a name (IP literals parse earlier).
fn split_host_port(text: &str) -> Result<(&str, u16), String> {
    let Some((host, port)) = text.rsplit_once(':') else {
        return Err(format!("missing port in \"{text}\": {EXPECTED_FORMS}"));
    };
    if host.starts_with('[') || text.parse::<Ipv6Addr>().is_ok() {
        return Err(format!(
            "invalid address \"{text}\": an IPv6 address needs brackets and a port, e.g. \"[::1]:80\""
        ));
    }
    if host.is_empty() || host.contains(':') {
        return Err(format!("invalid address \"{text}\": {EXPECTED_FORMS}"));
    }
    let port = port
        .parse::<u16>()
        .map_err(|_| format!("invalid port in \"{text}\": expected a number from 0 to 65535"))?;
    Ok((host, port))
}

/// One address a service (or the admin endpoint) listens on.
pub struct Listener {
    pub protocol: Protocol,
    pub addr: SocketAddr,
    pub span: Span,
    pub path: String,
}

/// Reports every listener whose address is already taken by an earlier one:
/// the same protocol and port, and the same IP or a wildcard of the same
/// family. Port 0 (any free port) never collides.
pub fn check_conflicts(listeners: &[Listener], report: &mut Report) {
    for (i, later) in listeners.iter().enumerate() {
        if let Some(earlier) = listeners[..i].iter().find(|e| collide(e, later)) {
            let message = conflict_message(earlier, later, report);
            report.at(&later.span, &later.path, message);
        }
    }
}

fn collide(a: &Listener, b: &Listener) -> bool {
    let (x, y) = (a.addr, b.addr);
    a.protocol == b.protocol
        && x.port() != 0
        && x.port() == y.port()
        && x.is_ipv4() == y.is_ipv4()
        && (x.ip() == y.ip() || x.ip().is_unspecified() || y.ip().is_unspecified())
}

fn conflict_message(earlier: &Listener, later: &Listener, report: &Report) -> String {
    let place = format!("{} at {}", earlier.path, report.describe(&earlier.span));
    if earlier.addr == later.addr {
        format!(
            "{} {} is already used by {place}",
            later.protocol, later.addr
        )
    } else {
        format!(
            "{} {} overlaps {} used by {place} (a wildcard address takes the port on every address)",
            later.protocol, later.addr, earlier.addr
        )
    }
}

/// Finds the listener a backend address would send clients back into: the
/// same protocol and port, and the same IP, or a wildcard listener and a
/// loopback or wildcard backend of its family (a connect to `127.x` or to
/// `0.0.0.0` reaches `0.0.0.0:p`).
pub struct LoopFinder<'l> {
    by_port: HashMap<u16, Vec<&'l Listener>>,
}

impl<'l> LoopFinder<'l> {
    pub fn new(listeners: &'l [Listener]) -> Self {
        let mut by_port: HashMap<u16, Vec<&Listener>> = HashMap::new();
        for listener in listeners.iter().filter(|l| l.addr.port() != 0) {
            by_port
                .entry(listener.addr.port())
                .or_default()
                .push(listener);
        }
        LoopFinder { by_port }
    }

    /// The listener `backend` (of a `protocol` service) reaches, if any.
    pub fn find(&self, protocol: Protocol, backend: SocketAddr) -> Option<&'l Listener> {
        let candidates = self.by_port.get(&backend.port())?;
        candidates
            .iter()
            .find(|l| l.protocol == protocol && reaches(backend, l.addr))
            .copied()
    }
}

/// The listen address of `services` that `backend`, a backend of a `protocol`
/// service, would send clients back into, if any (the rule of [`LoopFinder`],
/// for addresses found after the file was checked).
pub fn own_listener_reached(
    services: &[ServiceConfig],
    protocol: Protocol,
    backend: SocketAddr,
) -> Option<SocketAddr> {
    services
        .iter()
        .filter(|s| s.protocol == protocol)
        .flat_map(|s| s.listen.iter().copied())
        .find(|listen| listen.port() != 0 && reaches(backend, *listen))
}

fn reaches(backend: SocketAddr, listen: SocketAddr) -> bool {
    let (to, on) = (backend.ip(), listen.ip());
    let local = |ip: IpAddr| ip.is_loopback() || ip.is_unspecified();
    backend.port() == listen.port()
        && to.is_ipv4() == on.is_ipv4()
        && (to == on
            || (on.is_unspecified() && local(to))
            || (to.is_unspecified() && on.is_loopback()))
}

/// Why a backend that reaches `listener` is refused.
pub fn loop_message(backend: SocketAddr, listener: &Listener, report: &Report) -> String {
    let place = format!("{} at {}", listener.path, report.describe(&listener.span));
    let what = if backend == listener.addr {
        format!("{backend} is l4lb's own listen address ({place})")
    } else {
        format!(
            "{backend} reaches l4lb's own listen address {} ({place}), which takes port {} \
             on every local address",
            listener.addr,
            listener.addr.port()
        )
    };
    format!("{what}: clients would be proxied back into l4lb; point it at the real server")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_dns(host: &str, port: u16) -> io::Result<Option<SocketAddr>> {
        match host {
            "localhost" => Ok(Some(SocketAddr::from(([127, 0, 0, 1], port)))),
            "empty.test" => Ok(None),
            _ => Err(io::Error::other("Name or service not known")),
        }
    }

    fn resolve(text: &str) -> Result<SocketAddr, String> {
        resolve_address(text, no_dns)
    }

    #[test]
    fn literal_addresses() {
        assert_eq!(resolve("127.0.0.1:80").unwrap().to_string(), "127.0.0.1:80");
        assert_eq!(resolve("[::1]:0").unwrap().to_string(), "[::1]:0");
        assert_eq!(
            resolve("localhost:6432").unwrap().to_string(),
            "127.0.0.1:6432"
        );
    }

    #[test]
    fn malformed_addresses() {
        assert_eq!(
            resolve("127.0.0.1").unwrap_err(),
            "missing port in \"127.0.0.1\": expected IP:port, [IPv6]:port or host:port"
        );
        assert_eq!(
            resolve("::1").unwrap_err(),
            "invalid address \"::1\": an IPv6 address needs brackets and a port, e.g. \"[::1]:80\""
        );
        assert_eq!(
            resolve("[::1:80").unwrap_err(),
            "invalid address \"[::1:80\": an IPv6 address needs brackets and a port, e.g. \"[::1]:80\""
        );
        assert_eq!(
            resolve(":80").unwrap_err(),
            "invalid address \":80\": expected IP:port, [IPv6]:port or host:port"
        );
        assert_eq!(
            resolve("localhost:70000").unwrap_err(),
            "invalid port in \"localhost:70000\": expected a number from 0 to 65535"
        );
        assert_eq!(
            resolve("127.0.0.256:5432").unwrap_err(),
            "invalid IPv4 address \"127.0.0.256\" in \"127.0.0.256:5432\": expected four \
             numbers from 0 to 255 separated by dots, e.g. \"10.0.0.11:5432\""
        );
        assert!(
            resolve("10.1:80")
                .unwrap_err()
                .starts_with("invalid IPv4 address")
        );
        assert_eq!(
            resolve("empty.test:1").unwrap_err(),
            "host \"empty.test\" resolved to no addresses"
        );
        assert_eq!(
            resolve("db.invalid:1").unwrap_err(),
            "cannot resolve host \"db.invalid\" in \"db.invalid:1\": Name or service not known"
        );
    }

    fn listener(protocol: Protocol, addr: &str) -> Listener {
        Listener {
            protocol,
            addr: addr.parse().unwrap(),
            span: 0..1,
            path: addr.to_string(),
        }
    }

    #[test]
    fn backends_that_reach_a_listener() {
        let at = |a: &str| a.parse::<SocketAddr>().unwrap();
        assert!(reaches(at("127.0.0.1:80"), at("127.0.0.1:80")));
        assert!(reaches(at("127.0.0.5:80"), at("0.0.0.0:80")));
        assert!(reaches(at("0.0.0.0:80"), at("0.0.0.0:80")));
        assert!(reaches(at("0.0.0.0:80"), at("127.0.0.1:80")));
        assert!(reaches(at("[::1]:80"), at("[::]:80")));
        assert!(!reaches(at("127.0.0.1:80"), at("[::]:80")));
        assert!(!reaches(at("10.0.0.1:80"), at("0.0.0.0:80")));
        assert!(!reaches(at("127.0.0.2:80"), at("127.0.0.1:80")));
        assert!(!reaches(at("127.0.0.1:81"), at("0.0.0.0:80")));
    }

    #[test]
    fn collisions() {
        let tcp = |a| listener(Protocol::Tcp, a);
        assert!(collide(&tcp("127.0.0.1:80"), &tcp("127.0.0.1:80")));
        assert!(collide(&tcp("0.0.0.0:80"), &tcp("127.0.0.1:80")));
        assert!(collide(&tcp("127.0.0.1:80"), &tcp("0.0.0.0:80")));
        assert!(collide(&tcp("[::]:80"), &tcp("[::1]:80")));
        assert!(!collide(&tcp("0.0.0.0:80"), &tcp("[::]:80")));
        assert!(!collide(&tcp("127.0.0.1:80"), &tcp("127.0.0.2:80")));
        assert!(!collide(&tcp("127.0.0.1:0"), &tcp("127.0.0.1:0")));
        assert!(!collide(
            &tcp("127.0.0.1:80"),
            &listener(Protocol::Udp, "127.0.0.1:80")
        ));
    }
}
