//! Unit tests of the flow core: every action and every close and drop reason.

use std::cell::Cell;
use std::collections::HashSet;

use super::*;

/// A service with backends named by number; `slots` places under the bound.
struct View {
    generation: u64,
    settings: FlowSettings,
    denied: HashSet<SocketAddr>,
    own: HashSet<SocketAddr>,
    slots: Cell<usize>,
    /// Backends in rotation, the first one is chosen.
    backends: Vec<u32>,
    unavailable: HashSet<u32>,
}

impl View {
    fn new() -> View {
        View {
            generation: 1,
            settings: FlowSettings {
                idle_ms: 1000,
                requests: 0,
                responses: 0,
                proxy_protocol: ProxyProtocol::Off,
                access_log: AccessLog::All,
            },
            denied: HashSet::new(),
            own: HashSet::new(),
            slots: Cell::new(100),
            backends: vec![7],
            unavailable: HashSet::new(),
        }
    }
}

impl ServiceView for View {
    type Backend = u32;
    type Slot = ();
    fn generation(&self) -> u64 {
        self.generation
    }
    fn settings(&self) -> FlowSettings {
        self.settings
    }
    fn permits(&self, client: SocketAddr) -> bool {
        !self.denied.contains(&client)
    }
    fn is_own_address(&self, client: SocketAddr) -> bool {
        self.own.contains(&client)
    }
    fn admit(&self) -> Option<()> {
        let left = self.slots.get();
        (left > 0).then(|| self.slots.set(left - 1))
    }
    fn choose(&self, _client: SocketAddr) -> Option<u32> {
        self.backends
            .iter()
            .copied()
            .find(|b| !self.unavailable.contains(b))
    }
    fn is_available(&self, backend: &u32) -> bool {
        !self.unavailable.contains(backend)
    }
    fn keeps(&self, backend: &u32) -> bool {
        self.backends.contains(backend)
    }
}

type Core = FlowCore<u32, &'static str, ()>;
type Out = Vec<Action<u32, &'static str, ()>>;

