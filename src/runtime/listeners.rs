//! The listening sockets of every service, keyed by (protocol, address), and the
//! loops that serve them.
//!
//! Binding and starting are separate steps so that a reload can bind every new
//! address first and give up without changing anything when one fails. A socket
//! that stays in the configuration is never rebound — not even when it moves to
//! another service, or its service is renamed: each socket has its own slot, and
//! a reload points the slot at the new generation of whichever service now
//! lists the address. (A port-0 address, "any free port", is its own socket per
//! service, so it follows the service's name.)
//!
//! Each listen address is a group of SO_REUSEPORT sockets, one per worker (see
//! `workers`), each served by a loop on its own worker — or the group inherited
//! from a predecessor (see `socket_group`). Each listener keeps a descriptor
//! of every socket so an upgrade can hand it over (`export`), and a way to
//! pause each UDP loop (`udp_pauses`). The UDP loops are also
//! told every UDP address the set listens on, so they can refuse datagrams
//! that this process sent itself (see `proxy::udp::own_addresses`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use std::net::{TcpListener, UdpSocket};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use serde::Serialize;
use tokio::sync::mpsc;

use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::config::{Config, Protocol, ServiceConfig};
use crate::fd_store::FdStore;
use crate::lifecycle::Lifecycle;
use crate::limit::ConnectionLimit;
use crate::log_throttle::LogThrottle;
use crate::proxy::dispatch::WorkerDispatch;
use crate::proxy::tcp::TcpProxy;
use crate::proxy::udp::flow_budget::FlowBudget;
use crate::proxy::udp::handoff::{HandedFlow, PauseRequest};
use crate::proxy::udp::listener::UdpProxy;
use crate::proxy::udp::own_addresses::{self, OwnAddresses};
use crate::service::{Service, ServiceSlot};

use super::StartError;
use super::inherited::InheritedSockets;
use super::socket_group::{SocketSource, socket_id, tcp_group, udp_group};
use super::workers::WorkerPool;

/// At most one repeated warning per listener per this interval.
const WARNING_INTERVAL: Duration = Duration::from_secs(1);

/// One configured listen address: what identifies its socket across reloads.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ListenKey {
    pub protocol: Protocol,
    /// As configured (port 0 stays 0 here; the bound port is in `local`).
    pub address: SocketAddr,
    /// For port 0 only, the service it belongs to (each gets its own free port).
    pub any_port_of: Option<String>,
}

impl ListenKey {
    fn new(service: &str, protocol: Protocol, address: SocketAddr) -> ListenKey {
        ListenKey {
            protocol,
            address,
            any_port_of: (address.port() == 0).then(|| service.to_string()),
        }
    }
}

/// The bound sockets of one listen address (one SO_REUSEPORT group, a socket
/// per worker, or the inherited group: see `socket_group`), not serving yet.
#[derive(Debug)]
pub struct BoundSocket {
    group: Vec<WorkerSocket>,
    sources: Vec<SocketSource>,
    /// Where the group listens (port 0 resolved).
    local: SocketAddr,
}

impl BoundSocket {
    /// The group of `key`'s address: the sockets `inherited` holds for it first,
    /// then whatever is missing bound here. This is the one place inherited
    /// sockets are looked up.
    fn bind(
        key: &ListenKey,
        workers: usize,
        inherited: &mut InheritedSockets,
    ) -> std::io::Result<BoundSocket> {
        let taken = match key.any_port_of {
            Some(_) => Vec::new(),
            None => inherited.take(key.protocol, key.address),
        };
        let (group, sources): (Vec<WorkerSocket>, Vec<SocketSource>) = match key.protocol {
            Protocol::Tcp => tcp_group(key.address, workers, taken)?
                .into_iter()
                .map(|(l, source)| (WorkerSocket::Tcp(l), source))
                .unzip(),
            Protocol::Udp => udp_group(key.address, workers, taken)?
                .into_iter()
                .map(|(s, source)| (WorkerSocket::Udp(s), source))
                .unzip(),
        };
        let local = match group.first() {
            Some(WorkerSocket::Tcp(listener)) => listener.local_addr()?,
            Some(WorkerSocket::Udp(socket)) => socket.local_addr()?,
            None => key.address,
        };
        Ok(BoundSocket {
            group,
            sources,
            local,
        })
    }
}

