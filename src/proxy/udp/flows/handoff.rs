//! The flow core's side of a binary upgrade: the state of live flows as plain
//! data (what a successor needs to continue each flow), and adopting flows
//! handed over by a predecessor.
//!
//! Pure like the rest of the core: times are the caller's milliseconds, and the
//! sockets travel beside the state, in the socket layer's `io`.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::{Flow, FlowCore, FlowId, ServiceView, closed};
use crate::proxy::udp::flows::{Action, CloseReason};

/// What one flow is, apart from its socket and backend: enough to continue it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowState {
    pub client: SocketAddr,
    pub datagrams_up: u64,
    pub datagrams_down: u64,
    /// How long ago it was opened.
    pub age_ms: u64,
    /// How long ago its last datagram (either way) passed.
    pub idle_ms: u64,
    /// Whether its PROXY v2 header already went to the backend.
    pub header_sent: bool,
}

impl<B, S, L> FlowCore<B, S, L> {
    /// The state of at most `limit` flows at `now`, most recently active first
    /// (the ones a client is most likely to use again), with each flow.
    pub fn handoff_states(&self, now: u64, limit: usize) -> Vec<(FlowState, &Flow<B, S>)> {
        let mut flows: Vec<(&SocketAddr, &Flow<B, S>)> = self.flows.iter().collect();
        flows.sort_by_key(|(_, flow)| std::cmp::Reverse(flow.last_seen));
        flows
            .into_iter()
            .take(limit)
            .map(|(client, flow)| (state_of(*client, flow, now), flow))
            .collect()
    }

    /// Every flow's socket-layer part, for pausing or resuming them.
    pub fn flows_mut(&mut self) -> impl Iterator<Item = (SocketAddr, &mut Flow<B, S>)> {
        self.flows.iter_mut().map(|(client, flow)| (*client, flow))
    }

    /// After a completed handoff: the flows in `handed` are forgotten without a
    /// close (the successor continues them); every other one is closed as at
    /// shutdown.
    pub fn hand_over(
        &mut self,
        handed: &[SocketAddr],
        log: crate::config::AccessLog,
        out: &mut Vec<Action<B, S, L>>,
    ) -> usize {
        let mut forgotten = 0;
        for client in handed {
            forgotten += usize::from(self.flows.remove(client).is_some());
        }
        for (client, flow) in self.flows.drain() {
            out.push(closed(client, flow, CloseReason::Shutdown, log));
        }
        forgotten
    }

    /// Continues a flow a predecessor handed over, on `backend` and its socket
    /// `io`, as if it had been opened here `state.age_ms` before `now`. A flow
    /// the table already has for that client is kept instead (and `false`).
    pub fn adopt<V>(&mut self, now: u64, state: &FlowState, backend: B, io: S, view: &V) -> bool
    where
        V: ServiceView<Backend = B, Slot = L>,
    {
        if self.flows.get(&state.client).is_some() {
            return false;
        }
        self.next_id += 1;
        let flow = Flow {
            id: FlowId(self.next_id),
            backend,
            io,
            opened_at: now.saturating_sub(state.age_ms),
            last_seen: now.saturating_sub(state.idle_ms),
            datagrams_up: state.datagrams_up,
            datagrams_down: state.datagrams_down,
            generation: view.generation(),
            header_sent: state.header_sent,
        };
        self.flows.insert(state.client, flow);
        true
    }
}

fn state_of<B, S>(client: SocketAddr, flow: &Flow<B, S>, now: u64) -> FlowState {
    FlowState {
        client,
        datagrams_up: flow.datagrams_up,
        datagrams_down: flow.datagrams_down,
        age_ms: now.saturating_sub(flow.opened_at),
        idle_ms: now.saturating_sub(flow.last_seen),
        header_sent: flow.header_sent,
    }
}
