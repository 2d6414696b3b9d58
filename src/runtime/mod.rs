//! Wiring: a checked `Config` becomes bound listeners, services, probes, the admin
//! endpoint and their tasks; `serve` runs them until told to stop, then drains.
//!
//! `Server::bind` does every fallible step (binding each listen address and the
//! admin address) up front, so `l4lb run` fails before serving anything when one
//! address cannot be bound. `ServerHandle` is how signals (or tests) ask the server
//! to stop. `live` is the read-only view operators get through the admin endpoint.

mod live;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::admin::{self, AdminState};
use crate::config::{AdminConfig, Config, Protocol};
use crate::health::HealthChecker;
use crate::health::checker::worst_detection_time;
use crate::lifecycle::Lifecycle;
use crate::limit::ConnectionLimit;
use crate::log_throttle::LogThrottle;
use crate::metrics::{Metrics, SampleSource};
use crate::proxy::listener::bind_tcp;
use crate::proxy::tcp::TcpProxy;
use crate::proxy::udp::listener::UdpProxy;
use crate::proxy::udp::socket::bind_udp;
use crate::service::Service;
use crate::status::ServiceView;

use live::LiveState;

/// At most one repeated warning per service per this interval.
const WARNING_INTERVAL: Duration = Duration::from_secs(1);

/// Why a configuration could not be started.
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
    #[error("metrics registry: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// How a drain ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainReport {
    /// Every session ended by itself within the grace period.
    pub completed: bool,
    /// Sessions still open when the grace period ran out (closed then).
    pub closed_at_deadline: usize,
}

/// Every service of a configuration, bound and ready to serve.
#[derive(Debug)]
pub struct Server {
    live: Arc<LiveState>,
    listeners: Vec<(Arc<Service>, TcpListener)>,
    udp_sockets: Vec<(Arc<Service>, UdpSocket)>,
    admin: Option<TcpListener>,
    process_limit: Arc<ConnectionLimit>,
    shutdown_grace: Duration,
    probes: TaskTracker,
}

/// Asks a running `Server` to stop.
#[derive(Debug, Clone)]
pub struct ServerHandle {
    lifecycle: Lifecycle,
}

impl ServerHandle {
    /// Stops accepting; open sessions get the grace period to finish.
    pub fn shutdown(&self) {
        self.lifecycle.stop_accepting.cancel();
    }

    /// Stops accepting and closes every open session now.
    pub fn close_now(&self) {
        self.lifecycle.stop_accepting.cancel();
        self.lifecycle.close_sessions.cancel();
    }
}

impl Server {
    /// Binds every listen address of every service, and the admin address.
    /// Must run inside a tokio runtime.
    pub fn bind(config: &Config) -> Result<Server, StartError> {
        let metrics = Arc::new(Metrics::new()?);
        let mut views = Vec::new();
        let mut listeners = Vec::new();
        let mut udp_sockets = Vec::new();
        for service_config in &config.services {
            let service = Arc::new(Service::new(service_config.clone(), &metrics));
            let mut bound = Vec::new();
            for &address in &service_config.listen {
                let cannot_listen = |source| StartError::Listen {
                    service: service_config.name.clone(),
                    address,
                    source,
                };
                match service_config.protocol {
                    Protocol::Tcp => {
                        let listener = bind_tcp(address).map_err(cannot_listen)?;
                        bound.push(listener.local_addr().unwrap_or(address));
                        listeners.push((Arc::clone(&service), listener));
                    }
                    Protocol::Udp => {
                        let socket = bind_udp(address).map_err(cannot_listen)?;
                        bound.push(socket.local_addr().unwrap_or(address));
                        udp_sockets.push((Arc::clone(&service), socket));
                    }
                }
            }
            views.push(ServiceView {
                service,
                listen: bound,
            });
        }
        let admin = config.admin.as_ref().map(bind_admin).transpose()?;
        let live = Arc::new(LiveState {
            services: views,
            started: Instant::now(),
            generation: 1,
            lifecycle: Lifecycle::new(),
            metrics: Arc::clone(&metrics),
        });
        metrics.register_source(Arc::clone(&live) as Arc<dyn SampleSource>)?;
        Ok(Server {
            live,
            listeners,
            udp_sockets,
            admin,
            process_limit: Arc::new(ConnectionLimit::new(config.global.max_connections)),
            shutdown_grace: config.global.shutdown_grace,
            probes: TaskTracker::new(),
        })
    }

    pub fn services(&self) -> Vec<Arc<Service>> {
        self.live
            .services
            .iter()
            .map(|v| Arc::clone(&v.service))
            .collect()
    }

