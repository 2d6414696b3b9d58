//! The loop of one discovery group on the control runtime: ask, apply the
//! policy, tell the runtime when the set changed, wait, ask again — until
//! the group is stopped (a reload that drops or changes it, or shutdown).
//!
//! Lookups are asynchronous (hickory) and bounded by the group's `timeout`, so
//! a slow or stopped resolver never holds the control thread: the admin
//! endpoint, probes and signals carry on meanwhile.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use prometheus::IntCounter;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::DiscoverConfig;

use super::lookup::GroupResolver;
use super::policy::{Found, GroupState, Outcome, backoff};

/// One running group of one service.
#[derive(Debug)]
pub struct Group {
    pub service: String,
    pub config: DiscoverConfig,
    state: Mutex<GroupState>,
    errors: IntCounter,
    stop: CancellationToken,
}

/// A group as `/status` shows it.
#[derive(Debug, Serialize)]
pub struct GroupStatus {
    pub name: String,
    pub kind: &'static str,
    /// The addresses of the last known set.
    pub backends: Vec<String>,
    /// Seconds since an answer last confirmed the set; `null` before the first.
    pub age_seconds: Option<f64>,
    /// Why the last lookup gave no records; `null` after records.
    pub last_error: Option<String>,
    /// Seconds until the next lookup; `null` while one is under way.
    pub next_refresh_seconds: Option<f64>,
    /// Authoritative empty answers in a row (`empty_after` of them empty the set).
    pub empty_answers_in_a_row: u32,
    /// Resolver errors and timeouts since the group started.
    pub errors: u64,
}

impl Group {
    /// A group not started yet; `errors` counts its resolver errors.
    pub fn new(service: &str, config: DiscoverConfig, errors: IntCounter) -> Group {
        Group {
            service: service.to_string(),
            config,
            state: Mutex::new(GroupState::default()),
            errors,
            stop: CancellationToken::new(),
        }
    }

    fn state(&self) -> MutexGuard<'_, GroupState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The last known set.
    pub fn set(&self) -> Vec<Found> {
        self.state().set.clone()
    }

    /// Ends the group's loop.
    pub fn stop(&self) {
        self.stop.cancel();
    }

    pub fn status(&self, now: Instant) -> GroupStatus {
        let state = self.state();
        let round = |secs: f64| (secs * 1000.0).round() / 1000.0;
        GroupStatus {
            name: self.config.name().to_string(),
            kind: self.config.kind(),
            backends: state.set.iter().map(|f| f.addr.to_string()).collect(),
            age_seconds: state
                .confirmed_at
                .map(|t| round(now.saturating_duration_since(t).as_secs_f64())),
            last_error: state.last_error.clone(),
            next_refresh_seconds: state
                .next_at
                .filter(|&t| t > now)
                .map(|t| round((t - now).as_secs_f64())),
            empty_answers_in_a_row: state.empty_in_a_row,
            errors: state.errors,
        }
    }
}

/// Starts `group`'s loop on the current runtime; `changed` gets the service's
/// name each time the group's set changes.
pub fn spawn_group(group: Arc<Group>, changed: mpsc::UnboundedSender<String>) {
    tokio::spawn(async move {
        let stop = group.stop.clone();
        tokio::select! {
            () = stop.cancelled() => {}
            () = run(&group, &changed) => {}
        }
    });
}

async fn run(group: &Group, changed: &mpsc::UnboundedSender<String>) {
    let mut failures = 0;
    let resolver = loop {
        match GroupResolver::new(&group.config) {
            Ok(resolver) => break resolver,
            Err(why) => {
                failures += 1;
                let outcome = Outcome::Failed { why };
                let wait = handle(group, outcome, changed);
                tokio::time::sleep(wait.max(backoff(failures))).await;
            }
        }
    };
    loop {
        group.state().next_at = None;
        let outcome = resolver.ask().await;
        let wait = handle(group, outcome, changed);
        tokio::time::sleep(wait).await;
    }
}

/// Applies one outcome; the wait until the next lookup.
fn handle(
    group: &Group,
    outcome: Outcome,
    changed: &mpsc::UnboundedSender<String>,
) -> std::time::Duration {
    let failed = match &outcome {
        Outcome::Failed { why } => Some(why.clone()),
        _ => None,
    };
    let (change, wait) = group
        .state()
        .on_outcome(&group.config, outcome, Instant::now());
    let (service, name) = (&group.service, group.config.name());
    if let Some(why) = failed {
        group.errors.inc();
        warn!(service = %service, group = name, error = %why,
            retry_in = %humantime::format_duration(wait),
            "discovery: lookup failed; keeping the last known backends");
    }
    if let Some(change) = change {
        let list = |addrs: &[SocketAddr]| {
            addrs
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(",")
        };
        info!(service = %service, group = name, added = %list(&change.added),
            removed = %list(&change.removed), "discovery: backend set changed");
        let _ = changed.send(service.clone());
    }
    wait
}
