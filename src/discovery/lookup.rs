//! Asking DNS for a group's backends, with the asynchronous `hickory-resolver`
//! (its own cache off, so every refresh reaches the name server and the TTLs
//! seen are the server's).
//!
//! `dns` groups ask for A and AAAA records (every address is a backend on the
//! group's `port`); `srv` groups ask for SRV records, take each target's port,
//! map its weight to the backend weight (0 → the group's `weight`, above 1000
//! → 1000) and its priority to a tier (the lowest priority value is primary,
//! every other one backup), then resolve the targets (with the additional
//! records of the answer when the server sent them).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::NetError;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;

use crate::config::{DiscoverConfig, DiscoverQuery};

use super::policy::{Found, Outcome};

/// The resolver of one group.
pub struct GroupResolver {
    resolver: TokioResolver,
    config: DiscoverConfig,
}

impl GroupResolver {
    /// A resolver for `config`'s name servers (or `/etc/resolv.conf`'s).
    pub fn new(config: &DiscoverConfig) -> Result<GroupResolver, String> {
        let mut builder = if config.resolvers.is_empty() {
            TokioResolver::builder_tokio().map_err(|e| format!("/etc/resolv.conf: {e}"))?
        } else {
            let servers = config.resolvers.iter().map(|&addr| name_server(addr));
            let mut builder = TokioResolver::builder_with_config(
                ResolverConfig::from_parts(None, Vec::new(), servers.collect()),
                TokioRuntimeProvider::default(),
            );
            builder.options_mut().use_hosts_file = ResolveHosts::Never;
            builder
        };
        tune(builder.options_mut(), config.timeout);
        let resolver = builder.build().map_err(|e| e.to_string())?;
        Ok(GroupResolver {
            resolver,
            config: config.clone(),
        })
    }

    /// One lookup of the group's name, bounded by its `timeout`.
    pub async fn ask(&self) -> Outcome {
        let timeout = self.config.timeout;
        let lookup = async {
            match &self.config.query {
                DiscoverQuery::Dns { name, port } => self.addresses(name, *port).await,
                DiscoverQuery::Srv { name } => self.services(name).await,
            }
        };
        match tokio::time::timeout(timeout, lookup).await {
            Ok(outcome) => outcome,
            Err(_) => Outcome::Failed {
                why: format!(
                    "{} {}: no answer within {}",
                    self.config.kind(),
                    self.config.name(),
                    humantime::format_duration(timeout)
                ),
            },
        }
    }

    async fn addresses(&self, name: &str, port: u16) -> Outcome {
        match self.resolver.lookup_ip(absolute(name)).await {
            Ok(answer) => {
                let ttl = smallest_ttl(answer.as_lookup().answers().iter().map(|r| r.ttl));
                let found = answer
                    .iter()
                    .map(|ip| Found {
                        addr: SocketAddr::new(ip, port),
                        weight: self.config.weight,
                        backup: self.config.backup,
                    })
                    .collect();
                Outcome::Records { found, ttl }
            }
            Err(e) => self.failure(&e),
        }
    }

    async fn services(&self, name: &str) -> Outcome {
        let answer = match self.resolver.srv_lookup(absolute(name)).await {
            Ok(answer) => answer,
            Err(e) => return self.failure(&e),
        };
        let mut glue: HashMap<String, Vec<IpAddr>> = HashMap::new();
        for record in answer.additionals() {
            if let Some(ip) = record.data.ip_addr() {
                glue.entry(record.name.to_ascii().to_lowercase())
                    .or_default()
                    .push(ip);
            }
        }
        let records: Vec<_> = answer
            .answers()
            .iter()
            .filter_map(|r| match &r.data {
                RData::SRV(srv) => Some((r.ttl, srv.clone())),
                _ => None,
            })
            .collect();
        let ttl = smallest_ttl(records.iter().map(|(ttl, _)| *ttl));
        let primary = records.iter().map(|(_, s)| s.priority).min().unwrap_or(0);
        let mut found = Vec::new();
        for (_, srv) in records.iter().take(self.config.max_backends) {
            let target = srv.target.to_ascii().to_lowercase();
            let ips = match glue.get(&target) {
                Some(ips) => ips.clone(),
                None => match self.resolver.lookup_ip(srv.target.clone()).await {
                    Ok(answer) => answer.iter().collect(),
                    Err(e) if e.is_no_records_found() => Vec::new(),
                    Err(e) => return self.failure(&e),
                },
            };
            let weight = match srv.weight {
                0 => self.config.weight,
                w => u32::from(w).min(1000),
            };
            let backup = self.config.backup || srv.priority != primary;
            found.extend(ips.into_iter().map(|ip| Found {
                addr: SocketAddr::new(ip, srv.port),
                weight,
                backup,
            }));
        }
        Outcome::Records { found, ttl }
    }

    fn failure(&self, error: &NetError) -> Outcome {
        let what = format!("{} {}", self.config.kind(), self.config.name());
        if error.is_nx_domain() {
            Outcome::Empty {
                why: format!("{what}: NXDOMAIN"),
            }
        } else if error.is_no_records_found() {
            Outcome::Empty {
                why: format!("{what}: no records"),
            }
        } else {
            Outcome::Failed {
                why: format!("{what}: {error}"),
            }
        }
    }
}

fn name_server(addr: SocketAddr) -> NameServerConfig {
    let mut udp = ConnectionConfig::udp();
    udp.port = addr.port();
    let mut tcp = ConnectionConfig::tcp();
    tcp.port = addr.port();
    let mut server = NameServerConfig::udp_and_tcp(addr.ip());
    server.connections = vec![udp, tcp];
    server
}

fn tune(options: &mut ResolverOpts, timeout: Duration) {
    options.cache_size = 0;
    options.timeout = timeout;
    options.attempts = 1;
    options.ip_strategy = hickory_resolver::config::LookupIpStrategy::Ipv4AndIpv6;
}

/// `name` with a final dot: asked as written, never with search domains.
fn absolute(name: &str) -> String {
    if name.ends_with('.') {
        name.to_string()
    } else {
        format!("{name}.")
    }
}

fn smallest_ttl(ttls: impl Iterator<Item = u32>) -> Duration {
    Duration::from_secs(u64::from(ttls.min().unwrap_or(0)))
}
