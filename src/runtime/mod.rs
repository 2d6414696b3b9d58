//! Wiring: a checked `Config` becomes bound listeners, services, probes, the admin
//! endpoint and their tasks; `serve` runs them, applies reloads, and on shutdown
//! drains.
//!
//! `Server::bind` does every fallible step (binding each listen address and the
//! admin address) up front, so `l4lb run` fails before serving anything when one
//! address cannot be bound. `ServerHandle` is how signals (or tests) ask the
//! running server to reload or stop. `listeners` and `probes` keep the running
//! sockets and probe tasks; `reload` applies a new configuration as a diff; `live`
//! is the read-only view operators get through the admin endpoint. `workers`
//! runs the data plane (one single-threaded runtime per worker thread; the
//! caller's runtime keeps the control plane), `watchdog` reports a worker whose
//! loop stopped turning, `fd_budget` derives the default process connection
//! cap from the open-file limit and UDP flows' share of the descriptors, which
//! `flow_cap` applies.

mod admin_endpoint;
mod backend_edits;
pub mod control;
mod discovery_groups;
mod fd_budget;
mod flow_cap;
mod handoff;
pub mod inherited;
mod listeners;
mod live;
mod memory;
mod probes;
mod reload;
mod socket_group;
pub mod takeover;
mod watchdog;
mod workers;

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::config::WorkerDispatchMode;
use crate::config::{self, Config, ConfigErrors};
use crate::lifecycle::Lifecycle;
use crate::limit::ConnectionLimit;
use crate::metrics::{Metrics, SampleSource};
use crate::proxy::dispatch::WorkerDispatch;
use crate::proxy::udp::flow_budget::FlowBudget;
use crate::service::Service;

use admin_endpoint::AdminEndpoint;
use backend_edits::BackendEdits;
use discovery_groups::DiscoveryGroups;
use handoff::HandoffCommand;
use inherited::InheritedSockets;
use listeners::{ListenerSet, LoopContext, PendingSocket};
use live::{LiveState, Snapshot};
use probes::ProbeSet;
use watchdog::Heartbeats;
use workers::WorkerPool;

pub use listeners::HandedFlows;
pub use probes::ProbeTasks;
pub use reload::ReloadReport;

/// Why a configuration could not be started (or a reload could not be applied).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("service \"{service}\": cannot listen on {address}: {source}")]
    Listen {
        service: String,
        address: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("admin: cannot listen on {address}: {source}")]
    Admin {
        address: SocketAddr,
        #[source]
        source: io::Error,
    },
    /// A service's `source` or `mark` cannot be used by this process or host.
    #[error("{0}")]
    Source(#[from] crate::proxy::source_check::SourceProblem),
    #[error("cannot start the worker threads: {0}")]
    Workers(#[source] io::Error),
    #[error("metrics registry: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("binary upgrade: {0}")]
    Upgrade(String),
}

/// Why a reload left the running configuration untouched.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("invalid configuration:\n{0}")]
    Invalid(ConfigErrors),
    #[error("{0}")]
    Start(#[from] StartError),
    #[error("the server is shutting down")]
    Stopped,
}

/// How a drain ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainReport {
    /// Every session ended by itself within the grace period.
    pub completed: bool,
    /// Sessions still open when the grace period ran out (closed then).
    pub closed_at_deadline: usize,
}

type ReloadReply = oneshot::Sender<Result<ReloadReport, ReloadError>>;

/// Asks a running `Server` to reload or stop.
#[derive(Debug, Clone)]
pub struct ServerHandle {
    lifecycle: Lifecycle,
    reloads: mpsc::Sender<(Config, ReloadReply)>,
    live: Arc<LiveState>,
}

impl ServerHandle {
    /// Starts shutting down: `/ready` turns 503 at once, the listeners keep
    /// accepting for `drain_delay`, then stop; open sessions get the grace
    /// period to finish.
    pub fn shutdown(&self) {
        self.lifecycle.withdraw.cancel();
    }

    /// Stops accepting and closes every open session now.
    pub fn close_now(&self) {
        self.lifecycle.withdraw.cancel();
        self.lifecycle.stop_accepting.cancel();
        self.lifecycle.close_sessions.close();
    }

