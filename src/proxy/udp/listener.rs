//! The receive loop of one UDP listen address and the reply task of each flow.
//!
//! A datagram from a known client goes to its flow's backend. A datagram from a new
//! client (or one whose backend is no longer available, or whose flow broke) opens a
//! flow: a client that is not one of this process's own listen addresses (that
//! would loop), a slot under `max_flows` and one in the process's descriptor
//! budget, a backend from the service's strategy, and a socket connected to it.
//! The flow's reply task sends whatever the backend answers back to the client
//! from the listening socket, so the client sees the address it sent to. Idle
//! flows are swept out in bounded slices. Nothing waits for buffer space: a
//! datagram that cannot be sent now is dropped and counted; one too big to be
//! sent at all is the sender's problem, never the backend's.

use std::borrow::Cow;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::backend::{Backend, ConnectionGuard};
use crate::config::ProxyProtocol;
use crate::lifecycle::Lifecycle;
use crate::limit::LimitPermit;
use crate::log_throttle::LogThrottle;
use crate::proxy::proxy_protocol;
use crate::proxy::udp::batch::RecvBatch;
use crate::proxy::udp::flow_budget::FlowBudget;
use crate::proxy::udp::flow_table::{FlowEntry, FlowTable};
use crate::proxy::udp::own_addresses::OwnAddresses;
use crate::proxy::udp::send::{SendFailure, send_now};
use crate::proxy::udp::socket::connect_upstream;
use crate::service::{DropReason, Service, ServiceSlot};

/// Datagrams received per system call at most (each slot holds 64 KiB).
const RECV_BATCH: usize = 32;

/// Backend replies received per system call at most, into a per-thread batch.
const REPLY_BATCH: usize = 4;

thread_local! {
    /// Shared by the reply tasks of one worker thread, each borrowing it only
    /// between two awaits: idle flows hold no buffer.
    static REPLIES: std::cell::RefCell<RecvBatch> = std::cell::RefCell::new(RecvBatch::new(REPLY_BATCH));
}

/// Most flows the sweeper examines per tick.
const SWEEP_BUDGET: usize = 16_384;

/// One client's flow.
#[derive(Debug)]
struct Flow {
    backend: Arc<Backend>,
    upstream: UdpSocket,
    closer: CancellationToken,
    /// The backend answered with an error (e.g. ICMP port unreachable).
    broken: AtomicBool,
    /// `proxy_protocol = "v2"`: the next datagram sent must carry the PROXY
    /// header (none has reached the backend yet).
    header_pending: AtomicBool,
    started: Instant,
    datagrams_up: AtomicU64,
    datagrams_down: AtomicU64,
    _backend_slot: ConnectionGuard,
    _slots: FlowSlots,
}

/// The places a flow holds: one in its service's table (`max_flows`) and one
/// in the process's descriptor budget.
#[derive(Debug)]
struct FlowSlots {
    _table: LimitPermit,
    _process: LimitPermit,
}

type Flows = FlowTable<SocketAddr, Flow>;

/// The flow table's clock: milliseconds since the loop started.
#[derive(Debug, Clone, Copy)]
struct Ticks(Instant);

impl Ticks {
    fn now(self) -> u64 {
        self.0.elapsed().as_millis() as u64
    }
}

/// One listen address of a UDP service: what its receive loop needs.
#[derive(Debug, Clone)]
pub struct UdpProxy {
    /// The service's current configuration; swapped by a reload.
    pub slot: Arc<ServiceSlot>,
    pub lifecycle: Lifecycle,
    /// Stops this listener alone (a reload that removes the address).
    pub stop: CancellationToken,
    pub warnings: Arc<LogThrottle>,
    /// Every UDP listen address of this process (a source to refuse).
    pub own_addresses: Arc<ArcSwap<OwnAddresses>>,
    /// The process-wide bound on flows (their descriptors).
    pub flow_budget: Arc<FlowBudget>,
}

