//! What an upgrade from a running l4lb would do with a configuration: which
//! of its sockets are reused, which addresses are bound anew, which sockets
//! are closed. Pure: `l4lb check` prints it.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use crate::config::{Config, Protocol};
use crate::upgrade::protocol::SocketRecord;

/// One line per listen address (and the admin address), in a stable order.
pub fn plan(config: &Config, handed: &[SocketRecord]) -> Vec<String> {
    let mut offered: BTreeMap<(SocketAddr, &str), usize> = BTreeMap::new();
    for record in handed {
        *offered
            .entry((record.local, record.protocol.as_str()))
            .or_default() += 1;
    }
    let mut lines = Vec::new();
    let mut wanted: Vec<(Protocol, SocketAddr, String)> = Vec::new();
    if let Some(admin) = &config.admin {
        wanted.push((Protocol::Tcp, admin.listen, "admin".to_string()));
    }
    for service in &config.services {
        for &address in &service.listen {
            let who = format!("service \"{}\"", service.name);
            wanted.push((service.protocol, address, who));
        }
    }
    for (protocol, address, who) in wanted {
        let line = match offered.remove(&(address, protocol.as_str())) {
            Some(count) => {
                format!("reuse {protocol} {address} ({who}): {count} socket(s) handed over")
            }
            None => format!("bind  {protocol} {address} ({who}): new"),
        };
        lines.push(line);
    }
    for ((address, protocol), count) in offered {
        lines.push(format!(
            "close {protocol} {address}: {count} socket(s) no longer listed"
        ));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upgrade::protocol::SocketRole;

    #[test]
    fn kept_new_and_gone_addresses_are_told_apart() {
        let text = "[[service]]\nname = \"a\"\nlisten = [\"127.0.0.1:7000\", \"127.0.0.1:7001\"]\n\
                    [[service.backend]]\naddress = \"127.0.0.1:9000\"\n";
        let config = crate::config::parse(text, std::path::Path::new("lb.toml")).expect("valid");
        let record = |port: u16| SocketRecord {
            protocol: Protocol::Tcp,
            role: SocketRole::Service,
            local: SocketAddr::from(([127, 0, 0, 1], port)),
            id: u64::from(port),
        };
        let lines = plan(&config, &[record(7000), record(7000), record(7002)]);
        assert_eq!(
            lines,
            [
                "reuse tcp 127.0.0.1:7000 (service \"a\"): 2 socket(s) handed over",
                "bind  tcp 127.0.0.1:7001 (service \"a\"): new",
                "close tcp 127.0.0.1:7002: 1 socket(s) no longer listed",
            ]
        );
    }
}