    /// Re-reads `path` and applies it; on any error the running configuration
    /// stays untouched, every error is logged, and the failure is counted.
    /// The file is read and checked on a blocking thread, so a slow file or
    /// resolver never stalls the control plane.
    pub async fn reload_file(&self, path: &Path) -> Result<ReloadReport, ReloadError> {
        let owned = path.to_path_buf();
        let loaded = tokio::task::spawn_blocking(move || config::load(&owned))
            .await
            .unwrap_or_else(|e| {
                let message = format!("reading the configuration failed: {e}");
                Err(ConfigErrors::about_file(path, message))
            });
        let outcome = match loaded {
            Ok(config) => self.reload(config).await,
            Err(errors) => {
                for line in errors.capped_lines(config::SHOWN_ERRORS) {
                    error!("{line}");
                }
                error!(
                    errors = errors.len(),
                    "reload refused: configuration is invalid; still serving the previous one"
                );
                self.live.count_reload(false);
                Err(ReloadError::Invalid(errors))
            }
        };
        let _ = tokio::task::spawn_blocking(memory::release_free_memory).await;
        outcome
    }

    /// Applies an already validated configuration (see `reload_file`).
    pub async fn reload(&self, config: Config) -> Result<ReloadReport, ReloadError> {
        let (reply, result) = oneshot::channel();
        if self.reloads.send((config, reply)).await.is_err() {
            return Err(ReloadError::Stopped);
        }
        let outcome = result.await.unwrap_or(Err(ReloadError::Stopped));
        self.live.count_reload(outcome.is_ok());
        match &outcome {
            Ok(report) => info!(generation = report.generation, "{report}"),
            Err(e) => {
                error!(error = %e, "reload refused; still serving the previous configuration")
            }
        }
        outcome
    }

    /// The current generation of service `name`.
    pub fn service(&self, name: &str) -> Option<Arc<Service>> {
        let snapshot = self.live.snapshot();
        let view = snapshot
            .services
            .iter()
            .find(|v| v.service.name() == name)?;
        Some(Arc::clone(&view.service))
    }

    /// The addresses service `name` is bound to now.
    pub fn listen_addrs(&self, name: &str) -> Vec<SocketAddr> {
        let snapshot = self.live.snapshot();
        snapshot
            .services
            .iter()
            .find(|v| v.service.name() == name)
            .map(|v| v.listen.clone())
            .unwrap_or_default()
    }

    /// What is wrong with the worker threads (one that has not run its loop
    /// for seconds), or `None` when every one runs.
    pub fn stalled_workers(&self) -> Option<String> {
        self.live.stalled_workers()
    }

    /// One line for `STATUS=`: what is being served.
    pub fn summary(&self) -> String {
        let snapshot = self.live.snapshot();
        let sessions: usize = snapshot
            .services
            .iter()
            .map(|v| v.service.active_connections() + v.service.udp_flows())
            .sum();
        format!(
            "serving {} services (config generation {}), {sessions} open sessions/flows",
            snapshot.services.len(),
            snapshot.generation
        )
    }
}

/// Every service of a configuration, bound and ready to serve.
#[derive(Debug)]
pub struct Server {
    /// What is applied: the file's configuration with the discovered backends.
    config: Config,
    /// The configuration as read from the file.
    declared: Config,
    discovery: DiscoveryGroups,
    /// Runtime-API backend changes, until the next reload.
    edits: BackendEdits,
    edit_requests: mpsc::Receiver<live::EditRequest>,
    live: Arc<LiveState>,
    /// The current generation of every service, by name.
    services: HashMap<String, Arc<Service>>,
    listeners: ListenerSet,
    pending: Vec<PendingSocket>,
    probes: ProbeSet,
    admin: AdminEndpoint,
    ctx: LoopContext,
    reloads: mpsc::Receiver<(Config, ReloadReply)>,
    handle: ServerHandle,
    heartbeats: Arc<Heartbeats>,
    /// Ends the worker heartbeats once the drain is over.
    heartbeats_stop: tokio_util::sync::CancellationToken,
    /// What upgrade sessions on the control socket ask of the serve loop.
    handoffs: mpsc::Receiver<HandoffCommand>,
    handoff_requests: mpsc::Sender<HandoffCommand>,
    control: Option<control::ControlSocket>,
}