/// One socket of a group, for one worker.
#[derive(Debug)]
enum WorkerSocket {
    Tcp(TcpListener),
    Udp(UdpSocket),
}

impl WorkerSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            WorkerSocket::Tcp(listener) => listener.as_fd(),
            WorkerSocket::Udp(socket) => socket.as_fd(),
        }
    }
}

/// Flows a predecessor handed over, by the kernel identity of the listening
/// socket they came in on (`socket_group::socket_id`).
pub type HandedFlows = HashMap<u64, Vec<HandedFlow>>;

/// One serving socket as an upgrade sees it: a descriptor to hand over, and
/// for UDP, how to pause its loop.
#[derive(Debug)]
struct ServedSocket {
    id: u64,
    fd: OwnedFd,
    pause: Option<mpsc::Sender<PauseRequest>>,
}

impl ListenerOrigin {
    pub fn into_status(self) -> crate::status::ListenerSockets {
        crate::status::ListenerSockets {
            service: self.service,
            protocol: self.protocol,
            address: self.address,
            sockets: self.sockets.iter().map(SocketSource::to_string).collect(),
        }
    }
}

/// A socket to hand to a successor.
#[derive(Debug)]
pub struct ExportedSocket {
    pub protocol: Protocol,
    pub local: SocketAddr,
    pub id: u64,
    pub fd: OwnedFd,
}

/// How a listener's sockets came to be, for operators.
#[derive(Debug, Clone, Serialize)]
pub struct ListenerOrigin {
    pub service: String,
    pub protocol: &'static str,
    pub address: SocketAddr,
    pub sockets: Vec<SocketSource>,
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
    dispatch: Arc<WorkerDispatch>,
}

