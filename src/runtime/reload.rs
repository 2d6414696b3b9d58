//! Applying a new configuration to a running server, as a diff.
//!
//! Everything that can fail (binding new listen addresses, a moved admin
//! address) happens first; if anything fails, nothing has changed. Then: each
//! service keeps its slot and gets a new generation (unchanged backends keep their
//! state and sessions; removed ones drain), new services start, removed services
//! stop accepting while their sessions drain, listeners follow the new addresses
//! without rebinding the ones that stay, and probes follow the new backends.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use tracing::warn;

use crate::admin::AdminState;
use crate::config::Config;
use crate::service::{Service, ServiceSlot};

use super::{ReloadError, Server};

/// What a reload changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadReport {
    pub generation: u64,
    pub services_added: Vec<String>,
    pub services_removed: Vec<String>,
    pub backends_added: usize,
    pub backends_removed: usize,
}

impl fmt::Display for ReloadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "configuration reloaded: generation {}, services added {:?}, removed {:?}; \
             backends added {}, removed (draining) {}",
            self.generation,
            self.services_added,
            self.services_removed,
            self.backends_added,
            self.backends_removed
        )
    }
}

impl Server {
    /// Applies `config` (already validated); on error the running configuration
    /// is untouched.
    pub(super) fn apply(&mut self, config: Config) -> Result<ReloadReport, ReloadError> {
        let bound = self
            .listeners
            .bind_missing(&config, self.ctx.workers.len())?;
        let admin_change = self.admin.prepare(config.admin.as_ref())?;
        // Nothing below can fail.
        let mut report = ReloadReport::default();
        self.slots = self.next_generation(&config, &mut report);
        if config.global.workers != self.config.global.workers {
            warn!("[global] workers changes only take effect after a restart");
        }
        self.listeners.stop_unwanted(&config);
        self.pending = bound;
        self.config = config;
        self.start_pending();
        self.probes.sync(self.services().iter().map(|s| s.as_ref()));
        self.apply_process_cap();
        self.apply_flow_cap();
        self.admin
            .commit(admin_change, Arc::clone(&self.live) as Arc<dyn AdminState>);
        report.generation = self.live.snapshot().generation + 1;
        self.publish(report.generation);
        Ok(report)
    }

    /// The slots of `config`'s services: existing ones with their next generation,
    /// new ones fresh. Removed services and backends are retired (they drain).
    fn next_generation(
        &mut self,
        config: &Config,
        report: &mut ReloadReport,
    ) -> HashMap<String, Arc<ServiceSlot>> {
        let metrics = Arc::clone(&self.live.metrics);
        let mut next = HashMap::new();
        for service_config in &config.services {
            let name = service_config.name.clone();
            let slot = match self.slots.remove(&name) {
                Some(slot) => {
                    let previous = slot.current();
                    let service = Service::reloaded(service_config.clone(), &metrics, &previous);
                    let service = Arc::new(service);
                    for backend in previous.backends_dropped_by(&service) {
                        self.live.retire(&name, backend);
                        report.backends_removed += 1;
                    }
                    report.backends_added += service.backends_dropped_by(&previous).len();
                    slot.replace(service);
                    slot
                }
                None => {
                    report.services_added.push(name.clone());
                    let service = Arc::new(Service::new(service_config.clone(), &metrics));
                    Arc::new(ServiceSlot::new(service))
                }
            };
            next.insert(name, slot);
        }
        for (name, slot) in self.slots.drain() {
            for backend in slot.current().backends() {
                self.live.retire(&name, Arc::clone(backend));
            }
            metrics.forget_service(&name);
            report.services_removed.push(name);
        }
        next
    }
}
