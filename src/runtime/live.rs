//! The live view that the admin endpoint and the metrics collector read: the
//! current generation of every service with its bound addresses, the backends a
//! reload removed that still have sessions draining (one per identity: service +
//! address), the reload counts, the uptime
//! and whether the process is draining. A reload publishes a new snapshot whole.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arc_swap::ArcSwap;
use subtle_compare::constant_time_eq;

use tokio::sync::{mpsc, oneshot};

use crate::admin::edits::BackendEdit;
use crate::admin::{AdminState, ApiError, EditReply};
use crate::backend::Backend;
use crate::backend::admin_state::AdminState as BackendState;
use crate::backend::identity::Identity;
use crate::lifecycle::Lifecycle;
use crate::metrics::{Metrics, ProxySample, SampleSource, UpgradeSample};
use crate::proxy::dispatch::WorkerDispatch;
use crate::status::{ListenerSockets, ServiceView, Status, UpgradeStatus, metrics_sample};

use super::watchdog::{self, Heartbeats};

/// One published configuration generation.
#[derive(Debug)]
pub struct Snapshot {
    pub generation: u64,
    pub services: Vec<ServiceView>,
    /// Bearer token of the runtime API; empty means none.
    pub token: String,
    /// Where each listener's sockets came from.
    pub listeners: Vec<ListenerSockets>,
}

/// Backends removed by a reload whose sessions are still open, by identity
/// (service, address).
type RetiredBackends = HashMap<(String, String), Arc<Backend>>;

#[derive(Debug)]
pub struct LiveState {
    snapshot: ArcSwap<Snapshot>,
    retired: Mutex<RetiredBackends>,
    reloads_ok: AtomicU64,
    reloads_failed: AtomicU64,
    /// Upgrades this process took part in (listeners come from the snapshot).
    upgrade: Mutex<UpgradeStatus>,
    pub started: Instant,
    pub lifecycle: Lifecycle,
    pub metrics: Arc<Metrics>,
    heartbeats: Arc<Heartbeats>,
    /// The workers' session counts and busy time.
    dispatch: Arc<WorkerDispatch>,
    /// Backend edits from the runtime API, to the server's loop.
    edits: mpsc::Sender<EditRequest>,
}

/// A backend edit and where its answer goes.
pub type EditRequest = (BackendEdit, oneshot::Sender<Result<String, ApiError>>);

impl LiveState {
    pub fn new(
        snapshot: Snapshot,
        lifecycle: Lifecycle,
        metrics: Arc<Metrics>,
        heartbeats: Arc<Heartbeats>,
        dispatch: Arc<WorkerDispatch>,
        edits: mpsc::Sender<EditRequest>,
    ) -> LiveState {
        LiveState {
            snapshot: ArcSwap::from_pointee(snapshot),
            retired: Mutex::new(HashMap::new()),
            reloads_ok: AtomicU64::new(0),
            reloads_failed: AtomicU64::new(0),
            upgrade: Mutex::new(UpgradeStatus::default()),
            started: Instant::now(),
            lifecycle,
            metrics,
            heartbeats,
            dispatch,
            edits,
        }
    }

