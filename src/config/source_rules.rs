//! Rules for `source`, `source_port` and `mark`: the values themselves, and
//! that a source address can reach each backend (same address family).
//!
//! Whether this host has the address and the process the capability is a
//! question about the running system, not the file: `proxy::source_check`
//! answers it when a configuration is started.

use std::net::{IpAddr, SocketAddr};

use super::backend_source::{BackendSource, SourceAddress, SourcePort};
use super::checker::Checker;
use super::file::RawService;

const SOURCE_PORTS: &[(&str, SourcePort)] =
    &[("any", SourcePort::Any), ("client", SourcePort::Client)];

impl Checker<'_, '_> {
    /// The service's `source`, `source_port` and `mark`, reporting bad values.
    pub fn backend_source(&mut self, raw: &RawService) -> BackendSource {
        // `None`: written but invalid (reported), so source_port is not judged by it.
        let address = match &raw.source {
            None => Some(SourceAddress::Kernel),
            Some(text) => parse_source(text.get_ref())
                .map_err(|message| self.fail(&text.span(), "source", message))
                .ok(),
        };
        let port = self
            .choice(
                "source_port",
                &raw.source_port,
                SOURCE_PORTS,
                SourcePort::Any,
            )
            .unwrap_or(SourcePort::Any);
        if let (SourcePort::Client, Some(text), Some(address)) = (port, &raw.source_port, address) {
            let message = match address {
                SourceAddress::Client => None,
                SourceAddress::Kernel => {
                    Some("\"client\" keeps the client's port, which needs source = \"client\" too")
                }
                SourceAddress::Fixed(_) => Some(
                    "\"client\" keeps the client's port, which only applies with \
                     source = \"client\"; remove source_port or set source = \"client\"",
                ),
            };
            if let Some(message) = message {
                self.fail(&text.span(), "source_port", message.to_string());
            }
        }
        let address = address.unwrap_or_default();
        let mark = self.int("mark", &raw.mark, 0..=u32::MAX as i64, 0);
        BackendSource {
            address,
            port,
            mark: u32::try_from(mark).unwrap_or(0),
        }
    }
}

/// `"client"`, an IP address literal, or `""` (the kernel's choice, as when unset).
fn parse_source(text: &str) -> Result<SourceAddress, String> {
    match text {
        "" => return Ok(SourceAddress::Kernel),
        "client" => return Ok(SourceAddress::Client),
        _ => {}
    }
    match text.parse::<IpAddr>() {
        Ok(ip) if ip.is_unspecified() || ip.is_multicast() => Err(format!(
            "must be a unicast address of this host, got \"{text}\" (leave source out to let \
             the kernel choose)"
        )),
        Ok(ip) => Ok(SourceAddress::Fixed(ip)),
        Err(_) => Err(format!(
            "must be \"client\" or an IP address of this host without a port, e.g. \
             \"10.0.0.5\" or \"2001:db8::5\"; got \"{text}\""
        )),
    }
}

/// Why backend `backend` cannot be reached from the service's source address,
/// if it cannot: a fixed source of the other family, or (with `source =
/// "client"`) listen addresses that only give clients of the other family.
/// Behind a PROXY header the client may be of either family, so that case is
/// left to the connect (which refuses the one client).
pub fn family_problem(
    source: &BackendSource,
    listen: &[SocketAddr],
    accept_proxy_protocol: bool,
    backend: SocketAddr,
) -> Option<String> {
    let v4 = backend.is_ipv4();
    let family = if v4 { "IPv4" } else { "IPv6" };
    match source.address {
        SourceAddress::Kernel => None,
        SourceAddress::Fixed(ip) if ip.is_ipv4() != v4 => Some(format!(
            "this {family} backend cannot be reached from source {ip}: use a backend and a \
             source of the same address family"
        )),
        SourceAddress::Fixed(_) => None,
        SourceAddress::Client if accept_proxy_protocol => None,
        SourceAddress::Client => {
            let other = listen.iter().find(|l| l.is_ipv4() != v4)?;
            Some(format!(
                "source = \"client\" connects from the client's own address, and clients \
                 on listen address {other} are not {family} like this backend: list \
                 backends of the listen addresses' family (or use one service per family)"
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn source_is_client_or_an_address() {
        assert_eq!(parse_source("client"), Ok(SourceAddress::Client));
        assert_eq!(parse_source(""), Ok(SourceAddress::Kernel));
        let fixed = parse_source("2001:db8::5").unwrap();
        assert_eq!(fixed, SourceAddress::Fixed("2001:db8::5".parse().unwrap()));
        assert!(
            parse_source("10.0.0.5:80")
                .unwrap_err()
                .contains("without a port")
        );
        assert!(parse_source("0.0.0.0").unwrap_err().contains("unicast"));
        assert!(parse_source("Client").is_err());
    }

    #[test]
    fn families_are_checked_against_the_source() {
        let fixed = BackendSource {
            address: SourceAddress::Fixed("10.0.0.5".parse().unwrap()),
            ..BackendSource::default()
        };
        let listen = [addr("0.0.0.0:80")];
        assert!(family_problem(&fixed, &listen, false, addr("10.1.0.1:80")).is_none());
        let problem = family_problem(&fixed, &listen, false, addr("[2001:db8::1]:80"));
        assert!(problem.unwrap().contains("source 10.0.0.5"));
    }

    #[test]
    fn client_source_needs_listeners_of_the_backend_family() {
        let client = BackendSource {
            address: SourceAddress::Client,
            ..BackendSource::default()
        };
        let both = [addr("0.0.0.0:80"), addr("[::]:80")];
        let problem = family_problem(&client, &both, false, addr("10.1.0.1:80"));
        assert!(problem.unwrap().contains("[::]:80"));
        assert!(family_problem(&client, &both, true, addr("10.1.0.1:80")).is_none());
        assert!(family_problem(&client, &both[..1], false, addr("10.1.0.1:80")).is_none());
    }
}