impl Server {
    /// Binds every listen address of every service, and the admin address.
    /// Must run inside a tokio runtime.
    pub fn bind(config: &Config) -> Result<Server, StartError> {
        Server::bind_inheriting(config, InheritedSockets::default(), || {
            Ok(HandedFlows::new())
        })
    }

    /// Like `bind`, taking the sockets `inherited` holds for an address before
    /// binding anything (see `inherited`); `handed_flows` is called once every
    /// address is bound and before any socket is served: the UDP flows to
    /// continue. Whatever `inherited` holds that no address asks for is closed.
    pub fn bind_inheriting(
        config: &Config,
        mut inherited: InheritedSockets,
        handed_flows: impl FnOnce() -> Result<HandedFlows, StartError>,
    ) -> Result<Server, StartError> {
        check_sources(config)?;
        let metrics = Arc::new(Metrics::new()?);
        let lifecycle = Lifecycle::new();
        let workers =
            Arc::new(WorkerPool::start(config.global.workers).map_err(StartError::Workers)?);
        let dispatch = Arc::new(WorkerDispatch::new(
            workers.handles().cloned().collect(),
            config.global.worker_dispatch == WorkerDispatchMode::LeastSessions,
        ));
        let heartbeats = Arc::new(Heartbeats::new(workers.len(), watchdog::STALLED_AFTER));
        let heartbeats_stop = tokio_util::sync::CancellationToken::new();
        heartbeats.start(workers.handles(), &heartbeats_stop);
        // The admin address first: it is exclusive, so a second instance of this
        // configuration fails here, before its service sockets join (and take
        // clients from) the running instance's SO_REUSEPORT groups.
        let admin = AdminEndpoint::bind(config.admin.as_ref(), &mut inherited)?;
        let listeners = ListenerSet::default();
        let pending = listeners.bind_missing(config, workers.len(), &mut inherited)?;
        inherited.close_leftovers();
        let mut flows = handed_flows()?;
        let mut discovery = DiscoveryGroups::new();
        let planned = discovery.plan(config, &metrics);
        let declared = config.clone();
        let config = &DiscoveryGroups::compose(config, &planned);
        discovery.commit(planned, &metrics);
        let services: HashMap<String, Arc<Service>> = config
            .services
            .iter()
            .map(|s| (s.name.clone(), Arc::new(Service::new(s.clone(), &metrics))))
            .collect();
        let snapshot = Snapshot {
            generation: 1,
            services: Vec::new(),
            token: admin_token(config),
            listeners: Vec::new(),
        };
        let (edit_tx, edit_requests) = mpsc::channel(16);
        let live = Arc::new(LiveState::new(
            snapshot,
            lifecycle.clone(),
            Arc::clone(&metrics),
            Arc::clone(&heartbeats),
            Arc::clone(&dispatch),
            edit_tx,
        ));
        metrics.register_source(Arc::clone(&live) as Arc<dyn SampleSource>)?;
        let (reload_tx, reload_rx) = mpsc::channel(4);
        let (handoff_requests, handoffs) = mpsc::channel(4);
        let process_limit = Arc::new(ConnectionLimit::new(0));
        let mut server = Server {
            config: config.clone(),
            declared,
            discovery,
            edits: BackendEdits::default(),
            edit_requests,
            services,
            listeners,
            pending,
            probes: ProbeSet::new(lifecycle.stop_accepting.child_token()),
            admin,
            ctx: LoopContext {
                flow_budget: Arc::new(FlowBudget::new(Arc::clone(&process_limit))),
                process_limit,
                lifecycle: lifecycle.clone(),
                loops: TaskTracker::new(),
                workers,
                dispatch,
            },
            reloads: reload_rx,
            handle: ServerHandle {
                lifecycle,
                reloads: reload_tx,
                live: Arc::clone(&live),
            },
            live,
            heartbeats,
            heartbeats_stop,
            handoffs,
            handoff_requests,
            control: None,
        };
        // The bounds first: flows handed over are admitted under them.
        server.apply_process_cap();
        server.apply_flow_cap();
        server.start_pending(&mut flows);
        server.publish(1);
        Ok(server)
    }