    /// Which worker loops have stopped turning, in one line; `None` when all run.
    pub fn stalled_workers(&self) -> Option<String> {
        watchdog::describe(&self.heartbeats.stalled())
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    pub fn publish(&self, snapshot: Snapshot) {
        self.snapshot.store(Arc::new(snapshot));
    }

    /// Keeps `backend` visible (as draining) until its last session ends.
    pub fn retire(&self, service: &str, backend: Arc<Backend>) {
        backend.set_admin_state(BackendState::Drain);
        let key = (service.to_string(), backend.address().to_string());
        self.retired_list().insert(key, backend);
    }

    /// The identity of `service`'s backend `address` if it is still draining,
    /// taken off the draining list: the address is back in the configuration,
    /// and the new backend carries on its counters and sessions.
    pub fn revive(&self, service: &str, address: &str) -> Option<Arc<Identity>> {
        let mut retired = self.retired_list();
        if retired.is_empty() {
            return None;
        }
        let key = (service.to_string(), address.to_string());
        retired.remove(&key).map(|b| Arc::clone(b.identity()))
    }

    /// Retired backends still draining, by service and address; forgets (and
    /// drops the metric series of) those whose sessions have all ended.
    pub fn draining_retired(&self) -> Vec<(String, Arc<Backend>)> {
        let mut retired = self.retired_list();
        retired.retain(|(service, address), backend| {
            let draining = backend.active() > 0;
            if !draining {
                self.metrics.forget_backend(service, address);
            }
            draining
        });
        let mut draining: Vec<(String, Arc<Backend>)> = retired
            .iter()
            .map(|((service, _), backend)| (service.clone(), Arc::clone(backend)))
            .collect();
        drop(retired);
        draining.sort_by(|(a, x), (b, y)| (a, x.address()).cmp(&(b, y.address())));
        draining
    }

    fn retired_list(&self) -> std::sync::MutexGuard<'_, RetiredBackends> {
        // Plain data, consistent between statements: safe to use after a panic.
        self.retired.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn count_reload(&self, succeeded: bool) {
        let counter = if succeeded {
            &self.reloads_ok
        } else {
            &self.reloads_failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// `(succeeded, failed)` reloads so far.
    pub fn reloads(&self) -> (u64, u64) {
        (
            self.reloads_ok.load(Ordering::Relaxed),
            self.reloads_failed.load(Ordering::Relaxed),
        )
    }

    pub fn status(&self) -> Status {
        let snapshot = self.snapshot();
        let mut upgrade = self.upgrade();
        upgrade.listeners = snapshot.listeners.clone();
        let mut status = Status::now(
            &snapshot.services,
            &self.draining_retired(),
            self.started.elapsed(),
            snapshot.generation,
            LiveState::is_draining(self),
            upgrade,
        );
        status.workers = self.dispatch.samples();
        status
    }

    /// Upgrades so far (without the listeners).
    pub fn upgrade(&self) -> UpgradeStatus {
        self.upgrade_state().clone()
    }

    /// Changes the upgrade record.
    pub fn update_upgrade(&self, change: impl FnOnce(&mut UpgradeStatus)) {
        change(&mut self.upgrade_state());
    }

    fn upgrade_state(&self) -> std::sync::MutexGuard<'_, UpgradeStatus> {
        // Plain data, consistent between statements: safe to use after a panic.
        self.upgrade.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn is_draining(&self) -> bool {
        self.lifecycle.is_draining()
    }
}

impl SampleSource for LiveState {
    fn sample(&self) -> ProxySample {
        let mut sample = metrics_sample(&self.snapshot().services, &self.draining_retired());
        sample.reloads = self.reloads();
        let upgrade = self.upgrade();
        let received = upgrade.predecessor.as_ref();
        sample.upgrade = UpgradeSample {
            sockets_handed_over: received.map_or(0, |r| r.sockets as u64),
            flows_handed_over: received.map_or(0, |r| r.udp_flows as u64),
            failed_attempts: upgrade.failed_attempts,
        };
        sample.workers = self.dispatch.samples();
        sample
    }
}

impl AdminState for LiveState {
    fn edit_backends(&self, edit: BackendEdit) -> EditReply {
        let edits = self.edits.clone();
        Box::pin(async move {
            let stopped = || ApiError {
                status: 503,
                message: "the server is shutting down".into(),
            };
            let (reply, answer) = oneshot::channel();
            edits.send((edit, reply)).await.map_err(|_| stopped())?;
            answer.await.unwrap_or_else(|_| Err(stopped()))
        })
    }

    fn metrics_text(&self) -> String {
        self.metrics.render()
    }

    fn status_json(&self) -> String {
        self.status().to_json()
    }

    fn is_draining(&self) -> bool {
        LiveState::is_draining(self)
    }

    fn unhealthy(&self) -> Option<String> {
        self.stalled_workers()
    }

    fn authorize(&self, authorization: Option<&str>) -> bool {
        let snapshot = self.snapshot();
        if snapshot.token.is_empty() {
            return true;
        }
        let offered = authorization
            .and_then(|h| h.strip_prefix("Bearer "))
            .unwrap_or("");
        constant_time_eq(offered.as_bytes(), snapshot.token.as_bytes())
    }

    fn services_without_backends(&self, only: Option<&str>) -> Result<Vec<String>, ApiError> {
        let snapshot = self.snapshot();
        let services = snapshot.services.iter().map(|v| &v.service);
        let chosen: Vec<_> = services
            .filter(|s| only.is_none_or(|name| s.name() == name))
            .collect();
        if let (Some(name), true) = (only, chosen.is_empty()) {
            return Err(not_found(format!("no service \"{name}\"")));
        }
        Ok(chosen
            .into_iter()
            .filter(|s| !s.has_available_backend())
            .map(|s| s.name().to_owned())
            .collect())
    }

    fn backend_action(
        &self,
        service: &str,
        backend: &str,
        action: &str,
    ) -> Result<String, ApiError> {
        let state = BackendState::from_action(action).ok_or_else(|| ApiError {
            status: 400,
            message: format!("unknown action \"{action}\": expected drain, maint or ready"),
        })?;
        let snapshot = self.snapshot();
        let view = snapshot
            .services
            .iter()
            .find(|v| v.service.name() == service)
            .ok_or_else(|| not_found(format!("no service \"{service}\"")))?;
        let target = view
            .service
            .position(backend)
            .map(|i| &view.service.backends()[i])
            .ok_or_else(|| {
                not_found(format!("no backend \"{backend}\" in service \"{service}\""))
            })?;
        let previous = target.state_name(Instant::now());
        target.set_admin_state(state);
        tracing::warn!(
            service,
            backend,
            action,
            "runtime API: backend state changed"
        );
        Ok(format!(
            "{{\"service\":{},\"backend\":{},\"previous\":\"{}\",\"state\":\"{}\"}}",
            json(service),
            json(backend),
            previous,
            target.state_name(Instant::now())
        ))
    }
}

fn not_found(message: String) -> ApiError {
    ApiError {
        status: 404,
        message,
    }
}

fn json(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| "\"\"".to_string())
}

/// Byte comparison whose time does not depend on where the inputs differ.
mod subtle_compare {
    pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
        let mut difference = (a.len() ^ b.len()) as u8 | u8::from(a.len() != b.len());
        for i in 0..a.len().max(b.len()) {
            let x = a.get(i).copied().unwrap_or(0);
            let y = b.get(i).copied().unwrap_or(0);
            difference |= x ^ y;
        }
        difference == 0
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn equal_only_when_equal() {
            assert!(constant_time_eq(b"secret", b"secret"));
            assert!(!constant_time_eq(b"secret", b"secreT"));
            assert!(!constant_time_eq(b"secret", b"secret2"));
            assert!(!constant_time_eq(b"", b"x"));
            assert!(constant_time_eq(b"", b""));
        }
    }
}
