//! Wiring: a checked `Config` becomes bound listeners, services and their tasks;
//! `serve` runs them until told to stop, then drains.
//!
//! `Server::bind` does every fallible step (binding each listen address) up front,
//! so `l4lb run` fails before serving anything when one address cannot be bound.
//! `ServerHandle` is how signals (or tests) ask the server to stop.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::config::{Config, Protocol};
use crate::health::HealthChecker;
use crate::health::checker::worst_detection_time;
use crate::lifecycle::Lifecycle;
use crate::limit::ConnectionLimit;
use crate::log_throttle::LogThrottle;
use crate::proxy::listener::bind_tcp;
use crate::proxy::tcp::TcpProxy;
use crate::service::Service;

/// At most one repeated warning per service per this interval.
const WARNING_INTERVAL: Duration = Duration::from_secs(1);

/// A listen address that could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("service \"{service}\": cannot listen on {address}: {source}")]
pub struct BindError {
    pub service: String,
    pub address: SocketAddr,
    #[source]
    pub source: io::Error,
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
    services: Vec<Arc<Service>>,
    listeners: Vec<(Arc<Service>, SocketAddr, TcpListener)>,
    process_limit: Arc<ConnectionLimit>,
    shutdown_grace: Duration,
    lifecycle: Lifecycle,
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
    /// Binds every listen address of every service. Must run inside a tokio runtime.
    pub fn bind(config: &Config) -> Result<Server, BindError> {
        let mut services = Vec::new();
        let mut listeners = Vec::new();
        for service_config in &config.services {
            let service = Arc::new(Service::new(service_config.clone()));
            if service_config.protocol == Protocol::Tcp {
                for &address in &service_config.listen {
                    let listener = bind_tcp(address).map_err(|source| BindError {
                        service: service_config.name.clone(),
                        address,
                        source,
                    })?;
                    let local = listener.local_addr().unwrap_or(address);
                    listeners.push((Arc::clone(&service), local, listener));
                }
            }
            services.push(service);
        }
        Ok(Server {
            services,
            listeners,
            process_limit: Arc::new(ConnectionLimit::new(config.global.max_connections)),
            shutdown_grace: config.global.shutdown_grace,
            lifecycle: Lifecycle::new(),
            probes: TaskTracker::new(),
        })
    }

    pub fn services(&self) -> &[Arc<Service>] {
        &self.services
    }

    pub fn service(&self, name: &str) -> Option<&Arc<Service>> {
        self.services.iter().find(|s| s.name() == name)
    }

    /// The addresses actually bound for `service` (port 0 resolved to the real port).
    pub fn local_addrs(&self, service: &str) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter(|(s, _, _)| s.name() == service)
            .map(|(_, addr, _)| *addr)
            .collect()
    }

    /// Health probe tasks still running (for leak checks).
    pub fn probe_tasks(&self) -> ProbeTasks {
        ProbeTasks(self.probes.clone())
    }

    pub fn handle(&self) -> ServerHandle {
        ServerHandle {
            lifecycle: self.lifecycle.clone(),
        }
    }

    /// Serves until `ServerHandle::shutdown`, then waits up to the grace period for
    /// open sessions, closes what remains, and reports how the drain went.
    pub async fn serve(self) -> DrainReport {
        for service in &self.services {
            start_probes(service, &self.probes, &self.lifecycle.stop_accepting);
        }
        self.probes.close();
        let accept_loops = TaskTracker::new();
        for (service, address, listener) in self.listeners {
            info!(service = service.name(), %address, "listening");
            let proxy = TcpProxy {
                service,
                process_limit: Arc::clone(&self.process_limit),
                lifecycle: self.lifecycle.clone(),
                warnings: Arc::new(LogThrottle::new(WARNING_INTERVAL)),
            };
            accept_loops.spawn(proxy.accept_loop(listener));
        }
        accept_loops.close();
        self.lifecycle.stop_accepting.cancelled().await;
        accept_loops.wait().await;
        self.probes.wait().await;
        drain(&self.lifecycle, self.shutdown_grace).await
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