    /// Sets the process-wide connection cap: `[global] max_connections`, or when
    /// that is 0, what the open-file limit allows (see `fd_budget`). Logs only
    /// when the cap changes.
    fn apply_process_cap(&self) {
        let sockets = listeners::wanted(&self.config).len() * self.ctx.workers.len();
        let open_files = fd_budget::open_file_limit();
        let cap = fd_budget::process_connection_cap(&self.config, sockets, open_files);
        if cap == self.ctx.process_limit.max() {
            return;
        }
        if let Some(missing) = fd_budget::shortfall(&self.config, sockets, open_files) {
            warn!(
                max_connections = self.config.global.max_connections,
                open_file_limit = open_files,
                missing_descriptors = missing,
                "[global] max_connections needs more descriptors than the open-file limit allows; raise LimitNOFILE"
            );
        } else if self.config.global.max_connections == 0 && cap > 0 {
            info!(
                max_connections = cap,
                open_file_limit = open_files,
                "process connection cap set from the open-file limit"
            );
        }
        self.ctx.process_limit.set_max(cap);
    }

    /// Keeps every listening socket in systemd's file-descriptor store from
    /// now on (see `fd_store`).
    pub fn use_fd_store(&mut self, store: crate::fd_store::FdStore) {
        self.listeners.use_fd_store(store);
    }

    /// The current generation of every service, in configuration order.
    pub fn services(&self) -> Vec<Arc<Service>> {
        self.config
            .services
            .iter()
            .filter_map(|s| self.services.get(&s.name).cloned())
            .collect()
    }

    /// The addresses actually bound for `service` (port 0 resolved to the real port).
    pub fn local_addrs(&self, service: &str) -> Vec<SocketAddr> {
        self.listeners.local_addrs(&self.config, service)
    }

    /// The address the admin endpoint is bound to, if configured.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.local_addr()
    }

    /// Health probe tasks still running (for leak checks).
    pub fn probe_tasks(&self) -> ProbeTasks {
        self.probes.tasks()
    }

    pub fn handle(&self) -> ServerHandle {
        self.handle.clone()
    }

    /// Serves until `ServerHandle::shutdown`, applying reloads meanwhile; then
    /// keeps accepting for `drain_delay` (with `/ready` and `/healthz` saying
    /// 503), stops accepting, waits up to the grace period for open sessions,
    /// closes what remains, and reports how the drain went. The admin endpoint
    /// answers until the drain is over.
    pub async fn serve(mut self) -> DrainReport {
        self.admin
            .start(Arc::clone(&self.live) as Arc<dyn crate::admin::AdminState>);
        self.probes.sync(self.services().iter().map(|s| s.as_ref()));
        tokio::spawn(watchdog::log_stalls(
            Arc::clone(&self.heartbeats),
            self.heartbeats_stop.clone(),
        ));
        let withdraw = self.ctx.lifecycle.withdraw.clone();
        let stop = self.ctx.lifecycle.stop_accepting.clone();
        loop {
            tokio::select! {
                () = withdraw.cancelled() => break,
                () = stop.cancelled() => break,
                Some((config, reply)) = self.reloads.recv() => {
                    let _ = reply.send(self.apply(config));
                }
                Some((edit, reply)) = self.edit_requests.recv() => {
                    let _ = reply.send(self.edit_backends(edit));
                }
                Some(_service) = self.discovery.changed() => {
                    // Several groups may have changed at once: one diff for all.
                    while self.discovery.try_changed().is_some() {}
                    self.rediscover();
                }
                Some(command) = self.handoffs.recv() => self.on_handoff(command),
            }
        }
        self.discovery.stop_all();
        withdraw_then_stop_accepting(&self.ctx.lifecycle, self.config.global.drain_delay).await;
        self.ctx.loops.close();
        if tokio::time::timeout(CLOSE_PATIENCE, self.ctx.loops.wait())
            .await
            .is_err()
        {
            error!("an accept loop did not stop (a stalled worker?); draining without it");
        }
        self.listeners.release();
        if let Some(control) = self.control.take() {
            control.close(self.live.upgrade().successor.is_some());
        }
        self.probes.wait().await;
        let report = drain(&self.ctx.lifecycle, self.config.global.shutdown_grace).await;
        self.admin.stop().await;
        self.heartbeats_stop.cancel();
        report
    }

    /// Starts serving every socket bound but not started yet; UDP sockets
    /// continue the flows `flows` holds for them.
    fn start_pending(&mut self, flows: &mut HandedFlows) {
        for pending in std::mem::take(&mut self.pending) {
            if let Some(service) = self.services.get(pending.service()) {
                let service = Arc::clone(service);
                self.listeners.start(pending, service, &self.ctx, flows);
            }
        }
        let left: usize = flows.values().map(Vec::len).sum();
        if left > 0 {
            info!(
                flows = left,
                "handed-over udp flows of addresses no longer listed: closed"
            );
        }
    }

    /// Publishes what operators see: generation, services, bound addresses.
    fn publish(&self, generation: u64) {
        // One pass over the configuration: finding each service's settings by
        // name would make publishing quadratic in the number of services.
        let services = self
            .config
            .services
            .iter()
            .filter_map(|declared| Some((declared, Arc::clone(self.services.get(&declared.name)?))))
            .map(|(declared, service)| crate::status::ServiceView {
                listen: self.listeners.bound_addrs(declared),
                discovery: self
                    .discovery
                    .running()
                    .get(service.name())
                    .cloned()
                    .unwrap_or_default(),
                service,
            })
            .collect();
        self.live.publish(Snapshot {
            generation,
            services,
            token: admin_token(&self.config),
            listeners: self
                .listeners
                .origins(&self.config)
                .into_iter()
                .map(listeners::ListenerOrigin::into_status)
                .collect(),
        });
    }
}

