//! The discrete-event loop of one simulated run: clients arrive, the production
//! [`Service`] admits them and chooses their backend (its real tiers, strategy,
//! slow start, admin states, health and outlier records), connects take their
//! latency and succeed or fail as the simulated server answers, sessions are
//! served or queued and end; health probes, scripted events and samples for
//! the plot happen on the same virtual clock.
//!
//! The connect loop follows `proxy::tcp`'s rules through the same
//! `ConnectAttempts` budget: up to `connect_attempts` failures, backends already
//! tried skipped, a full backend (`max_connections`) passed over. Every random number comes from generators seeded from the run's seed.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::arrivals::Arrival;
use super::clock::{Agenda, VirtualClock};
use super::outcome::{EventOutcome, RunOutcome};
use super::script::{Action, ScriptedEvent, Setting};
use super::server::{Answer, Outage, Server};
use super::workload::BackendModel;
use crate::backend::ConnectionGuard;
use crate::backend::admin_state::AdminState;
use crate::backend::health::{CheckResult, Transition};
use crate::config::{HashKey, ServiceConfig};
use crate::health::checker::INTERVAL_JITTER;
use crate::metrics::Metrics;
use crate::random::jitter_with;
use crate::service::{Admission, ConnectAttempts, PickDraws, RejectReason, Service};

/// Everything one run needs.
#[derive(Debug)]
pub struct Scenario<'a> {
    pub config: ServiceConfig,
    pub arrivals: &'a [Arrival],
    /// The simulated server of each backend, in configuration order.
    pub models: Vec<BackendModel>,
    pub events: &'a [ScriptedEvent<usize>],
    /// The arrival period: figures are averaged over it.
    pub length: Duration,
    pub seed: u64,
}

/// What the loop does next.
#[derive(Debug, Clone, Copy)]
enum Task {
    Connected {
        session: usize,
        backend: usize,
        timed_out: bool,
        took: Duration,
    },
    End {
        session: usize,
    },
    Probe {
        backend: usize,
    },
    Script {
        index: usize,
    },
    Sample,
}

/// One client's session while it lives.
#[derive(Debug)]
struct Session {
    _admission: Admission,
    guard: Option<ConnectionGuard>,
    attempts: ConnectAttempts,
}

/// How many samples of concurrency the plot gets over the arrival period.
const SAMPLES: u32 = 400;

/// Runs `scenario` to its end (every session over) and returns its figures.
pub fn run(scenario: &Scenario<'_>) -> Result<RunOutcome, String> {
    let metrics = Metrics::new().map_err(|e| format!("cannot build the metrics registry: {e}"))?;
    let mut engine = Engine::new(scenario, metrics);
    engine.start();
    engine.drive();
    Ok(engine.finish())
}

struct Engine<'a> {
    scenario: &'a Scenario<'a>,
    metrics: Metrics,
    config: ServiceConfig,
    service: Arc<Service>,
    clock: VirtualClock,
    agenda: Agenda<Task>,
    servers: Vec<Server>,
    sessions: HashMap<usize, Session>,
    picks: fastrand::Rng,
    probes: fastrand::Rng,
    now: Duration,
    horizon: Duration,
    next_arrival: usize,
    /// Per window between events: each client key's latest backend.
    windows: Vec<HashMap<SocketAddr, usize>>,
    outcome: RunOutcome,
}

