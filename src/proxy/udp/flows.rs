//! The UDP flow core: every decision about flows, and no I/O.
//!
//! Given `now` (milliseconds on the caller's clock), a datagram's source and a
//! read-only view of the service (its ACL, its backends, its settings — see
//! [`ServiceView`]), the core answers with [`Action`]s: send to a flow, open a
//! flow on a backend (with or without a PROXY v2 header), close a flow with a
//! reason, drop a datagram with a reason, arm the sweep timer. It owns the flow
//! table; the socket layer (`listener`) only carries the actions out and reports
//! back what happened (a flow opened, a send failed, replies came back). No
//! sockets, no clock, no randomness: everything here is unit-tested.
//!
//! The view is consulted on every call, so a reload (a new view) takes effect
//! for the very next new flow; existing flows keep their backend until it is no
//! longer available. The only bound on flows is the view's `admit` (the
//! service's `max_flows`, shared by all its listeners).

use std::marker::PhantomData;
use std::net::SocketAddr;

use crate::config::{AccessLog, ProxyProtocol};
use crate::proxy::udp::flow_table::FlowTable;
use crate::service::DropReason;

/// Most flows one sweep examines.
pub const SWEEP_BUDGET: usize = 16_384;

/// What the core reads of the service a datagram arrived at.
pub trait ServiceView {
    /// A backend, as the socket layer needs it to connect.
    type Backend;
    /// A place under the service's flow bound, held for the flow's life.
    type Slot;
    /// Changes whenever the service is reloaded.
    fn generation(&self) -> u64;
    fn settings(&self) -> FlowSettings;
    /// `allow` / `deny`.
    fn permits(&self, client: SocketAddr) -> bool;
    /// One of this process's own listen addresses (answering it would loop).
    fn is_own_address(&self, client: SocketAddr) -> bool;
    /// A place for one more flow, or `None` at the bound.
    fn admit(&self) -> Option<Self::Slot>;
    /// A backend for a new flow of `client`, or `None` when none can take it.
    fn choose(&self, client: SocketAddr) -> Option<Self::Backend>;
    /// Whether a flow may keep sending to `backend` (up, not ejected, not drained).
    fn is_available(&self, backend: &Self::Backend) -> bool;
    /// Whether `backend` is still one of this generation's backends.
    fn keeps(&self, backend: &Self::Backend) -> bool;
}

/// The service settings that shape flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowSettings {
    pub idle_ms: u64,
    /// After this many client datagrams the next one starts a new flow (0: never).
    pub requests: u64,
    /// Backend datagrams expected per client datagram; the flow closes once they
    /// have all come back (0: never).
    pub responses: u64,
    pub proxy_protocol: ProxyProtocol,
    pub access_log: AccessLog,
}

/// Identifies one flow for its lifetime (a client may have several, one after
/// another).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowId(pub u64);

/// Why a flow ended (the `end` field of its access-log line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    IdleTimeout,
    /// Its client sent `udp_requests` datagrams.
    Requests,
    /// Its backend sent the replies `udp_responses` expects.
    Responses,
    /// Its backend is down, ejected or drained.
    BackendDown,
    /// A reload removed its backend.
    BackendRemoved,
    /// Its backend answered with an error (ICMP unreachable).
    BackendError,
    /// Sending to its backend failed.
    SendError,
    Shutdown,
    /// A new flow was opened for the same client.
    Replaced,
}

impl CloseReason {
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::IdleTimeout => "idle_timeout",
            CloseReason::Requests => "requests",
            CloseReason::Responses => "responses",
            CloseReason::BackendDown => "backend_down",
            CloseReason::BackendRemoved => "backend_removed",
            CloseReason::BackendError => "backend_error",
            CloseReason::SendError => "send_error",
            CloseReason::Shutdown => "shutdown",
            CloseReason::Replaced => "replaced",
        }
    }

    /// Whether `access_log = "errors"` logs it.
    pub fn is_error(self) -> bool {
        matches!(
            self,
            CloseReason::BackendDown | CloseReason::BackendError | CloseReason::SendError
        )
    }
}

/// One live flow: plain data, plus the socket layer's own part `io`.
#[derive(Debug)]
pub struct Flow<B, S> {
    pub id: FlowId,
    pub backend: B,
    pub io: S,
    pub opened_at: u64,
    pub last_seen: u64,
    pub datagrams_up: u64,
    pub datagrams_down: u64,
    generation: u64,
    header_sent: bool,
}

/// A flow that ended, handed back for its access-log line and cleanup.
#[derive(Debug)]
pub struct Closed<B, S> {
    pub client: SocketAddr,
    pub flow: Flow<B, S>,
    pub reason: CloseReason,
    /// Whether `access_log` wants a line for it.
    pub log: bool,
}