/// Refuses a configuration whose `source` or `mark` this process cannot apply
/// (a missing capability, an address this host does not have), before anything
/// is bound: better one clear error at start than a failed connect per client.
/// Every problem is logged; the first one is the error.
fn check_sources(config: &Config) -> Result<(), StartError> {
    let problems = crate::proxy::source_check::check(config);
    for extra in problems.iter().skip(1) {
        error!("{extra}");
    }
    match problems.into_iter().next() {
        Some(first) => Err(first.into()),
        None => Ok(()),
    }
}

fn admin_token(config: &Config) -> String {
    config
        .admin
        .as_ref()
        .map(|a| a.token.clone())
        .unwrap_or_default()
}

/// The first stage of a shutdown: says it is draining (`/ready` 503, so route
/// announcers withdraw), keeps accepting for `delay` while routers move new
/// flows elsewhere, then stops accepting. A second signal (`close_now`) ends the
/// wait early.
async fn withdraw_then_stop_accepting(lifecycle: &Lifecycle, delay: Duration) {
    lifecycle.withdraw.cancel();
    if !delay.is_zero() && !lifecycle.stop_accepting.is_cancelled() {
        info!(drain_delay = %humantime::format_duration(delay),
            "withdrawing: /ready says 503; still accepting until the drain delay is over");
        let stopped = lifecycle.stop_accepting.cancelled();
        let _ = tokio::time::timeout(delay, stopped).await;
    }
    lifecycle.stop_accepting.cancel();
}

/// How long closed sessions get to finish closing after the grace period.
const CLOSE_PATIENCE: Duration = Duration::from_secs(5);

/// Waits for open sessions up to `grace`, then closes the rest (and stops
/// waiting for them after `CLOSE_PATIENCE`).
async fn drain(lifecycle: &Lifecycle, grace: Duration) -> DrainReport {
    let sessions = &lifecycle.sessions;
    sessions.close();
    let open = sessions.len();
    info!(open_sessions = open, grace = %humantime::format_duration(grace), "draining");
    if tokio::time::timeout(grace, sessions.wait()).await.is_ok() {
        info!("drain complete: every session ended");
        return DrainReport {
            completed: true,
            closed_at_deadline: 0,
        };
    }
    let remaining = sessions.len();
    warn!(
        closing = remaining,
        "grace period over: closing remaining sessions"
    );
    lifecycle.close_sessions.close();
    if tokio::time::timeout(CLOSE_PATIENCE, sessions.wait())
        .await
        .is_err()
    {
        // Closing takes a worker a moment; one that does not close its sessions
        // at all is stalled, and must not keep the process from stopping.
        error!(
            still_open = sessions.len(),
            "sessions did not close after the grace period; stopping without them"
        );
    }
    DrainReport {
        completed: false,
        closed_at_deadline: remaining,
    }
}