impl UdpProxy {
    /// Receives on `socket` until `stop` (or `stop_accepting`) is cancelled, then
    /// closes every flow.
    pub async fn serve(self, socket: UdpSocket) {
        let mut relay = UdpRelay {
            service: self.slot.current(),
            warnings: Arc::clone(&self.warnings),
            own_addresses: Arc::clone(&self.own_addresses),
            flow_budget: Arc::clone(&self.flow_budget),
        };
        let socket = Arc::new(socket);
        let ticks = Ticks(Instant::now());
        let mut flows: Flows = FlowTable::new(1, 1);
        relay.apply_limits(&mut flows);
        let every_flow = CancellationToken::new();
        let sweep_every = sweep_period(relay.service.config().idle_timeout);
        let mut sweep = tokio::time::interval(sweep_every);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut batch = RecvBatch::new(RECV_BATCH);
        loop {
            tokio::select! {
                () = self.stop.cancelled() => break,
                () = self.lifecycle.stop_accepting.cancelled() => break,
                _ = sweep.tick() => {
                    relay.follow_reload(&self.slot, &mut flows);
                    relay.sweep(&mut flows, ticks);
                }
                ready = socket.readable() => {
                    let received = ready.and_then(|()| batch.recv_ready(&socket));
                    match received {
                        Ok(count) => {
                            let opening = Opening { socket: &socket, ticks, every_flow: &every_flow };
                            for (data, client) in (0..count).filter_map(|i| batch.get(i)) {
                                relay.forward(&mut flows, &opening, client, data);
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(e) => relay.recv_failed(&e).await,
                    }
                }
            }
        }
        for (client, entry) in flows.remove_where(|_| true) {
            relay.close_flow(client, &entry, "shutdown");
        }
        every_flow.cancel();
    }
}

/// The receive loop's view of its service (refreshed after a reload).
#[derive(Debug)]
struct UdpRelay {
    service: Arc<Service>,
    warnings: Arc<LogThrottle>,
    own_addresses: Arc<ArcSwap<OwnAddresses>>,
    flow_budget: Arc<FlowBudget>,
}

impl UdpRelay {
    /// Picks up a reloaded configuration: new flows use it, existing flows keep
    /// their backend, and the table takes the new idle timeout and bound.
    fn follow_reload(&mut self, slot: &ServiceSlot, flows: &mut Flows) {
        let current = slot.current();
        if !Arc::ptr_eq(&current, &self.service) {
            self.service = current;
            self.apply_limits(flows);
        }
    }

    fn apply_limits(&self, flows: &mut Flows) {
        let config = self.service.config();
        let idle_ms = config.idle_timeout.as_millis().max(1) as u64;
        flows.set_limits(idle_ms, config.max_flows);
    }

    /// Sends one client datagram to its flow's backend, opening a flow if needed.
    fn forward(&self, flows: &mut Flows, opening: &Opening<'_>, client: SocketAddr, data: &[u8]) {
        if !self.service.permits(client) {
            self.service.count_drop(DropReason::Acl);
            return;
        }
        if let Some(entry) = flows.get(&client) {
            let flow = entry.value();
            let end = if flow.broken.load(Ordering::Acquire) {
                "backend_error"
            } else if !flow.backend.is_available(Instant::now()) {
                "backend_down"
            } else {
                entry.touch(opening.ticks.now());
                if self.send_upstream(flow, opening, client, data) {
                    return;
                }
                "send_error"
            };
            if let Some(entry) = flows.remove(&client) {
                self.close_flow(client, &entry, end);
            }
        }
        let Some(entry) = self.open_flow(flows, opening, client) else {
            return;
        };
        let broken = !self.send_upstream(entry.value(), opening, client, data);
        if let Some(entry) = broken.then(|| flows.remove(&client)).flatten() {
            self.close_flow(client, &entry, "send_error");
        }
    }

    /// A new flow for `client`, with its reply task running; `None` (counted) when
    /// the client is this process itself, there is no room for one more flow, or
    /// no backend can take it.
    fn open_flow(
        &self,
        flows: &mut Flows,
        opening: &Opening<'_>,
        client: SocketAddr,
    ) -> Option<Arc<FlowEntry<Flow>>> {
        let slots = self.admit_flow(client)?;
        let (backend, backend_slot, upstream) = self.connect_backend(client)?;
        let flow = Flow {
            backend,
            upstream,
            closer: opening.every_flow.child_token(),
            broken: AtomicBool::new(false),
            header_pending: AtomicBool::new(
                self.service.config().proxy_protocol == ProxyProtocol::V2,
            ),
            started: Instant::now(),
            datagrams_up: AtomicU64::new(0),
            datagrams_down: AtomicU64::new(0),
            _backend_slot: backend_slot,
            _slots: slots,
        };
        let Ok((entry, replaced)) = flows.insert(client, flow, opening.ticks.now()) else {
            return self.drop_datagram(client, DropReason::MaxFlows, "the flow table is full");
        };
        if let Some(old) = replaced {
            self.close_flow(client, &old, "replaced");
        }
        let replies = relay_replies(
            Arc::clone(&entry),
            Arc::clone(opening.socket),
            client,
            opening.ticks,
            Arc::clone(&self.service),
        );
        tokio::spawn(replies);
        Some(entry)
    }

    /// Room for a new flow of `client`: not one of our own addresses (a loop),
    /// under the service's `max_flows` and within the process's descriptor budget.
    fn admit_flow(&self, client: SocketAddr) -> Option<FlowSlots> {
        if self.own_addresses.load().contains(client) {
            return self.drop_looped(client);
        }
        let Some(table) = self.service.admit_flow() else {
            return self.drop_datagram(client, DropReason::MaxFlows, "the flow table is full");
        };
        let Some(process) = self.flow_budget.try_acquire() else {
            let why = "the process has no descriptor to spare (open-file limit)";
            return self.drop_datagram(client, DropReason::MaxFlows, why);
        };
        Some(FlowSlots {
            _table: table,
            _process: process,
        })
    }

    /// A backend for a new flow of `client`, its slot, and a socket connected to it.
    fn connect_backend(
        &self,
        client: SocketAddr,
    ) -> Option<(Arc<Backend>, ConnectionGuard, UdpSocket)> {
        let index = self.service.choose_backend(client, &[]);
        let Some(backend) = index.map(|i| Arc::clone(&self.service.backends()[i])) else {
            return self.drop_datagram(client, DropReason::NoBackend, "no backend available");
        };
        let Some(backend_slot) = backend.try_acquire() else {
            return self.drop_datagram(client, DropReason::NoBackend, "the backend is full");
        };
        match connect_upstream(backend.addr()) {
            Ok(upstream) => Some((backend, backend_slot, upstream)),
            Err(e) => {
                self.warn_send_error(client, &backend, &e);
                self.drop_datagram(client, DropReason::SendError, "no socket to the backend")
            }
        }
    }

    /// Sends `data` from `client` to the flow's backend; `false` when the flow is
    /// broken. A datagram that could not be sent is counted as dropped; one too
    /// big to send is the client's problem and never counts against the backend.
    fn send_upstream(
        &self,
        flow: &Flow,
        opening: &Opening<'_>,
        client: SocketAddr,
        data: &[u8],
    ) -> bool {
        let with_header = flow.header_pending.load(Ordering::Relaxed);
        let datagram = if with_header {
            Cow::Owned(proxy_header(opening, client, data))
        } else {
            Cow::Borrowed(data)
        };
        let error = match send_now(&flow.upstream, &datagram, None) {
            Ok(_) => {
                if with_header {
                    flow.header_pending.store(false, Ordering::Relaxed);
                }
                flow.backend.count_datagram_up(data.len());
                flow.datagrams_up.fetch_add(1, Ordering::Relaxed);
                return true;
            }
            Err(e) => e,
        };
        match SendFailure::of(&error) {
            SendFailure::Full => self.service.count_drop(DropReason::SendError),
            SendFailure::TooBig => self.drop_too_big(client, data.len(), &error),
            SendFailure::Broken => {
                self.service.count_drop(DropReason::SendError);
                flow.backend.record_connect_failure(Instant::now());
                if let Some(held_back) = self.warnings.permit() {
                    warn!(service = self.service.name(), backend = flow.backend.address(),
                        error = %error, held_back, "udp send to backend failed; flow dropped");
                }
                return false;
            }
        }
        true
    }

    fn sweep(&self, flows: &mut Flows, ticks: Ticks) {
        for (client, entry) in flows.expire(ticks.now(), SWEEP_BUDGET) {
            self.close_flow(client, &entry, "idle_timeout");
        }
    }

    /// Stops a flow's reply task and writes its access-log line.
    fn close_flow(&self, client: SocketAddr, entry: &FlowEntry<Flow>, end: &str) {
        let flow = entry.value();
        flow.closer.cancel();
        info!(
            target: "l4lb::access",
            service = self.service.name(),
            client = %client,
            backend = flow.backend.address(),
            datagrams_up = flow.datagrams_up.load(Ordering::Relaxed),
            datagrams_down = flow.datagrams_down.load(Ordering::Relaxed),
            duration_ms = flow.started.elapsed().as_secs_f64() * 1000.0,
            end,
            "udp flow closed"
        );
    }

    /// Counts a datagram that could not open a flow, and says `why` (rate-limited).
    fn drop_datagram<T>(&self, client: SocketAddr, reason: DropReason, why: &str) -> Option<T> {
        self.service.count_drop(reason);
        if let Some(held_back) = self.warnings.permit() {
            warn!(service = self.service.name(), client = %client, reason = reason.as_str(),
                why, held_back, "udp datagram dropped: no flow could be opened");
        }
        None
    }

    /// Refuses a datagram from one of this process's own listen addresses: a
    /// reply of l4lb's, looped back (or spoofed to look like one).
    fn drop_looped<T>(&self, client: SocketAddr) -> Option<T> {
        self.service.count_drop(DropReason::Loop);
        if let Some(held_back) = self.warnings.permit() {
            warn!(service = self.service.name(), client = %client, reason = "loop", held_back,
                "udp datagram dropped: its source is a listen address of this l4lb, \
                 answering it would loop");
        }
        None
    }

    /// Counts a client datagram too big to send on (with the PROXY header, or to a
    /// backend of the other address family); the flow and its backend are fine.
    fn drop_too_big(&self, client: SocketAddr, len: usize, error: &io::Error) {
        self.service.count_drop(DropReason::TooBig);
        if let Some(held_back) = self.warnings.permit() {
            warn!(service = self.service.name(), client = %client, bytes = len,
                error = %error, held_back, "udp datagram too big to send to the backend; dropped");
        }
    }

    fn warn_send_error(&self, client: SocketAddr, backend: &Backend, error: &io::Error) {
        if let Some(held_back) = self.warnings.permit() {
            warn!(service = self.service.name(), client = %client, backend = backend.address(),
                error = %error, held_back, "cannot open a udp socket to the backend");
        }
    }

    async fn recv_failed(&self, error: &io::Error) {
        if let Some(held_back) = self.warnings.permit() {
            warn!(service = self.service.name(), error = %error, held_back, "udp receive failed");
        }
        // Never spin on a persistent error.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// What opening a flow needs from the receive loop.
struct Opening<'a> {
    socket: &'a Arc<UdpSocket>,
    ticks: Ticks,
    every_flow: &'a CancellationToken,
}

/// Sends the backend's replies for one flow back to its client, from the
/// listening socket, until the flow is closed or its backend answers with an error.
async fn relay_replies(
    entry: Arc<FlowEntry<Flow>>,
    listen: Arc<UdpSocket>,
    client: SocketAddr,
    ticks: Ticks,
    service: Arc<Service>,
) {
    let flow = entry.value();
    loop {
        tokio::select! {
            () = flow.closer.cancelled() => return,
            ready = flow.upstream.readable() => if ready.is_err() { return },
        }
        let outcome = REPLIES.with(|replies| {
            let mut replies = replies.borrow_mut();
            let received = replies.recv_ready(&flow.upstream)?;
            entry.touch(ticks.now());
            for (data, _) in (0..received).filter_map(|i| replies.get(i)) {
                match send_now(&listen, data, Some(client)) {
                    Ok(_) => {
                        flow.backend.count_datagram_down(data.len());
                        flow.datagrams_down.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => service.count_drop(match SendFailure::of(&e) {
                        SendFailure::TooBig => DropReason::TooBig,
                        SendFailure::Full | SendFailure::Broken => DropReason::SendError,
                    }),
                }
            }
            Ok::<_, io::Error>(())
        });
        match outcome {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => {
                // ICMP unreachable (ECONNREFUSED) or worse: the next client
                // datagram opens a new flow, perhaps to another backend.
                flow.broken.store(true, Ordering::Release);
                flow.backend.record_connect_failure(Instant::now());
                service.count_drop(DropReason::SendError);
                return;
            }
        }
    }
}

/// `data` behind a PROXY v2 header naming `client` and the service address it
/// sent to (what a flow's first datagram carries with `proxy_protocol = "v2"`).
fn proxy_header(opening: &Opening<'_>, client: SocketAddr, data: &[u8]) -> Vec<u8> {
    let destination = opening.socket.local_addr().unwrap_or(client);
    let mut datagram = proxy_protocol::encode_v2_udp(client, destination);
    datagram.extend_from_slice(data);
    datagram
}

/// How often idle flows are looked for: a quarter of the idle timeout, within 10ms..1s.
fn sweep_period(idle_timeout: Duration) -> Duration {
    (idle_timeout / 4).clamp(Duration::from_millis(10), Duration::from_secs(1))
}
