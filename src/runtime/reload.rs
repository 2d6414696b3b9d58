//! Applying a new configuration to a running server, as a diff.
//!
//! Everything that can fail (binding new listen addresses, a moved admin
//! address) happens first; if anything fails, nothing has changed. Then: each
//! service gets a new generation, matched against its previous one by backend
//! identity (service + address) in linear time — unchanged backends are kept as
//! they are, changed ones become a new configuration of the same identity (its
//! counters, health and sessions carry on), removed ones drain. Listeners (keyed
//! by address, so one that moves to another service stays bound) serve the new
//! generations before anything is retired; new services start, removed services
//! stop accepting while their sessions drain, and probes follow the new backends.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use tracing::{debug, error, warn};

use crate::admin::edits::BackendEdit;
use crate::admin::{AdminState, ApiError};
use crate::backend::Backend;
use crate::config::Config;
use crate::service::Service;

use super::backend_edits::BackendEdits;
use super::discovery_groups::DiscoveryGroups;
use super::{ReloadError, Server};

/// What a reload changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadReport {
    pub generation: u64,
    pub services_added: Vec<String>,
    pub services_removed: Vec<String>,
    /// Backend addresses new to their service.
    pub backends_added: usize,
    /// Backends whose address stayed but whose settings changed (same identity).
    pub backends_changed: usize,
    /// Backend addresses gone from their service (they drain).
    pub backends_removed: usize,
}

impl fmt::Display for ReloadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "configuration reloaded: generation {}, services added {:?}, removed {:?}; \
             backends added {}, changed {}, removed (draining) {}",
            self.generation,
            self.services_added,
            self.services_removed,
            self.backends_added,
            self.backends_changed,
            self.backends_removed
        )
    }
}

/// The next generation of every service, and what the previous one leaves behind.
struct NextGeneration {
    services: HashMap<String, Arc<Service>>,
    /// Backends that left their service (or whose service left), to drain.
    retiring: Vec<(String, Arc<Backend>)>,
}

impl Server {
    /// Applies `config` (already validated, as read from the file) with the
    /// last known sets of its discovery groups; on error the running
    /// configuration is untouched. Operator states start over.
    pub(super) fn apply(&mut self, config: Config) -> Result<ReloadReport, ReloadError> {
        super::check_sources(&config)?;
        let planned = self.discovery.plan(&config, &self.live.metrics);
        let composed = DiscoveryGroups::compose(&config, &planned);
        let report = self.apply_effective(composed, true)?;
        self.declared = config;
        self.edits = BackendEdits::default();
        self.discovery.commit(planned, &self.live.metrics);
        self.publish(report.generation);
        Ok(report)
    }

    /// Applies the file's configuration again with the discovery groups' current
    /// sets: the same diff as a reload, but operator states (drain, maint) stay.
    pub(super) fn rediscover(&mut self) {
        let composed = DiscoveryGroups::compose(&self.declared, self.discovery.running());
        match self.apply_effective(self.edits.apply_to(composed), false) {
            // The group's own line already listed what was added and removed.
            Ok(report) => debug!(
                generation = report.generation,
                added = report.backends_added,
                removed = report.backends_removed,
                "discovered backends applied"
            ),
            Err(e) => error!(error = %e, "discovered backends could not be applied"),
        }
    }