/// What the socket layer is to do.
#[derive(Debug)]
pub enum Action<B, S, L> {
    /// Send the datagram to `client`'s flow, behind a PROXY v2 header if `header`.
    Send {
        client: SocketAddr,
        header: bool,
    },
    /// Open a flow for `client` on `backend` and send it the datagram; then
    /// report `opened` (or `open_failed`).
    Open {
        client: SocketAddr,
        backend: B,
        slot: L,
        header: bool,
    },
    Close(Closed<B, S>),
    Drop {
        client: SocketAddr,
        reason: DropReason,
    },
    /// Call `sweep` again at `at`.
    ArmTimer {
        at: u64,
    },
}

/// The flows of one listen address.
#[derive(Debug)]
pub struct FlowCore<B, S, L> {
    flows: FlowTable<SocketAddr, Flow<B, S>>,
    next_id: u64,
    _slots: PhantomData<fn(L)>,
}

impl<B, S, L> Default for FlowCore<B, S, L> {
    fn default() -> Self {
        FlowCore {
            flows: FlowTable::default(),
            next_id: 0,
            _slots: PhantomData,
        }
    }
}

/// Where the core writes its actions (the caller's, reused).
pub type Actions<B, S, L> = Vec<Action<B, S, L>>;

impl<B, S, L> FlowCore<B, S, L> {
    pub fn len(&self) -> usize {
        self.flows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }

    pub fn flow(&self, client: SocketAddr) -> Option<&Flow<B, S>> {
        self.flows.get(&client)
    }

    /// A datagram from `client` arrived.
    pub fn on_datagram<V>(
        &mut self,
        now: u64,
        client: SocketAddr,
        view: &V,
        out: &mut Actions<B, S, L>,
    ) where
        V: ServiceView<Backend = B, Slot = L>,
    {
        if !view.permits(client) {
            return out.push(Action::Drop {
                client,
                reason: DropReason::Acl,
            });
        }
        let settings = view.settings();
        if let Some(flow) = self.flows.get_mut(&client) {
            match flow_end(flow, view, &settings) {
                None => {
                    // Its backend is in this generation too: checked once per reload.
                    flow.generation = view.generation();
                    flow.last_seen = now;
                    flow.datagrams_up += 1;
                    let header = wants_header(settings.proxy_protocol, flow.header_sent);
                    flow.header_sent |= header;
                    return out.push(Action::Send { client, header });
                }
                Some(reason) => self.close(client, reason, settings.access_log, out),
            }
        }
        self.open(client, view, &settings, out);
    }

    /// Decides on a new flow for `client` (the open itself is the caller's).
    fn open<V>(
        &mut self,
        client: SocketAddr,
        view: &V,
        settings: &FlowSettings,
        out: &mut Actions<B, S, L>,
    ) where
        V: ServiceView<Backend = B, Slot = L>,
    {
        if view.is_own_address(client) {
            return out.push(Action::Drop {
                client,
                reason: DropReason::Loop,
            });
        }
        let Some(slot) = view.admit() else {
            return out.push(Action::Drop {
                client,
                reason: DropReason::MaxFlows,
            });
        };
        let Some(backend) = view.choose(client) else {
            return out.push(Action::Drop {
                client,
                reason: DropReason::NoBackend,
            });
        };
        let header = wants_header(settings.proxy_protocol, false);
        out.push(Action::Open {
            client,
            backend,
            slot,
            header,
        });
    }

    /// The caller opened the flow `Open` asked for and sent its first datagram.
    pub fn opened<V>(
        &mut self,
        now: u64,
        client: SocketAddr,
        backend: B,
        io: S,
        view: &V,
        out: &mut Actions<B, S, L>,
    ) where
        V: ServiceView<Backend = B, Slot = L>,
    {
        let settings = view.settings();
        self.next_id += 1;
        let flow = Flow {
            id: FlowId(self.next_id),
            backend,
            io,
            opened_at: now,
            last_seen: now,
            datagrams_up: 1,
            datagrams_down: 0,
            generation: view.generation(),
            header_sent: wants_header(settings.proxy_protocol, false),
        };
        if let Some(old) = self.flows.insert(client, flow) {
            out.push(closed(
                client,
                old,
                CloseReason::Replaced,
                settings.access_log,
            ));
        }
    }

    /// The caller could not open the flow `Open` asked for (no socket).
    pub fn open_failed(&mut self, client: SocketAddr, out: &mut Actions<B, S, L>) {
        out.push(Action::Drop {
            client,
            reason: DropReason::SendError,
        });
    }

