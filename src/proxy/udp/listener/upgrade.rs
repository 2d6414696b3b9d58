//! The receive loop's part in a binary upgrade: pausing and handing its flows
//! over (or resuming when the upgrade fails), and adopting the flows a
//! predecessor handed over on the same listening socket.
//!
//! The pure decisions (which flows, their state, forgetting or adopting them)
//! are the flow core's (`flows::handoff`); this file duplicates descriptors,
//! stops and restarts reply tasks, and logs.

use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::Instant;

use tokio::net::UdpSocket;
use tracing::{info, warn};

use super::{Actions, FlowIo, Shell};
use crate::proxy::udp::handoff::{HandedFlow, PauseRequest};

impl Shell<'_> {
    /// Stops reading (this loop and every flow's reply task), hands the flows
    /// over, and waits for the upgrade's outcome: `true` when the successor
    /// took over (the loop is to end), `false` when it resumed.
    pub(super) async fn pause(&mut self, request: PauseRequest) -> bool {
        for (_, flow) in self.core.flows_mut() {
            flow.io.closer.cancel();
        }
        let started = Instant::now();
        let now = self.ticks(started);
        let mut handed = Vec::new();
        for (state, flow) in self.core.handoff_states(now, request.limit) {
            if started.elapsed() >= request.budget {
                break;
            }
            match flow.io.upstream.as_fd().try_clone_to_owned() {
                Ok(socket) => handed.push(HandedFlow {
                    state,
                    backend: flow.backend.backend.address().to_string(),
                    backend_addr: flow.backend.backend.addr(),
                    socket,
                }),
                Err(e) => {
                    warn!(error = %e, "cannot duplicate a udp flow's socket; not handed over")
                }
            }
        }
        let clients: Vec<SocketAddr> = handed.iter().map(|f| f.state.client).collect();
        let offered = handed.len();
        if request.reply.send(handed).is_err() || !request.outcome.await.unwrap_or(false) {
            self.resume();
            return false;
        }
        let service = self.proxy.slot.current();
        let mut actions = Actions::new();
        let forgotten = self
            .core
            .hand_over(&clients, service.config().access_log, &mut actions);
        let own = self.proxy.own_addresses.load();
        let view = super::view(&service, &own, &self.proxy.flow_budget);
        let closed = actions.len();
        self.carry_out(&mut actions, &view, &[]);
        self.every_flow.cancel();
        info!(
            service = service.name(),
            handed_over = forgotten,
            offered,
            closed,
            "udp listener handed over to the new process"
        );
        true
    }

    /// After a failed upgrade: every flow's reply task runs again.
    fn resume(&mut self) {
        let service = self.proxy.slot.current();
        let every_flow = self.every_flow.clone();
        let mut paused = Vec::new();
        for (client, flow) in self.core.flows_mut() {
            flow.io.closer = every_flow.child_token();
            paused.push(client);
        }
        for client in paused {
            if let Some(flow) = self.core.flow(client) {
                self.spawn_replies(client, flow, &service);
            }
        }
        info!(
            service = service.name(),
            flows = self.core.len(),
            "upgrade did not complete: udp listener serving again"
        );
    }

    /// Continues the flows a predecessor handed over on this socket, each on
    /// its own backend socket, when its backend is still one of the service's
    /// (same configured address, same resolved address) and has room.
    pub(super) fn adopt(&mut self, flows: Vec<HandedFlow>) {
        if flows.is_empty() {
            return;
        }
        let service = self.proxy.slot.current();
        let own = self.proxy.own_addresses.load();
        let view = super::view(&service, &own, &self.proxy.flow_budget);
        let offered = flows.len();
        let now = self.ticks(view.now);
        let mut adopted = 0;
        for flow in flows {
            let Some((backend, slots)) = view.adoptable(&flow.backend, flow.backend_addr) else {
                continue;
            };
            let upstream = match into_tokio(flow.socket) {
                Ok(upstream) => Arc::new(upstream),
                Err(e) => {
                    warn!(error = %e, "cannot register a handed-over udp flow's socket");
                    continue;
                }
            };
            let io = FlowIo {
                upstream,
                closer: self.every_flow.child_token(),
                _slots: slots,
            };
            let client = flow.state.client;
            if self.core.adopt(now, &flow.state, backend, io, &view) {
                adopted += 1;
                if let Some(flow) = self.core.flow(client) {
                    self.spawn_replies(client, flow, &service);
                }
            }
        }
        info!(
            service = service.name(),
            adopted, offered, "udp flows continued from the previous process"
        );
    }
}

fn into_tokio(fd: std::os::fd::OwnedFd) -> std::io::Result<UdpSocket> {
    let socket = std::net::UdpSocket::from(fd);
    socket.set_nonblocking(true)?;
    UdpSocket::from_std(socket)
}
