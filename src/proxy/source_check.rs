//! Whether this process and host can use each service's `source` and `mark`,
//! tried for real on throwaway sockets (the kernel is the only reliable
//! judge of capabilities, namespaces and local addresses).
//!
//! `l4lb run` (and a reload) refuses a configuration that fails here, naming
//! the service and what is missing, rather than failing every client's
//! connect later; `l4lb check` prints the same findings as warnings, since it
//! may run elsewhere or unprivileged. Nothing here is kept open.

use std::collections::BTreeSet;
use std::fmt;
use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

use crate::config::{Config, Protocol as ServiceProtocol, ServiceConfig, SourceAddress};
use crate::proxy::backend_socket::{bind_source, set_bind_address_no_port, set_transparent};

/// How to grant what `source = "client"` and `mark` need under systemd.
const GRANT_HINT: &str = "run l4lb as root or grant the capability (with systemd: \
                          AmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW, as in \
                          systemd/transparent.conf)";

/// One service whose source settings cannot work here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceProblem {
    pub service: String,
    pub message: String,
}

impl fmt::Display for SourceProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "service \"{}\": {}", self.service, self.message)
    }
}

impl std::error::Error for SourceProblem {}

/// Every service of `config` whose source settings this process cannot apply.
pub fn check(config: &Config) -> Vec<SourceProblem> {
    config
        .services
        .iter()
        .filter(|s| !s.source.is_plain())
        .filter_map(|s| {
            check_service(s).err().map(|message| SourceProblem {
                service: s.name.clone(),
                message,
            })
        })
        .collect()
}

/// Tries the service's settings once per address family of its backends.
fn check_service(service: &ServiceConfig) -> Result<(), String> {
    let families: BTreeSet<bool> = service
        .backends
        .iter()
        .map(|b| b.resolved.is_ipv4())
        .collect();
    for is_v4 in families {
        let probe_target = service
            .backends
            .iter()
            .map(|b| b.resolved)
            .find(|a| a.is_ipv4() == is_v4);
        if let Some(target) = probe_target {
            try_settings(service, target)?;
        }
    }
    Ok(())
}

/// Applies the service's transparent flag, mark and fixed source to a socket
/// of `backend`'s family; the first failure, explained.
fn try_settings(service: &ServiceConfig, backend: SocketAddr) -> Result<(), String> {
    let (kind, protocol) = match service.protocol {
        ServiceProtocol::Tcp => (Type::STREAM, Protocol::TCP),
        ServiceProtocol::Udp => (Type::DGRAM, Protocol::UDP),
    };
    let family = if backend.is_ipv4() { "IPv4" } else { "IPv6" };
    let socket = Socket::new(Domain::for_address(backend), kind, Some(protocol))
        .map_err(|e| format!("cannot open an {family} socket towards the backends: {e}"))?;
    let source = &service.source;
    if source.is_transparent() {
        let option = if backend.is_ipv4() {
            "IP_TRANSPARENT"
        } else {
            "IPV6_TRANSPARENT"
        };
        set_transparent(&socket, backend).map_err(|e| {
            privilege_message(
                &e,
                &format!("source = \"client\" needs CAP_NET_RAW or CAP_NET_ADMIN to set {option}"),
            )
        })?;
    }
    if source.mark != 0 {
        socket.set_mark(source.mark).map_err(|e| {
            privilege_message(
                &e,
                &format!("mark = {} needs CAP_NET_ADMIN to set SO_MARK", source.mark),
            )
        })?;
    }
    if let SourceAddress::Fixed(ip) = source.address {
        let tcp = service.protocol == ServiceProtocol::Tcp;
        if tcp {
            set_bind_address_no_port(&socket)
                .map_err(|e| format!("cannot set IP_BIND_ADDRESS_NO_PORT: {e}"))?;
        }
        bind_source(&socket, SocketAddr::new(ip, 0), tcp)
            .map_err(|e| fixed_source_message(ip, &e))?;
    }
    Ok(())
}

fn privilege_message(error: &io::Error, need: &str) -> String {
    match error.raw_os_error() {
        Some(libc::EPERM | libc::EACCES) => {
            format!("{need}, and this process does not have it: {GRANT_HINT}")
        }
        _ => format!("{need}: {error}"),
    }
}

fn fixed_source_message(ip: std::net::IpAddr, error: &io::Error) -> String {
    match error.raw_os_error() {
        Some(libc::EADDRNOTAVAIL) => format!(
            "source {ip} is not an address of this host (in this network namespace): \
             add it to an interface, or choose one that `ip address` lists"
        ),
        _ => format!("cannot bind source {ip}: {error}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config(extra: &str) -> Config {
        let text = format!(
            "[[service]]\nname = \"pg\"\nlisten = \"127.0.0.1:0\"\n{extra}\n\
             [[service.backend]]\naddress = \"127.0.0.1:5432\"\n"
        );
        crate::config::parse(&text, Path::new("lb.toml")).unwrap()
    }

    #[test]
    fn plain_services_are_not_tried() {
        assert!(check(&config("")).is_empty());
    }

    #[test]
    fn a_local_fixed_source_passes() {
        assert!(check(&config("source = \"127.0.0.1\"")).is_empty());
    }

    #[test]
    fn a_fixed_source_that_is_not_ours_is_named() {
        // TEST-NET-3: never configured on a test machine.
        let problems = check(&config("source = \"203.0.113.77\""));
        assert_eq!(problems.len(), 1);
        assert_eq!(
            problems[0].to_string(),
            "service \"pg\": source 203.0.113.77 is not an address of this host (in this \
             network namespace): add it to an interface, or choose one that `ip address` lists"
        );
    }

    #[test]
    fn a_missing_capability_is_explained() {
        let message = privilege_message(
            &io::Error::from_raw_os_error(libc::EPERM),
            "source = \"client\" needs CAP_NET_RAW or CAP_NET_ADMIN to set IP_TRANSPARENT",
        );
        assert!(
            message.contains("this process does not have it"),
            "{message}"
        );
        assert!(message.contains("systemd/transparent.conf"), "{message}");
    }
}
