//! Host names in `address` and `listen`, looked up with the asynchronous
//! `hickory-resolver` (the system's `/etc/resolv.conf` and `/etc/hosts`), the
//! resolver discovery uses too, instead of the C library's blocking
//! `getaddrinfo`.
//!
//! Checking a configuration is synchronous (it runs on a blocking thread at
//! reload, and before anything serves at start), so each lookup runs on a
//! thread of its own with a small single-threaded runtime: it never runs on,
//! nor waits for, the caller's runtime (the control thread), and it works
//! whether or not the caller is inside one. The lookup is bounded by
//! [`LOOKUP_TIMEOUT`].

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{LookupIpStrategy, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;

/// How long one host-name lookup may take, retries included.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);

/// Resolves `host` to its first address on `port` (`None`: no address).
pub fn system_resolve(host: &str, port: u16) -> io::Result<Option<SocketAddr>> {
    let host = host.to_string();
    std::thread::scope(|scope| {
        let lookup = scope.spawn(move || lookup_first(&host, port));
        lookup
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the host-name lookup thread failed")))
    })
}

fn lookup_first(host: &str, port: u16) -> io::Result<Option<SocketAddr>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let resolver = system_resolver()?;
        let lookup = tokio::time::timeout(LOOKUP_TIMEOUT, resolver.lookup_ip(host)).await;
        match lookup {
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no answer within {}s", LOOKUP_TIMEOUT.as_secs()),
            )),
            Ok(Err(e)) if e.is_nx_domain() => Err(io::Error::new(
                io::ErrorKind::NotFound,
                "no such host (NXDOMAIN)",
            )),
            Ok(Err(e)) if e.is_no_records_found() => Ok(None),
            Ok(Err(e)) => Err(io::Error::other(e.to_string())),
            Ok(Ok(answer)) => Ok(answer.iter().next().map(|ip| SocketAddr::new(ip, port))),
        }
    })
}

/// The resolver of `/etc/resolv.conf`; without a readable one, `/etc/hosts`
/// alone (no name server is assumed).
fn system_resolver() -> io::Result<TokioResolver> {
    let mut builder = TokioResolver::builder_tokio().unwrap_or_else(|_| {
        TokioResolver::builder_with_config(
            ResolverConfig::from_parts(None, Vec::new(), Vec::new()),
            TokioRuntimeProvider::default(),
        )
    });
    // The first address is used: prefer IPv4, as getaddrinfo's defaults do.
    builder.options_mut().ip_strategy = LookupIpStrategy::Ipv4thenIpv6;
    builder.build().map_err(|e| io::Error::other(e.to_string()))
}