    /// The addresses actually bound for `service` (port 0 resolved to the real port).
    pub fn local_addrs(&self, service: &str) -> Vec<SocketAddr> {
        self.live
            .services
            .iter()
            .filter(|v| v.service.name() == service)
            .flat_map(|v| v.listen.iter().copied())
            .collect()
    }

    /// The address the admin endpoint is bound to, if configured.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Health probe tasks still running (for leak checks).
    pub fn probe_tasks(&self) -> ProbeTasks {
        ProbeTasks(self.probes.clone())
    }

    pub fn handle(&self) -> ServerHandle {
        ServerHandle {
            lifecycle: self.live.lifecycle.clone(),
        }
    }

    /// Serves until `ServerHandle::shutdown`, then waits up to the grace period for
    /// open sessions, closes what remains, and reports how the drain went. The
    /// admin endpoint answers until the drain is over (`/healthz` says 503 meanwhile).
    pub async fn serve(self) -> DrainReport {
        let lifecycle = self.live.lifecycle.clone();
        let admin_stop = CancellationToken::new();
        let admin_task = self.admin.map(|listener| {
            let state = Arc::clone(&self.live) as Arc<dyn AdminState>;
            tokio::spawn(admin::serve(listener, state, admin_stop.clone()))
        });
        for view in &self.live.services {
            start_probes(&view.service, &self.probes, &lifecycle.stop_accepting);
        }
        self.probes.close();
        let accept_loops = TaskTracker::new();
        for (service, listener) in self.listeners {
            if let Ok(address) = listener.local_addr() {
                info!(service = service.name(), %address, "listening");
            }
            let proxy = TcpProxy {
                service,
                process_limit: Arc::clone(&self.process_limit),
                lifecycle: lifecycle.clone(),
                warnings: Arc::new(LogThrottle::new(WARNING_INTERVAL)),
            };
            accept_loops.spawn(proxy.accept_loop(listener));
        }
        for (service, socket) in self.udp_sockets {
            if let Ok(address) = socket.local_addr() {
                info!(service = service.name(), %address, "listening (udp)");
            }
            let proxy = UdpProxy {
                service,
                lifecycle: lifecycle.clone(),
                warnings: Arc::new(LogThrottle::new(WARNING_INTERVAL)),
            };
            accept_loops.spawn(proxy.serve(socket));
        }
        accept_loops.close();
        lifecycle.stop_accepting.cancelled().await;
        accept_loops.wait().await;
        self.probes.wait().await;
        let report = drain(&lifecycle, self.shutdown_grace).await;
        admin_stop.cancel();
        if let Some(task) = admin_task {
            let _ = task.await;
        }
        report
    }
}

fn bind_admin(admin: &AdminConfig) -> Result<TcpListener, StartError> {
    let listener = bind_tcp(admin.listen).map_err(|source| StartError::Admin {
        address: admin.listen,
        source,
    })?;
    if let Ok(address) = listener.local_addr() {
        info!(%address, "admin endpoint listening");
    }
    Ok(listener)
}

impl AdminState for LiveState {
    fn metrics_text(&self) -> String {
        self.metrics.render()
    }

    fn status_json(&self) -> String {
        self.status().to_json()
    }

    fn is_draining(&self) -> bool {
        LiveState::is_draining(self)
    }
}

/// A view of the running probe tasks.
#[derive(Debug, Clone)]
pub struct ProbeTasks(TaskTracker);

impl ProbeTasks {
    pub fn running(&self) -> usize {
        self.0.len()
    }
}

/// Spawns one probe task per backend of `service` if it has active checks.
fn start_probes(service: &Service, probes: &TaskTracker, stop: &CancellationToken) {
    let Some(health) = &service.config().health else {
        return;
    };
    info!(service = service.name(), backends = service.backends().len(),
        interval = %humantime::format_duration(health.interval),
        rise = health.rise, fall = health.fall,
        worst_detection = %humantime::format_duration(worst_detection_time(health)),
        "health checks started");
    for backend in service.backends() {
        let checker = HealthChecker {
            service: service.name().to_string(),
            backend: Arc::clone(backend),
            config: health.clone(),
            close_on_down: service.config().close_on_down,
        };
        probes.spawn(checker.run(stop.child_token()));
    }
}

/// Waits for open sessions up to `grace`, then closes the rest.
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
    lifecycle.close_sessions.cancel();
    sessions.wait().await;
    DrainReport {
        completed: false,
        closed_at_deadline: remaining,
    }
}