    /// A datagram to `client`'s flow was lost (full buffer): its PROXY header,
    /// if it carried the first one, must go out with the next datagram.
    pub fn send_lost(&mut self, client: SocketAddr, carried_header: bool) {
        if let Some(flow) = self.flows.get_mut(&client) {
            flow.header_sent &= !carried_header;
            flow.datagrams_up = flow.datagrams_up.saturating_sub(1);
        }
    }

    /// Sending to `client`'s flow failed for good: the flow is closed.
    pub fn send_failed(&mut self, client: SocketAddr, log: AccessLog, out: &mut Actions<B, S, L>) {
        self.close(client, CloseReason::SendError, log, out);
    }

    /// `count` replies of flow `id` went back to `client`.
    pub fn on_replies<V>(
        &mut self,
        now: u64,
        client: SocketAddr,
        id: FlowId,
        count: u64,
        view: &V,
        out: &mut Actions<B, S, L>,
    ) where
        V: ServiceView<Backend = B, Slot = L>,
    {
        let settings = view.settings();
        let Some(flow) = self.flows.get_mut(&client).filter(|f| f.id == id) else {
            return;
        };
        flow.last_seen = now;
        flow.datagrams_down += count;
        let expected = flow.datagrams_up.saturating_mul(settings.responses);
        if settings.responses > 0 && flow.datagrams_down >= expected {
            self.close(client, CloseReason::Responses, settings.access_log, out);
        }
    }

    /// Flow `id`'s backend answered with an error (ICMP unreachable).
    pub fn on_backend_error(
        &mut self,
        client: SocketAddr,
        id: FlowId,
        log: AccessLog,
        out: &mut Actions<B, S, L>,
    ) {
        if self.flows.get(&client).is_some_and(|f| f.id == id) {
            self.close(client, CloseReason::BackendError, log, out);
        }
    }

    /// Closes flows idle for the idle timeout (a bounded slice of the table) and
    /// arms the next sweep.
    pub fn sweep<V: ServiceView<Backend = B, Slot = L>>(
        &mut self,
        now: u64,
        view: &V,
        out: &mut Actions<B, S, L>,
    ) {
        let settings = view.settings();
        let idle_ms = settings.idle_ms.max(1);
        let idle = |f: &Flow<B, S>| now.saturating_sub(f.last_seen) >= idle_ms;
        for (client, flow) in self.flows.expire(SWEEP_BUDGET, idle) {
            out.push(closed(
                client,
                flow,
                CloseReason::IdleTimeout,
                settings.access_log,
            ));
        }
        out.push(Action::ArmTimer {
            at: now + sweep_period(idle_ms),
        });
    }

    /// Closes every flow.
    pub fn close_all(&mut self, log: AccessLog, out: &mut Actions<B, S, L>) {
        for (client, flow) in self.flows.drain() {
            out.push(closed(client, flow, CloseReason::Shutdown, log));
        }
    }

    fn close(
        &mut self,
        client: SocketAddr,
        reason: CloseReason,
        log: AccessLog,
        out: &mut Actions<B, S, L>,
    ) {
        if let Some(flow) = self.flows.remove(&client) {
            out.push(closed(client, flow, reason, log));
        }
    }
}

/// Why an existing flow cannot take its client's next datagram, if it cannot.
fn flow_end<B, S, V: ServiceView<Backend = B>>(
    flow: &Flow<B, S>,
    view: &V,
    settings: &FlowSettings,
) -> Option<CloseReason> {
    if flow.generation != view.generation() && !view.keeps(&flow.backend) {
        Some(CloseReason::BackendRemoved)
    } else if !view.is_available(&flow.backend) {
        Some(CloseReason::BackendDown)
    } else if settings.requests > 0 && flow.datagrams_up >= settings.requests {
        Some(CloseReason::Requests)
    } else {
        None
    }
}

fn wants_header(mode: ProxyProtocol, header_sent: bool) -> bool {
    match mode {
        ProxyProtocol::V2 => !header_sent,
        ProxyProtocol::V2Every => true,
        ProxyProtocol::Off | ProxyProtocol::V1 => false,
    }
}

fn closed<B, S, L>(
    client: SocketAddr,
    flow: Flow<B, S>,
    reason: CloseReason,
    log: AccessLog,
) -> Action<B, S, L> {
    let log = match log {
        AccessLog::All => true,
        AccessLog::Errors => reason.is_error(),
        AccessLog::Off => false,
    };
    Action::Close(Closed {
        client,
        flow,
        reason,
        log,
    })
}

/// How often idle flows are looked for: a quarter of the idle timeout, within 10ms..1s.
pub fn sweep_period(idle_ms: u64) -> u64 {
    (idle_ms / 4).clamp(10, 1000)
}

pub mod handoff;

#[cfg(test)]
mod tests;
