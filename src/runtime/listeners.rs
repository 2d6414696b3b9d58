//! The listening sockets of every service, keyed by (service, protocol, address),
//! and the loops that serve them.
//!
//! Binding and starting are separate steps so that a reload can bind every new
//! address first and give up without changing anything when one fails. A socket
//! that stays in the configuration is never rebound: its loop simply serves the
//! service's new generation (through the service's slot).
//!
//! Each listen address is a group of SO_REUSEPORT sockets, one per worker (see
//! `workers`), each served by a loop on its own worker. The UDP loops are also
//! told every UDP address the set listens on, so they can refuse datagrams
//! that this process sent itself (see `proxy::udp::own_addresses`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use std::net::{TcpListener, UdpSocket};

use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::config::{Config, Protocol};
use crate::lifecycle::Lifecycle;
use crate::limit::ConnectionLimit;
use crate::log_throttle::LogThrottle;
use crate::proxy::listener::{bind_group, bind_tcp};
use crate::proxy::tcp::TcpProxy;
use crate::proxy::udp::flow_budget::FlowBudget;
use crate::proxy::udp::listener::UdpProxy;
use crate::proxy::udp::own_addresses::{self, OwnAddresses};
use crate::proxy::udp::socket::bind_udp;
use crate::service::ServiceSlot;

use super::StartError;
use super::workers::WorkerPool;

/// At most one repeated warning per listener per this interval.
const WARNING_INTERVAL: Duration = Duration::from_secs(1);

/// One configured listen address of one service.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ListenKey {
    pub service: String,
    pub protocol: Protocol,
    /// As configured (port 0 stays 0 here; the bound port is in `local`).
    pub address: SocketAddr,
}

/// The bound sockets of one listen address (one SO_REUSEPORT group, a socket
/// per worker), not serving yet.
#[derive(Debug)]
pub struct BoundSocket {
    group: Vec<WorkerSocket>,
    /// Where the group listens (port 0 resolved).
    local: SocketAddr,
}

impl BoundSocket {
    /// One socket per worker on `key`'s address.
    fn bind(key: &ListenKey, workers: usize) -> std::io::Result<BoundSocket> {
        let group: Vec<WorkerSocket> = match key.protocol {
            Protocol::Tcp => bind_group(key.address, workers, bind_tcp, TcpListener::local_addr)?
                .into_iter()
                .map(WorkerSocket::Tcp)
                .collect(),
            Protocol::Udp => bind_group(key.address, workers, bind_udp, UdpSocket::local_addr)?
                .into_iter()
                .map(WorkerSocket::Udp)
                .collect(),
        };
        let local = match group.first() {
            Some(WorkerSocket::Tcp(listener)) => listener.local_addr()?,
            Some(WorkerSocket::Udp(socket)) => socket.local_addr()?,
            None => key.address,
        };
        Ok(BoundSocket { group, local })
    }
}

/// One socket of a group, for one worker.
#[derive(Debug)]
enum WorkerSocket {
    Tcp(TcpListener),
    Udp(UdpSocket),
}

/// What the loops of one listen address share.
#[derive(Debug, Clone)]
struct LoopParts {
    slot: Arc<ServiceSlot>,
    process_limit: Arc<ConnectionLimit>,
    lifecycle: Lifecycle,
    stop: CancellationToken,
    warnings: Arc<LogThrottle>,
    own_udp_addresses: Arc<ArcSwap<OwnAddresses>>,
    flow_budget: Arc<FlowBudget>,
}

impl LoopParts {
    fn tcp(self) -> TcpProxy {
        TcpProxy {
            slot: self.slot,
            process_limit: self.process_limit,
            lifecycle: self.lifecycle,
            stop: self.stop,
            warnings: self.warnings,
        }
    }

    fn udp(self) -> UdpProxy {
        UdpProxy {
            slot: self.slot,
            lifecycle: self.lifecycle,
            stop: self.stop,
            warnings: self.warnings,
            own_addresses: self.own_udp_addresses,
            flow_budget: self.flow_budget,
        }
    }
}

impl WorkerSocket {
    /// Serves this socket; must run on the worker that owns it (registering it
    /// with the worker's event loop is the first step).
    async fn serve(self, parts: LoopParts) {
        let error = match self {
            WorkerSocket::Tcp(listener) => match tokio::net::TcpListener::from_std(listener) {
                Ok(listener) => return parts.tcp().accept_loop(listener).await,
                Err(e) => e,
            },
            WorkerSocket::Udp(socket) => match tokio::net::UdpSocket::from_std(socket) {
                Ok(socket) => return parts.udp().serve(socket).await,
                Err(e) => e,
            },
        };
        error!(error = %error, "cannot register a listening socket with its worker");
    }
}

