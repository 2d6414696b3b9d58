//! One route's backend pool: its primary and backup tiers, its strategy, its
//! own cap and ACL, and how many clients it was given. A service holds one per
//! route, the default route (its own `[[service.backend]]` list) first; all of
//! them index into the service's one list of backends, so health checks,
//! status, metrics and reloads see every backend of every route alike.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crate::acl::Acl;
use crate::backend::Backend;
use crate::balancer::PickContext;
use crate::config::{OnAllDown, ServiceConfig};
use crate::limit::{ConnectionLimit, LimitPermit};
use crate::random;

use super::counters::RejectReason;
use super::tier::Tier;

/// The backends of one route and how one of them is chosen.
#[derive(Debug)]
pub struct Pool {
    name: String,
    primaries: Tier,
    backups: Tier,
    /// The route's `max_connections` (0 = unlimited).
    connections: Arc<ConnectionLimit>,
    acl: Acl,
    /// Clients given to this route; carried over reloads by route name.
    routed: Arc<AtomicU64>,
}

impl Pool {
    /// The pool of route `route` of `config` over `all` (the service's
    /// backends), carrying counts over from `previous` (the same route's pool of
    /// the previous generation, if any).
    pub fn new(
        config: &ServiceConfig,
        route: usize,
        all: &[Arc<Backend>],
        previous: Option<&Pool>,
    ) -> Pool {
        let settings = route.checked_sub(1).and_then(|i| config.routes.get(i));
        let strategy = settings.map_or(&config.strategy, |r| &r.strategy);
        let members = |backup: bool| -> Vec<usize> {
            (0..all.len())
                .filter(|&i| config.backends[i].route == route && all[i].is_backup() == backup)
                .collect()
        };
        let max = settings.map_or(0, |r| r.max_connections);
        let connections = match previous {
            Some(p) => {
                p.connections.set_max(max);
                Arc::clone(&p.connections)
            }
            None => Arc::new(ConnectionLimit::new(max)),
        };
        let acl = settings.map_or_else(Acl::default, |r| Acl::new(r.allow.clone(), r.deny.clone()));
        Pool {
            name: config.route_name(route).to_string(),
            primaries: Tier::new(strategy, all, members(false)),
            backups: Tier::new(strategy, all, members(true)),
            connections,
            acl,
            routed: previous.map_or_else(Default::default, |p| Arc::clone(&p.routed)),
        }
    }

    /// Whether a primary or a backup of this pool is available at `now`.
    pub fn any_available(&self, now: std::time::Instant) -> bool {
        self.primaries.any_available(now) || self.backups.any_available(now)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Clients given to this route so far.
    pub fn routed(&self) -> u64 {
        self.routed.load(Ordering::Relaxed)
    }

    /// Admits a client to this route under its ACL and cap, and counts it.
    pub fn admit(&self, client: std::net::IpAddr) -> Result<LimitPermit, RejectReason> {
        if !self.acl.is_open() && !self.acl.permits(client) {
            return Err(RejectReason::Acl);
        }
        let permit = self
            .connections
            .try_acquire()
            .ok_or(RejectReason::MaxConnections)?;
        self.routed.fetch_add(1, Ordering::Relaxed);
        Ok(permit)
    }

    /// The next backend for `ctx` (an index into the service's backends):
    /// primaries while any is available, backups while none is, and with
    /// `on_all_down = "use_all"` the primaries regardless when nothing is.
    pub fn choose(
        &self,
        ctx: &PickContext,
        on_all_down: OnAllDown,
        tried: &[usize],
    ) -> Option<usize> {
        let now = Instant::now();
        for tier in [&self.primaries, &self.backups] {
            if tier.any_available(now) {
                return pick_in_rotation(tier, ctx, now, tried);
            }
        }
        match on_all_down {
            OnAllDown::Reject => None,
            OnAllDown::UseAll => {
                let tier = if self.primaries.members.is_empty() {
                    &self.backups
                } else {
                    &self.primaries
                };
                tier.pick(ctx, &|b: &Backend| b.has_capacity(), tried)
            }
        }
    }
}

/// Picks among `tier`'s available backends, letting slow-starting ones take only
/// their current share; when that leaves none (say, the only one is ramping), the
/// ramp is ignored rather than turning the client away.
fn pick_in_rotation(
    tier: &Tier,
    ctx: &PickContext,
    now: Instant,
    tried: &[usize],
) -> Option<usize> {
    let admission = random::next_u64();
    let ready = |b: &Backend| b.has_capacity() && b.is_available(now);
    let admitted = |b: &Backend| ready(b) && b.admits(now, admission);
    tier.pick(ctx, &admitted, tried)
        .or_else(|| tier.pick(ctx, &ready, tried))
}
