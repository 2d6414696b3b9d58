//! The running `[[service.discover]]` groups of every service, and the
//! configuration they make together with the file's.
//!
//! A reload plans the next groups first (a group whose service and settings
//! stay keeps running with its last known set, so a reload never empties a
//! discovered set), the runtime applies the composed configuration, and only
//! then are new groups started and dropped ones stopped.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::mpsc;
use tracing::warn;

use crate::config::{Config, own_listener_reached};
use crate::discovery::{Group, compose, spawn_group};
use crate::metrics::Metrics;

/// Groups by service name, in each service's `discover` order.
pub type Groups = HashMap<String, Vec<Arc<Group>>>;

#[derive(Debug)]
pub struct DiscoveryGroups {
    running: Groups,
    changed_tx: mpsc::UnboundedSender<String>,
    changed_rx: mpsc::UnboundedReceiver<String>,
}

impl DiscoveryGroups {
    pub fn new() -> DiscoveryGroups {
        let (changed_tx, changed_rx) = mpsc::unbounded_channel();
        DiscoveryGroups {
            running: Groups::new(),
            changed_tx,
            changed_rx,
        }
    }

    /// The groups `config` asks for: running ones with the same service and
    /// settings are kept, the others are new (not started).
    pub fn plan(&self, config: &Config, metrics: &Metrics) -> Groups {
        let mut planned = Groups::new();
        for service in config.services.iter().filter(|s| !s.discover.is_empty()) {
            let mut running: Vec<&Arc<Group>> = self
                .running
                .get(&service.name)
                .map(|g| g.iter().collect())
                .unwrap_or_default();
            let groups = service.discover.iter().map(|wanted| {
                match running.iter().position(|g| g.config == *wanted) {
                    Some(i) => Arc::clone(running.remove(i)),
                    None => {
                        let errors = metrics.discovery_errors(&service.name);
                        Arc::new(Group::new(&service.name, wanted.clone(), errors))
                    }
                }
            });
            planned.insert(service.name.clone(), groups.collect());
        }
        planned
    }

    /// `config` with every planned group's last known set added; a discovered
    /// address that leads back into one of l4lb's listeners is left out, with a
    /// warning.
    pub fn compose(config: &Config, groups: &Groups) -> Config {
        let mut composed = config.clone();
        for service in composed.services.iter_mut() {
            let Some(groups) = groups.get(&service.name) else {
                continue;
            };
            let sets: Vec<_> = groups.iter().map(|g| g.set()).collect();
            let with_sets = groups.iter().map(|g| &g.config).zip(sets.iter());
            let protocol = service.protocol;
            let result =
                compose::composed(service, with_sets.map(|(c, s)| (c, s.as_slice())), |addr| {
                    own_listener_reached(&config.services, protocol, addr)
                });
            for reached in &result.loops {
                warn!(
                    service = %service.name,
                    backend = %reached.backend,
                    listen = %reached.listen,
                    "discovery: address left out: it reaches l4lb's own listen address, \
                     so clients would be proxied back into l4lb"
                );
            }
            *service = result.service;
        }
        composed
    }

    /// The running groups.
    pub fn running(&self) -> &Groups {
        &self.running
    }

    /// Makes `planned` the running groups: starts the new ones, stops the
    /// ones left out, and forgets the error series of services that no longer
    /// discover.
    pub fn commit(&mut self, planned: Groups, metrics: &Metrics) {
        let old = std::mem::replace(&mut self.running, planned);
        let kept = |g: &Arc<Group>| {
            self.running
                .get(&g.service)
                .is_some_and(|n| n.iter().any(|k| Arc::ptr_eq(k, g)))
        };
        for group in old.values().flatten().filter(|g| !kept(g)) {
            group.stop();
        }
        for service in old.keys() {
            if !self.running.contains_key(service) {
                metrics.forget_discovery(service);
            }
        }
        let previous: Vec<&Arc<Group>> = old.values().flatten().collect();
        for group in self.running.values().flatten() {
            if !previous.iter().any(|p| Arc::ptr_eq(p, group)) {
                spawn_group(Arc::clone(group), self.changed_tx.clone());
            }
        }
    }

    /// The next service whose discovered set changed.
    pub async fn changed(&mut self) -> Option<String> {
        self.changed_rx.recv().await
    }

    /// A change already waiting, if any.
    pub fn try_changed(&mut self) -> Option<String> {
        self.changed_rx.try_recv().ok()
    }

    /// Stops every group (shutdown).
    pub fn stop_all(&self) {
        for group in self.running.values().flatten() {
            group.stop();
        }
    }
}