impl LoopParts {
    fn tcp(self, worker: usize) -> TcpProxy {
        TcpProxy {
            slot: self.slot,
            process_limit: self.process_limit,
            lifecycle: self.lifecycle,
            stop: self.stop,
            warnings: self.warnings,
            dispatch: self.dispatch,
            worker,
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
    async fn serve(
        self,
        parts: LoopParts,
        worker: usize,
        flows: Vec<HandedFlow>,
        pauses: mpsc::Receiver<PauseRequest>,
    ) {
        let error = match self {
            WorkerSocket::Tcp(listener) => match tokio::net::TcpListener::from_std(listener) {
                Ok(listener) => return parts.tcp(worker).accept_loop(listener).await,
                Err(e) => e,
            },
            WorkerSocket::Udp(socket) => match tokio::net::UdpSocket::from_std(socket) {
                Ok(socket) => return parts.udp().serve(socket, flows, pauses).await,
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
    /// Which worker serves each accepted TCP client.
    pub dispatch: Arc<WorkerDispatch>,
    /// UDP flows' share of the descriptors (see `fd_budget::process_flow_cap`).
    pub flow_budget: Arc<FlowBudget>,
}

#[derive(Debug)]
struct RunningListener {
    local: SocketAddr,
    sources: Vec<SocketSource>,
    sockets: Vec<ServedSocket>,
    stop: CancellationToken,
    /// The service this address serves now.
    owner: String,
    /// What the address's loops serve; a reload replaces what it holds.
    slot: Arc<ServiceSlot>,
}

impl RunningListener {
    /// The descriptors of this listener's sockets.
    fn fds(&self) -> Vec<BorrowedFd<'_>> {
        self.sockets.iter().map(|s| s.fd.as_fd()).collect()
    }
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
    /// Where listening sockets are also kept for a restart (disabled by default).
    fd_store: FdStore,
    /// Every UDP address of `running`, as the UDP loops see it.
    own_udp_addresses: Arc<ArcSwap<OwnAddresses>>,
}

/// Every listen address `config` asks for, with the service that lists it.
pub fn wanted(config: &Config) -> HashMap<ListenKey, &str> {
    config
        .services
        .iter()
        .flat_map(|s| {
            s.listen.iter().map(|&address| {
                (
                    ListenKey::new(&s.name, s.protocol, address),
                    s.name.as_str(),
                )
            })
        })
        .collect()
}

/// A bound socket not serving yet, and the service it is for.
#[derive(Debug)]
pub struct PendingSocket {
    key: ListenKey,
    service: String,
    socket: BoundSocket,
}

impl PendingSocket {
    pub fn service(&self) -> &str {
        &self.service
    }
}

impl ListenerSet {
    /// Binds every address of `config` that is not served yet; on the first
    /// failure, whatever was bound here is dropped and nothing else changes.
    pub fn bind_missing(
        &self,
        config: &Config,
        workers: usize,
        inherited: &mut InheritedSockets,
    ) -> Result<Vec<PendingSocket>, StartError> {
        let mut bound = Vec::new();
        for service in &config.services {
            for &address in &service.listen {
                let key = ListenKey::new(&service.name, service.protocol, address);
                if self.running.contains_key(&key) {
                    continue;
                }
                let socket = BoundSocket::bind(&key, workers, inherited).map_err(|source| {
                    StartError::Listen {
                        service: service.name.clone(),
                        address,
                        source,
                    }
                })?;
                bound.push(PendingSocket {
                    key,
                    service: service.name.clone(),
                    socket,
                });
            }
        }
        Ok(bound)
    }

    /// Starts serving a bound socket for `service`; socket `i` of its group
    /// runs on worker `i % workers` (a worker may serve several). A UDP socket
    /// continues the flows `flows` holds for it.
    pub fn start(
        &mut self,
        pending: PendingSocket,
        service: Arc<Service>,
        ctx: &LoopContext,
        flows: &mut HandedFlows,
    ) {
        let PendingSocket {
            key,
            service: owner,
            socket,
        } = pending;
        let local = socket.local;
        let stop = CancellationToken::new();
        let warnings = Arc::new(LogThrottle::new(WARNING_INTERVAL));
        info!(service = %owner, protocol = %key.protocol, address = %local,
            sockets = socket.group.len(), "listening");
        let slot = Arc::new(ServiceSlot::new(service));
        let parts = LoopParts {
            slot: Arc::clone(&slot),
            process_limit: Arc::clone(&ctx.process_limit),
            lifecycle: ctx.lifecycle.clone(),
            stop: stop.clone(),
            warnings,
            own_udp_addresses: Arc::clone(&self.own_udp_addresses),
            flow_budget: Arc::clone(&ctx.flow_budget),
            dispatch: Arc::clone(&ctx.dispatch),
        };
        let udp = key.is_udp();
        let workers: Vec<_> = ctx.workers.handles().collect();
        let mut sockets = Vec::new();
        for (i, worker_socket) in socket.group.into_iter().enumerate() {
            let (pause_tx, pauses) = mpsc::channel(1);
            let id = socket_id(worker_socket.as_fd()).unwrap_or(0);
            match worker_socket.as_fd().try_clone_to_owned() {
                Ok(fd) => sockets.push(ServedSocket {
                    id,
                    fd,
                    pause: udp.then_some(pause_tx),
                }),
                Err(e) => warn!(error = %e, address = %local,
                    "cannot keep a descriptor of a listening socket; an upgrade will not get it"),
            }
            let handed = flows.remove(&id).unwrap_or_default();
            let index = i % workers.len().max(1);
            let serving = worker_socket.serve(parts.clone(), index, handed, pauses);
            ctx.loops.spawn_on(serving, workers[index]);
        }
        let listener = RunningListener {
            local,
            sources: socket.sources,
            sockets,
            stop,
            owner,
            slot,
        };
        if key.any_port_of.is_none() {
            self.fd_store.store(key.protocol, local, &listener.fds());
        }
        self.running.insert(key, listener);
        if udp {
            // Known as our own before the first datagram arrives on it.
            self.publish_own_udp_addresses();
        }
    }

    /// From now on keeps every listening socket in `store` too: the ones serving
    /// now, and each one a reload adds (port-0 listeners excepted: a restart
    /// picks a new port for them anyway).
    pub fn use_fd_store(&mut self, store: FdStore) {
        for (key, listener) in &self.running {
            if key.any_port_of.is_none() {
                store.store(key.protocol, listener.local, &listener.fds());
            }
        }
        self.fd_store = store;
    }

    /// A descriptor of every serving socket (one per kernel socket), for a successor.
    pub fn export(&self) -> Vec<ExportedSocket> {
        let mut seen = std::collections::HashSet::new();
        let mut exported = Vec::new();
        for (key, listener) in &self.running {
            for socket in &listener.sockets {
                if !seen.insert(socket.id) {
                    continue;
                }
                match socket.fd.try_clone() {
                    Ok(fd) => exported.push(ExportedSocket {
                        protocol: key.protocol,
                        local: listener.local,
                        id: socket.id,
                        fd,
                    }),
                    Err(e) => warn!(error = %e, address = %listener.local,
                        "cannot duplicate a listening socket for the new process"),
                }
            }
        }
        exported
    }

    /// How to pause every UDP loop, with the identity of the socket it reads.
    pub fn udp_pauses(&self) -> Vec<(u64, mpsc::Sender<PauseRequest>)> {
        self.running
            .values()
            .flat_map(|l| &l.sockets)
            .filter_map(|s| s.pause.clone().map(|p| (s.id, p)))
            .collect()
    }

    /// Drops this process's own descriptors of every listening socket (once
    /// no loop serves them): a socket nobody else holds closes, so clients are
    /// refused instead of waiting in a queue nobody reads.
    pub fn release(&mut self) {
        for listener in self.running.values_mut() {
            listener.sockets.clear();
        }
    }

    /// Where each listener's sockets came from, in configuration order.
    pub fn origins(&self, config: &Config) -> Vec<ListenerOrigin> {
        let mut origins = Vec::new();
        for service in &config.services {
            for &address in &service.listen {
                let key = ListenKey::new(&service.name, service.protocol, address);
                if let Some(listener) = self.running.get(&key) {
                    origins.push(ListenerOrigin {
                        service: service.name.clone(),
                        protocol: service.protocol.as_str(),
                        address: listener.local,
                        sockets: listener.sources.clone(),
                    });
                }
            }
        }
        origins
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

    /// Points every listener `config` still asks for at the current generation of
    /// the service that lists it now (handing the socket over, bound, when that is
    /// another service), and stops the others (their open sessions go on);
    /// then reads this host's addresses afresh for the UDP loops.
    pub fn follow(&mut self, config: &Config, services: &HashMap<String, Arc<Service>>) {
        let wanted = wanted(config);
        let fd_store = &self.fd_store;
        self.running.retain(|key, listener| {
            let Some(service) = wanted.get(key).and_then(|name| services.get(*name)) else {
                info!(service = %listener.owner, address = %listener.local, "no longer listening");
                listener.stop.cancel();
                if key.any_port_of.is_none() {
                    fd_store.remove(key.protocol, listener.local);
                }
                return false;
            };
            if listener.owner != service.name() {
                info!(from = %listener.owner, to = service.name(), address = %listener.local,
                    "listen address handed over, still bound");
                listener.owner = service.name().to_string();
            }
            listener.slot.replace(Arc::clone(service));
            true
        });
        self.publish_own_udp_addresses();
    }

    /// The addresses actually bound for `service`, in configuration order.
    pub fn local_addrs(&self, config: &Config, service: &str) -> Vec<SocketAddr> {
        match config.services.iter().find(|s| s.name == service) {
            Some(service) => self.bound_addrs(service),
            None => Vec::new(),
        }
    }

    /// The addresses bound for `service`, in its `listen` order.
    pub fn bound_addrs(&self, service: &ServiceConfig) -> Vec<SocketAddr> {
        service
            .listen
            .iter()
            .map(|&address| ListenKey::new(&service.name, service.protocol, address))
            .filter_map(|key| self.running.get(&key).map(|l| l.local))
            .collect()
    }
}