    /// Applies one runtime-API backend edit on top of everything else; the
    /// JSON answer. Operator states stay; the next reload undoes the edit.
    pub(super) fn edit_backends(&mut self, edit: BackendEdit) -> Result<String, ApiError> {
        let mut edits = self.edits.clone();
        edits.record(&edit, &self.config)?;
        let composed = DiscoveryGroups::compose(&self.declared, self.discovery.running());
        let report = self
            .apply_effective(edits.apply_to(composed), false)
            .map_err(|e| ApiError {
                status: 500,
                message: e.to_string(),
            })?;
        self.edits = edits;
        let (action, backend) = match &edit {
            BackendEdit::SetWeight {
                backend, weight, ..
            } => (format!("weight {weight}"), backend.clone()),
            BackendEdit::Add { backend, .. } => ("added".to_string(), backend.address.to_string()),
            BackendEdit::Remove { backend, .. } => {
                ("removed (draining)".to_string(), backend.clone())
            }
        };
        warn!(service = edit.service(), backend = %backend, change = %action,
            generation = report.generation, "runtime API: backend changed until the next reload");
        Ok(serde_json::json!({
            "service": edit.service(),
            "backend": backend,
            "change": action,
            "config_generation": report.generation,
        })
        .to_string())
    }

    /// Applies a complete configuration (file + discovered backends) as a diff.
    fn apply_effective(
        &mut self,
        config: Config,
        reset_admin_states: bool,
    ) -> Result<ReloadReport, ReloadError> {
        let bound = self.listeners.bind_missing(
            &config,
            self.ctx.workers.len(),
            &mut Default::default(),
        )?;
        let admin_change = self.admin.prepare(config.admin.as_ref())?;
        // Nothing below can fail.
        let mut report = ReloadReport::default();
        let next = self.next_generation(&config, &mut report, reset_admin_states);
        if config.global.workers != self.config.global.workers {
            warn!("[global] workers changes only take effect after a restart");
        }
        self.ctx.dispatch.set_balanced(
            config.global.worker_dispatch == crate::config::WorkerDispatchMode::LeastSessions,
        );
        self.services = next.services;
        self.config = config;
        // Every listener serves the new generation before anything of the old one
        // is retired, so a client still choosing a backend always finds the live set.
        self.listeners.follow(&self.config, &self.services);
        self.pending = bound;
        self.start_pending(&mut super::HandedFlows::new());
        for (service, backend) in next.retiring {
            self.live.retire(&service, backend);
        }
        for name in &report.services_removed {
            self.live.metrics.forget_service(name);
        }
        self.probes.sync(self.services().iter().map(|s| s.as_ref()));
        self.apply_process_cap();
        self.apply_flow_cap();
        self.admin
            .commit(admin_change, Arc::clone(&self.live) as Arc<dyn AdminState>);
        report.generation = self.live.snapshot().generation + 1;
        self.publish(report.generation);
        Ok(report)
    }

    /// The next generation of `config`'s services, each matched against its
    /// previous one by backend identity (linear in the number of backends); new
    /// services are fresh. Nothing is published or retired here.
    fn next_generation(
        &mut self,
        config: &Config,
        report: &mut ReloadReport,
        reset_admin_states: bool,
    ) -> NextGeneration {
        let metrics = Arc::clone(&self.live.metrics);
        let mut previous = std::mem::take(&mut self.services);
        let mut next = NextGeneration {
            services: HashMap::new(),
            retiring: Vec::new(),
        };
        for service_config in &config.services {
            let name = service_config.name.clone();
            let prior = previous.remove(&name);
            if prior.is_none() {
                report.services_added.push(name.clone());
            }
            let live = &self.live;
            let mut draining = |address: &str| live.revive(&name, address);
            let (service, changes) = Service::reloaded(
                service_config.clone(),
                &metrics,
                prior.as_deref(),
                &mut draining,
                reset_admin_states,
            );
            report.backends_added += changes.added;
            report.backends_changed += changes.changed;
            report.backends_removed += changes.removed.len();
            let removed = changes.removed.into_iter().map(|b| (name.clone(), b));
            next.retiring.extend(removed);
            next.services.insert(name, Arc::new(service));
        }
        for (name, service) in previous {
            let removed = service
                .backends()
                .iter()
                .map(|b| (name.clone(), Arc::clone(b)));
            next.retiring.extend(removed);
            report.services_removed.push(name);
        }
        report.services_removed.sort();
        next
    }
}