fn client(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Feeds one datagram, completing any open as the socket layer would.
fn datagram(core: &mut Core, now: u64, from: SocketAddr, view: &View) -> Out {
    let mut out = Vec::new();
    core.on_datagram(now, from, view, &mut out);
    let mut done = Vec::new();
    for action in out {
        if let Action::Open {
            client, backend, ..
        } = &action
        {
            core.opened(now, *client, *backend, "io", view, &mut done);
        }
        done.push(action);
    }
    done
}

/// The actions, in words: "open 7 +hdr", "send", "close backend_down", "drop acl".
fn words(out: &Out) -> Vec<String> {
    out.iter()
        .map(|a| match a {
            Action::Send { header, .. } => format!("send{}", if *header { " +hdr" } else { "" }),
            Action::Open {
                backend, header, ..
            } => {
                format!("open {backend}{}", if *header { " +hdr" } else { "" })
            }
            Action::Close(c) => format!(
                "close {}{}",
                c.reason.as_str(),
                if c.log { "" } else { " nolog" }
            ),
            Action::Drop { reason, .. } => format!("drop {}", reason.as_str()),
            Action::ArmTimer { at } => format!("timer {at}"),
        })
        .collect()
}

#[test]
fn a_new_client_opens_a_flow_and_then_sends_to_it() {
    let (mut core, view) = (Core::default(), View::new());
    assert_eq!(words(&datagram(&mut core, 0, client(1), &view)), ["open 7"]);
    assert_eq!(words(&datagram(&mut core, 5, client(1), &view)), ["send"]);
    let flow = core.flow(client(1)).expect("flow");
    assert_eq!((flow.datagrams_up, flow.last_seen, flow.backend), (2, 5, 7));
    assert_eq!(core.len(), 1);
}

#[test]
fn drops_name_their_reason() {
    let mut view = View::new();
    view.denied.insert(client(1));
    view.own.insert(client(2));
    let mut core = Core::default();
    assert_eq!(
        words(&datagram(&mut core, 0, client(1), &view)),
        ["drop acl"]
    );
    assert_eq!(
        words(&datagram(&mut core, 0, client(2), &view)),
        ["drop loop"]
    );
    view.unavailable.insert(7);
    assert_eq!(
        words(&datagram(&mut core, 0, client(3), &view)),
        ["drop no_backend"]
    );
    view.unavailable.clear();
    view.slots.set(1);
    assert_eq!(words(&datagram(&mut core, 0, client(3), &view)), ["open 7"]);
    assert_eq!(
        words(&datagram(&mut core, 0, client(4), &view)),
        ["drop max_flows"]
    );
    let mut out = Out::new();
    core.open_failed(client(5), &mut out);
    assert_eq!(words(&out), ["drop send_error"]);
    assert_eq!(core.len(), 1);
}

#[test]
fn a_flow_whose_backend_went_down_is_reopened_elsewhere() {
    let mut view = View::new();
    view.backends = vec![7, 8];
    let mut core = Core::default();
    datagram(&mut core, 0, client(1), &view);
    view.unavailable.insert(7);
    let out = datagram(&mut core, 1, client(1), &view);
    assert_eq!(words(&out), ["close backend_down", "open 8"]);
    assert_eq!(core.flow(client(1)).map(|f| f.backend), Some(8));
}

#[test]
fn a_backend_error_closes_the_flow_and_the_next_datagram_reopens_it() {
    let (mut core, view) = (Core::default(), View::new());
    datagram(&mut core, 0, client(1), &view);
    let id = core.flow(client(1)).expect("flow").id;
    let mut out = Out::new();
    core.on_backend_error(client(1), FlowId(id.0 + 100), AccessLog::All, &mut out);
    assert!(out.is_empty(), "a stale flow id changes nothing");
    core.on_backend_error(client(1), id, AccessLog::All, &mut out);
    assert_eq!(words(&out), ["close backend_error"]);
    assert_eq!(words(&datagram(&mut core, 1, client(1), &view)), ["open 7"]);
    assert_ne!(core.flow(client(1)).map(|f| f.id), Some(id));
}

#[test]
fn a_reload_reaches_the_next_new_flow_and_moves_flows_off_removed_backends() {
    let mut view = View::new();
    let mut core = Core::default();
    datagram(&mut core, 0, client(1), &view);
    datagram(&mut core, 0, client(2), &view);
    view.generation = 2;
    view.backends = vec![9];
    assert_eq!(words(&datagram(&mut core, 1, client(3), &view)), ["open 9"]);
    assert_eq!(
        words(&datagram(&mut core, 1, client(1), &view)),
        ["close backend_removed", "open 9"]
    );
    view.generation = 3;
    view.backends = vec![9, 7];
    assert_eq!(
        words(&datagram(&mut core, 1, client(2), &view)),
        ["send"],
        "7 is kept"
    );
}

#[test]
fn idle_flows_expire_and_the_sweep_rearms() {
    let (mut core, view) = (Core::default(), View::new());
    datagram(&mut core, 0, client(1), &view);
    datagram(&mut core, 0, client(2), &view);
    datagram(&mut core, 600, client(2), &view);
    let mut out = Out::new();
    core.sweep(999, &view, &mut out);
    assert_eq!(words(&out), ["timer 1249"]);
    out.clear();
    core.sweep(1000, &view, &mut out);
    assert_eq!(words(&out), ["close idle_timeout", "timer 1250"]);
    assert!(core.flow(client(2)).is_some());
    let mut out = Out::new();
    core.on_replies(
        1500,
        client(2),
        core.flow(client(2)).expect("flow").id,
        1,
        &view,
        &mut out,
    );
    core.sweep(2000, &view, &mut out);
    assert_eq!(words(&out), ["timer 2250"], "a reply is activity");
    assert_eq!(sweep_period(10), 10);
    assert_eq!(sweep_period(30_000), 1000);
}

#[test]
fn udp_responses_closes_a_flow_once_every_datagram_is_answered() {
    let mut view = View::new();
    view.settings.responses = 1;
    let mut core = Core::default();
    datagram(&mut core, 0, client(1), &view);
    datagram(&mut core, 0, client(1), &view);
    let id = core.flow(client(1)).expect("flow").id;
    let mut out = Out::new();
    core.on_replies(1, client(1), id, 1, &view, &mut out);
    assert!(out.is_empty(), "one of two answered");
    core.on_replies(2, client(1), id, 1, &view, &mut out);
    assert_eq!(words(&out), ["close responses"]);
    assert!(core.is_empty());
    view.settings.responses = 0;
    datagram(&mut core, 3, client(1), &view);
    let id = core.flow(client(1)).expect("flow").id;
    let mut out = Out::new();
    core.on_replies(4, client(1), id, 50, &view, &mut out);
    assert!(out.is_empty(), "off: replies never close a flow");
}

#[test]
fn udp_requests_starts_a_new_flow_after_n_datagrams() {
    let mut view = View::new();
    view.settings.requests = 2;
    let mut core = Core::default();
    assert_eq!(words(&datagram(&mut core, 0, client(1), &view)), ["open 7"]);
    assert_eq!(words(&datagram(&mut core, 0, client(1), &view)), ["send"]);
    assert_eq!(
        words(&datagram(&mut core, 0, client(1), &view)),
        ["close requests", "open 7"]
    );
}

#[test]
fn proxy_v2_heads_the_first_datagram_and_v2_every_heads_each() {
    let mut view = View::new();
    view.settings.proxy_protocol = ProxyProtocol::V2;
    let mut core = Core::default();
    assert_eq!(
        words(&datagram(&mut core, 0, client(1), &view)),
        ["open 7 +hdr"]
    );
    assert_eq!(words(&datagram(&mut core, 0, client(1), &view)), ["send"]);
    core.send_lost(client(1), false);
    assert_eq!(
        words(&datagram(&mut core, 0, client(2), &view)),
        ["open 7 +hdr"]
    );
    core.send_lost(client(2), true);
    assert_eq!(
        words(&datagram(&mut core, 0, client(2), &view)),
        ["send +hdr"],
        "the lost header goes again"
    );
    view.settings.proxy_protocol = ProxyProtocol::V2Every;
    assert_eq!(
        words(&datagram(&mut core, 0, client(3), &view)),
        ["open 7 +hdr"]
    );
    assert_eq!(
        words(&datagram(&mut core, 0, client(3), &view)),
        ["send +hdr"]
    );
}

#[test]
fn access_log_decides_which_closes_are_logged() {
    let mut view = View::new();
    view.settings.access_log = AccessLog::Errors;
    view.backends = vec![7, 8];
    let mut core = Core::default();
    datagram(&mut core, 0, client(1), &view);
    datagram(&mut core, 0, client(2), &view);
    view.unavailable.insert(7);
    assert_eq!(
        words(&datagram(&mut core, 1, client(1), &view)),
        ["close backend_down", "open 8"]
    );
    let mut out = Out::new();
    core.sweep(5000, &view, &mut out);
    assert_eq!(words(&out)[0], "close idle_timeout nolog");
    view.settings.access_log = AccessLog::Off;
    datagram(&mut core, 6000, client(3), &view);
    let mut out = Out::new();
    core.send_failed(client(3), AccessLog::Off, &mut out);
    assert_eq!(words(&out), ["close send_error nolog"]);
}

#[test]
fn shutdown_closes_every_flow_and_a_second_open_replaces_the_first() {
    let (mut core, view) = (Core::default(), View::new());
    datagram(&mut core, 0, client(1), &view);
    let mut out = Out::new();
    core.opened(1, client(1), 8, "io2", &view, &mut out);
    assert_eq!(words(&out), ["close replaced"]);
    datagram(&mut core, 1, client(2), &view);
    let mut out = Out::new();
    core.close_all(AccessLog::All, &mut out);
    assert_eq!(words(&out), ["close shutdown", "close shutdown"]);
    assert!(core.is_empty());
}

// ---- binary upgrades ------------------------------------------------------

#[test]
fn handing_over_exports_the_most_recent_flows_then_forgets_them_and_closes_the_rest() {
    let view = View::new();
    let mut core: FlowCore<u32, &str, ()> = FlowCore::default();
    let mut out = Vec::new();
    for (port, at) in [(1u16, 10u64), (2, 50), (3, 30)] {
        let client: SocketAddr = ([10, 0, 0, 1], port).into();
        core.opened(at, client, 7, "socket", &view, &mut out);
    }
    let states = core.handoff_states(100, 2);
    let clients: Vec<u16> = states.iter().map(|(s, _)| s.client.port()).collect();
    assert_eq!(
        clients,
        [2, 3],
        "most recently active first, within the limit"
    );
    assert_eq!((states[0].0.age_ms, states[0].0.idle_ms), (50, 50));
    assert_eq!(states[0].0.datagrams_up, 1);
    let handed: Vec<SocketAddr> = states.iter().map(|(s, _)| s.client).collect();
    out.clear();
    let forgotten = core.hand_over(&handed, AccessLog::All, &mut out);
    assert_eq!(forgotten, 2);
    assert!(core.is_empty());
    let closed: Vec<u16> = out
        .iter()
        .filter_map(|a| match a {
            Action::Close(c) if c.reason == CloseReason::Shutdown => Some(c.client.port()),
            _ => None,
        })
        .collect();
    assert_eq!(closed, [1], "only the flow not handed over is closed");
}

#[test]
fn an_adopted_flow_keeps_its_counters_and_its_idle_clock() {
    let view = View::new();
    let mut core: FlowCore<u32, &str, ()> = FlowCore::default();
    let client: SocketAddr = ([10, 0, 0, 2], 4000).into();
    let state = handoff::FlowState {
        client,
        datagrams_up: 40,
        datagrams_down: 39,
        age_ms: 5000,
        idle_ms: 900,
        header_sent: true,
    };
    assert!(core.adopt(6000, &state, 7, "socket", &view));
    assert!(
        !core.adopt(6000, &state, 7, "again", &view),
        "one flow per client"
    );
    let flow = core.flow(client).expect("adopted");
    assert_eq!((flow.datagrams_up, flow.datagrams_down), (40, 39));
    assert_eq!((flow.opened_at, flow.last_seen), (1000, 5100));
    let mut out = Vec::new();
    core.sweep(6099, &view, &mut out);
    assert_eq!(core.len(), 1, "idle for 999 ms of its 1000");
    core.sweep(6100, &view, &mut out);
    assert!(
        core.is_empty(),
        "its idle time counts from its last datagram"
    );
    let mut out = Vec::new();
    core.adopt(0, &state, 7, "socket", &view);
    core.on_datagram(1, client, &view, &mut out);
    assert!(
        matches!(out[..], [Action::Send { header: false, .. }]),
        "header already sent"
    );
}