impl<'a> Engine<'a> {
    fn new(scenario: &'a Scenario<'a>, metrics: Metrics) -> Engine<'a> {
        let config = scenario.config.clone();
        let service = Arc::new(Service::new(config.clone(), &metrics));
        let servers = scenario
            .models
            .iter()
            .map(|&m| Server::new(m, scenario.length))
            .collect();
        let last_event = scenario
            .events
            .iter()
            .map(|e| e.at)
            .max()
            .unwrap_or_default();
        Engine {
            metrics,
            service,
            clock: VirtualClock::new(std::time::Instant::now()),
            agenda: Agenda::default(),
            servers,
            sessions: HashMap::new(),
            picks: fastrand::Rng::with_seed(scenario.seed ^ 0x7069_636b),
            probes: fastrand::Rng::with_seed(scenario.seed ^ 0x7072_6f62),
            now: Duration::ZERO,
            horizon: scenario.length.max(last_event),
            next_arrival: 0,
            windows: vec![HashMap::new(); scenario.events.len() + 1],
            outcome: RunOutcome::new(config.strategy.kind, scenario.config.backends.len()),
            config,
            scenario,
        }
    }

    fn start(&mut self) {
        for (index, _) in self.scenario.events.iter().enumerate() {
            self.agenda
                .schedule(self.scenario.events[index].at, Task::Script { index });
        }
        for backend in 0..self.servers.len() {
            if let Some(health) = self.health(backend) {
                let first = health.interval.mul_f64(self.probes.f64());
                self.agenda.schedule(first, Task::Probe { backend });
            }
        }
        self.agenda.schedule(Duration::ZERO, Task::Sample);
    }

    fn drive(&mut self) {
        loop {
            let arrival = self.scenario.arrivals.get(self.next_arrival).map(|a| a.at);
            let task = self.agenda.next_time();
            match (arrival, task) {
                (Some(a), Some(t)) if t <= a => self.do_next_task(),
                (Some(a), _) => {
                    self.now = a;
                    self.next_arrival += 1;
                    self.arrive(self.next_arrival - 1);
                }
                (None, Some(_)) => self.do_next_task(),
                (None, None) => return,
            }
        }
    }

    fn do_next_task(&mut self) {
        let Some((at, task)) = self.agenda.pop() else {
            return;
        };
        self.now = at;
        match task {
            Task::Connected {
                session,
                backend,
                timed_out,
                took,
            } => self.connected(session, backend, timed_out, took),
            Task::End { session } => self.end(session),
            Task::Probe { backend } => self.probe(backend),
            Task::Script { index } => self.script(index),
            Task::Sample => self.sample(),
        }
    }

    fn arrive(&mut self, index: usize) {
        self.outcome.arrived += 1;
        let client = self.scenario.arrivals[index].client;
        let Some(admission) = self.service.admit(client) else {
            self.outcome.rejected.count(RejectReason::MaxConnections);
            return;
        };
        let session = Session {
            _admission: admission,
            guard: None,
            attempts: ConnectAttempts::default(),
        };
        self.sessions.insert(index, session);
        self.try_connect(index);
    }

    /// The next connect attempt of `index`, or its rejection when none is left.
    fn try_connect(&mut self, index: usize) {
        let attempts = self.config.connect_attempts;
        let client = self.scenario.arrivals[index].client;
        let now = self.clock.at(self.now);
        let backends = self.service.backends().len();
        let Some(session) = self.sessions.get_mut(&index) else {
            return;
        };
        while session.attempts.next_round(attempts, backends) {
            let draws = PickDraws {
                pick: self.picks.u64(..),
                admission: self.picks.u64(..),
            };
            let tried = session.attempts.tried();
            let Some(backend) = self.service.choose_backend_at(client, tried, now, draws) else {
                break;
            };
            session.attempts.offered(backend);
            let Some(guard) = self.service.backends()[backend].try_acquire() else {
                continue;
            };
            session.guard = Some(guard);
            let timed_out = self.servers[backend].outage == Some(Outage::Blackholed);
            let took = match timed_out {
                true => self.config.connect_timeout,
                false => self.servers[backend].model.connect_latency,
            };
            let task = Task::Connected {
                session: index,
                backend,
                timed_out,
                took,
            };
            self.agenda.schedule(self.now + took, task);
            return;
        }
        let reason = session.attempts.give_up_reason();
        self.sessions.remove(&index);
        self.outcome.rejected.count(reason);
    }

    fn connected(&mut self, index: usize, backend: usize, timed_out: bool, took: Duration) {
        let answer = match timed_out {
            true => Answer::Refuse,
            false => self.servers[backend].answer(),
        };
        let Some(session) = self.sessions.get_mut(&index) else {
            return;
        };
        let guard = session.guard.take();
        let live = &self.service.backends()[backend];
        if answer == Answer::Refuse {
            drop(guard);
            session.attempts.failed();
            self.servers[backend].figures.refused += 1;
            live.record_connect_failure(self.clock.at(self.now));
            return self.try_connect(index);
        }
        live.record_connect_success(took);
        session.guard = guard;
        let arrival = &self.scenario.arrivals[index];
        let key = client_key(arrival.client, self.config.strategy.hash_key);
        self.windows[self.outcome.events.len()].insert(key, backend);
        self.servers[backend].connect(self.now, index, answer);
        if answer == Answer::Serve {
            self.begin_service(index);
        }
    }

    /// `index` starts being served now: its start latency is known, its end scheduled.
    fn begin_service(&mut self, index: usize) {
        let arrival = &self.scenario.arrivals[index];
        self.outcome
            .latencies
            .push(self.now.saturating_sub(arrival.at));
        self.outcome.served += 1;
        self.agenda
            .schedule(self.now + arrival.duration, Task::End { session: index });
    }

    fn end(&mut self, index: usize) {
        let Some(session) = self.sessions.remove(&index) else {
            return; // cut by an event meanwhile
        };
        let Some(backend) = session.attempts.tried().last().copied() else {
            return;
        };
        drop(session);
        if let Some(next) = self.servers[backend].finish(self.now, index) {
            self.begin_service(next);
        }
    }

    /// Ends every session on `backend` now (its clients see their connection die).
    fn cut_sessions(&mut self, backend: usize) -> u64 {
        let cut = self.servers[backend].cut_all(self.now);
        for index in &cut {
            self.sessions.remove(index);
        }
        cut.len() as u64
    }

    fn health(&self, backend: usize) -> Option<crate::config::HealthConfig> {
        let own = self.config.backends.get(backend)?.health.clone();
        own.or_else(|| self.config.health.clone())
    }

    fn probe(&mut self, backend: usize) {
        let Some(health) = self.health(backend) else {
            return;
        };
        let now = self.clock.at(self.now);
        let (result, started, error) = match self.servers[backend].outage {
            None => (CheckResult::Success, now, None),
            Some(Outage::Killed) => (CheckResult::Failure, now, Some("connection refused")),
            Some(Outage::Blackholed) => {
                let started = now.checked_sub(health.timeout).unwrap_or(now);
                (CheckResult::Timeout, started, Some("no answer"))
            }
        };
        let live = Arc::clone(&self.service.backends()[backend]);
        let effect = live.record_check(result, error, started, now, (health.rise, health.fall));
        if effect.transition == Some(Transition::Down) && self.config.close_on_down {
            self.cut_sessions(backend);
        }
        if self.now < self.horizon {
            let wait = jitter_with(health.interval, INTERVAL_JITTER, self.probes.u64(..));
            self.agenda
                .schedule(self.now + wait, Task::Probe { backend });
        }
    }

    fn script(&mut self, index: usize) {
        let event = &self.scenario.events[index];
        let mut cut = 0;
        match &event.action {
            Action::Kill(b) => cut = self.outage(*b, Outage::Killed),
            Action::Blackhole(b) => cut = self.outage(*b, Outage::Blackholed),
            Action::Restore(None) => self.servers.iter_mut().for_each(|s| s.outage = None),
            Action::Restore(Some(b)) => self.servers[*b].outage = None,
            Action::Reload(b, setting) => self.reload(*b, *setting),
            Action::Drain(b) => self.set_admin(*b, AdminState::Drain),
            Action::Ready(b) => self.set_admin(*b, AdminState::Ready),
            Action::Maint(b) => {
                self.set_admin(*b, AdminState::Maint);
                cut = self.cut_sessions(*b);
            }
        }
        self.outcome.events.push(EventOutcome {
            cut,
            ..EventOutcome::default()
        });
    }

    fn outage(&mut self, backend: usize, outage: Outage) -> u64 {
        self.servers[backend].outage = Some(outage);
        self.cut_sessions(backend)
    }

    fn set_admin(&self, backend: usize, state: AdminState) {
        self.service.backends()[backend].set_admin_state(state);
    }

    /// A configuration reload through the production path: the next generation
    /// of the service, its backends matched by identity.
    fn reload(&mut self, backend: usize, setting: Setting) {
        if let Some(b) = self.config.backends.get_mut(backend) {
            match setting {
                Setting::Weight(w) => b.weight = w,
                Setting::MaxConnections(m) => b.max_connections = m,
            }
        }
        let previous = Some(self.service.as_ref());
        let next = Service::reloaded(
            self.config.clone(),
            &self.metrics,
            previous,
            &mut |_| None,
            true,
        );
        self.service = Arc::new(next.0);
    }

    fn sample(&mut self) {
        let open = self.servers.iter().map(|s| s.open.len()).collect();
        self.outcome.samples.push((self.now, open));
        let step = (self.scenario.length / SAMPLES).max(Duration::from_millis(1));
        if self.now < self.scenario.length {
            self.agenda.schedule(self.now + step, Task::Sample);
        }
    }

    fn finish(mut self) -> RunOutcome {
        for server in &mut self.servers {
            server.advance(self.now);
        }
        self.outcome.finished_at = self.now;
        self.outcome.figures = self.servers.iter().map(|s| s.figures.clone()).collect();
        let events = self.scenario.events;
        for (k, event) in self.outcome.events.iter_mut().enumerate() {
            let target = event_target(&events[k]);
            *event = EventOutcome {
                cut: event.cut,
                ..clients_moved(&self.windows[k], &self.windows[k + 1], target)
            };
        }
        self.outcome.latencies.sort_unstable();
        self.outcome
    }
}

