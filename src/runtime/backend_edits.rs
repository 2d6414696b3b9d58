//! Backend changes made through the runtime API — weights, added and removed
//! backends — kept per service and laid over the configuration (the file's,
//! with the discovered backends) each time it is applied, until the next
//! reload clears them (as it does drain and maint states).
//!
//! Pure: `check` says whether an edit fits the configuration now applied,
//! `apply_to` lays every edit over a configuration.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use crate::admin::ApiError;
use crate::admin::edits::{BackendEdit, NewBackend};
use crate::config::{BackendConfig, Config};

/// The runtime API's changes to one service.
#[derive(Debug, Clone, Default)]
struct ServiceEdits {
    weights: HashMap<String, u32>,
    added: Vec<NewBackend>,
    removed: HashSet<String>,
}

/// Every service's runtime-API changes.
#[derive(Debug, Clone, Default)]
pub struct BackendEdits {
    services: HashMap<String, ServiceEdits>,
}

fn error(status: u16, message: String) -> ApiError {
    ApiError { status, message }
}

impl BackendEdits {
    /// Records `edit` if it fits `applied` (the configuration serving now).
    pub fn record(&mut self, edit: &BackendEdit, applied: &Config) -> Result<(), ApiError> {
        let name = edit.service();
        let service = applied
            .services
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| error(404, format!("no service \"{name}\"")))?;
        let has = |address: &str| service.backends.iter().any(|b| b.address == address);
        let edits = self.services.entry(name.to_string()).or_default();
        match edit {
            BackendEdit::SetWeight {
                backend, weight, ..
            } => {
                if !has(backend) {
                    let message = format!("no backend \"{backend}\" in service \"{name}\"");
                    return Err(error(404, message));
                }
                edits.weights.insert(backend.clone(), *weight);
            }
            BackendEdit::Add { backend, .. } => {
                let address = backend.address.to_string();
                let taken = service
                    .backends
                    .iter()
                    .any(|b| b.address == address || b.resolved == backend.address);
                if taken {
                    let message = format!("service \"{name}\" already has backend {address}");
                    return Err(error(409, message));
                }
                if applied
                    .services
                    .iter()
                    .any(|s| s.listen.contains(&backend.address))
                {
                    let message = format!(
                        "{address} is l4lb's own listen address: clients would be proxied \
                         back into l4lb"
                    );
                    return Err(error(400, message));
                }
                edits.removed.remove(&address);
                edits.added.push(backend.clone());
            }
            BackendEdit::Remove { backend, .. } => {
                if !has(backend) {
                    let message = format!("no backend \"{backend}\" in service \"{name}\"");
                    return Err(error(404, message));
                }
                edits.added.retain(|b| b.address.to_string() != *backend);
                edits.weights.remove(backend);
                edits.removed.insert(backend.clone());
            }
        }
        Ok(())
    }

    /// `config` with every recorded edit laid over it.
    pub fn apply_to(&self, mut config: Config) -> Config {
        for service in config.services.iter_mut() {
            let Some(edits) = self.services.get(&service.name) else {
                continue;
            };
            service
                .backends
                .retain(|b| !edits.removed.contains(&b.address));
            for backend in service.backends.iter_mut() {
                if let Some(&weight) = edits.weights.get(&backend.address) {
                    backend.weight = weight;
                }
            }
            for added in &edits.added {
                let address = added.address.to_string();
                if service.backends.iter().any(|b| b.address == address) {
                    continue;
                }
                service.backends.push(BackendConfig {
                    weight: edits.weights.get(&address).copied().unwrap_or(added.weight),
                    address,
                    resolved: added.address,
                    max_connections: added.max_connections,
                    backup: added.backup,
                    slow_start: Duration::ZERO,
                    health: None,
                    // Added backends join the default route.
                    route: 0,
                });
            }
            // The default route's backends come first (stable: each route keeps its order).
            service.backends.sort_by_key(|b| b.route);
        }
        config
    }
}