/// What every listener loop shares.
#[derive(Debug, Clone)]
pub struct LoopContext {
    pub process_limit: Arc<ConnectionLimit>,
    pub lifecycle: Lifecycle,
    pub loops: TaskTracker,
    pub workers: Arc<WorkerPool>,
    /// UDP flows' share of the descriptors (see `fd_budget::process_flow_cap`).
    pub flow_budget: Arc<FlowBudget>,
}

#[derive(Debug)]
struct RunningListener {
    local: SocketAddr,
    stop: CancellationToken,
}

impl ListenKey {
    fn is_udp(&self) -> bool {
        self.protocol == Protocol::Udp
    }
}

/// Every serving listener.
#[derive(Debug, Default)]
pub struct ListenerSet {
    running: HashMap<ListenKey, RunningListener>,
    /// Every UDP address of `running`, as the UDP loops see it.
    own_udp_addresses: Arc<ArcSwap<OwnAddresses>>,
}

/// Every listen address `config` asks for.
pub fn wanted_keys(config: &Config) -> Vec<ListenKey> {
    config
        .services
        .iter()
        .flat_map(|s| {
            s.listen.iter().map(|&address| ListenKey {
                service: s.name.clone(),
                protocol: s.protocol,
                address,
            })
        })
        .collect()
}

impl ListenerSet {
    /// Binds every address of `config` that is not served yet; on the first
    /// failure, whatever was bound here is dropped and nothing else changes.
    pub fn bind_missing(
        &self,
        config: &Config,
        workers: usize,
    ) -> Result<Vec<(ListenKey, BoundSocket)>, StartError> {
        let mut bound = Vec::new();
        for key in wanted_keys(config) {
            if self.running.contains_key(&key) {
                continue;
            }
            let socket = BoundSocket::bind(&key, workers).map_err(|source| StartError::Listen {
                service: key.service.clone(),
                address: key.address,
                source,
            })?;
            bound.push((key, socket));
        }
        Ok(bound)
    }

    /// Starts serving a bound socket for the service in `slot`.
    pub fn start(
        &mut self,
        key: ListenKey,
        socket: BoundSocket,
        slot: Arc<ServiceSlot>,
        ctx: &LoopContext,
    ) {
        let local = socket.local;
        let stop = CancellationToken::new();
        let warnings = Arc::new(LogThrottle::new(WARNING_INTERVAL));
        info!(service = %key.service, protocol = %key.protocol, address = %local, "listening");
        let parts = LoopParts {
            slot,
            process_limit: Arc::clone(&ctx.process_limit),
            lifecycle: ctx.lifecycle.clone(),
            stop: stop.clone(),
            warnings,
            own_udp_addresses: Arc::clone(&self.own_udp_addresses),
            flow_budget: Arc::clone(&ctx.flow_budget),
        };
        let udp = key.is_udp();
        self.running.insert(key, RunningListener { local, stop });
        if udp {
            // Known as our own before the first datagram arrives on it.
            self.publish_own_udp_addresses();
        }
        for (worker, socket) in ctx.workers.handles().zip(socket.group) {
            ctx.loops.spawn_on(socket.serve(parts.clone()), worker);
        }
    }

    /// Tells the UDP loops every UDP address this process listens on now, and
    /// this host's addresses (for wildcard listeners), read afresh.
    fn publish_own_udp_addresses(&self) {
        let host_ips = own_addresses::host_ips().unwrap_or_else(|e| {
            warn!(error = %e, "cannot read this host's addresses; only loopback ones are known \
                as this l4lb's own for wildcard udp listeners");
            Vec::new()
        });
        let listen = self.running.iter().filter(|(k, _)| k.is_udp());
        let own = OwnAddresses::new(listen.map(|(_, l)| l.local), host_ips);
        self.own_udp_addresses.store(Arc::new(own));
    }

    /// Stops the listeners `config` no longer asks for (their open sessions go
    /// on), and reads this host's addresses afresh (a reload).
    pub fn stop_unwanted(&mut self, config: &Config) {
        let wanted = wanted_keys(config);
        self.running.retain(|key, listener| {
            let keep = wanted.contains(key);
            if !keep {
                info!(service = %key.service, address = %listener.local, "no longer listening");
                listener.stop.cancel();
            }
            keep
        });
        self.publish_own_udp_addresses();
    }

    /// The addresses actually bound for `service`, in configuration order.
    pub fn local_addrs(&self, config: &Config, service: &str) -> Vec<SocketAddr> {
        wanted_keys(config)
            .iter()
            .filter(|key| key.service == service)
            .filter_map(|key| self.running.get(key).map(|l| l.local))
            .collect()
    }
}