/// The backend a kill, blackhole, drain or maint event takes out, whose clients must move.
pub fn event_target(event: &ScriptedEvent<usize>) -> Option<usize> {
    match event.action {
        Action::Kill(b) | Action::Blackhole(b) | Action::Maint(b) | Action::Drain(b) => Some(b),
        _ => None,
    }
}

/// What a hashing strategy hashes of `client` (the whole address otherwise).
fn client_key(client: SocketAddr, key: HashKey) -> SocketAddr {
    match key {
        HashKey::SourceIpPort => client,
        // Simulated clients send no ClientHello: "sni" hashes the source IP.
        HashKey::SourceIp | HashKey::Sni => SocketAddr::new(client.ip(), 0),
    }
}

/// Clients seen both before and after an event, and how many of them are on
/// another backend after it.
fn clients_moved(
    before: &HashMap<SocketAddr, usize>,
    after: &HashMap<SocketAddr, usize>,
    target: Option<usize>,
) -> EventOutcome {
    let mut outcome = EventOutcome::default();
    for (key, was) in before {
        let Some(now) = after.get(key) else {
            continue;
        };
        outcome.seen += 1;
        outcome.moved += usize::from(was != now);
        outcome.on_target += usize::from(Some(*was) == target);
    }
    outcome
}
