//! What an answer does to a discovery group, and when to ask again.
//!
//! Pure: no I/O, no clock (`now` is passed in). The rules: records replace the
//! set (sorted, capped at `max_backends`); a resolver error or timeout keeps
//! the last known set and retries with backoff (1 s doubling, at most 30 s);
//! an authoritative empty answer (NXDOMAIN, or no records) empties the set
//! only once `empty_after` such answers came in a row. The next question
//! follows the TTL (clamped to 1 s .. `max_ttl`; TTL 0 becomes 1 s) or the
//! fixed `refresh` interval.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::config::{DiscoverConfig, Refresh};

/// The shortest wait between two questions (TTL 0 is clamped to it).
pub const MIN_REFRESH: Duration = Duration::from_secs(1);
/// The longest backoff after resolver errors.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// One discovered backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Found {
    pub addr: SocketAddr,
    pub weight: u32,
    pub backup: bool,
}

/// What one lookup came back with.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Records, and the smallest TTL among them.
    Records { found: Vec<Found>, ttl: Duration },
    /// An authoritative "nothing here": NXDOMAIN, or no records of the type.
    Empty { why: String },
    /// The resolver failed or did not answer in time: nothing is known.
    Failed { why: String },
}

/// The addresses a change added and removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Change {
    pub added: Vec<SocketAddr>,
    pub removed: Vec<SocketAddr>,
}

/// A group's known set and its history.
#[derive(Debug, Clone, Default)]
pub struct GroupState {
    /// The last known set (empty before the first answer).
    pub set: Vec<Found>,
    /// When the set was last confirmed by an answer (records or an empty set).
    pub confirmed_at: Option<Instant>,
    /// Why the last lookup did not give records; `None` after records.
    pub last_error: Option<String>,
    /// When the next lookup is due.
    pub next_at: Option<Instant>,
    /// Empty answers in a row.
    pub empty_in_a_row: u32,
    /// Resolver errors in a row (for the backoff).
    pub errors_in_a_row: u32,
    /// Resolver errors and timeouts, ever.
    pub errors: u64,
}

impl GroupState {
    /// Applies one lookup's outcome at `now`: the change of the set (if any),
    /// and the wait until the next lookup.
    pub fn on_outcome(
        &mut self,
        config: &DiscoverConfig,
        outcome: Outcome,
        now: Instant,
    ) -> (Option<Change>, Duration) {
        let (next, wait) = match outcome {
            Outcome::Records { mut found, ttl } => {
                found.sort();
                found.dedup_by_key(|f| f.addr);
                found.truncate(config.max_backends);
                self.empty_in_a_row = 0;
                self.errors_in_a_row = 0;
                self.last_error = None;
                self.confirmed_at = Some(now);
                (Some(found), refresh_wait(config.refresh, ttl))
            }
            Outcome::Empty { why } => {
                self.empty_in_a_row = self.empty_in_a_row.saturating_add(1);
                self.errors_in_a_row = 0;
                self.last_error = Some(format!(
                    "{why} ({} of {} in a row empty the group)",
                    self.empty_in_a_row, config.empty_after
                ));
                let emptied = self.empty_in_a_row >= config.empty_after;
                if emptied {
                    self.confirmed_at = Some(now);
                }
                let wait = refresh_wait(config.refresh, MIN_REFRESH);
                (emptied.then(Vec::new), wait)
            }
            Outcome::Failed { why } => {
                self.errors_in_a_row = self.errors_in_a_row.saturating_add(1);
                self.errors += 1;
                self.last_error = Some(why);
                (None, backoff(self.errors_in_a_row))
            }
        };
        self.next_at = Some(now + wait);
        let change = next.and_then(|set| self.replace(set));
        (change, wait)
    }

    fn replace(&mut self, next: Vec<Found>) -> Option<Change> {
        if next == self.set {
            return None;
        }
        let had = |set: &[Found], addr| set.iter().any(|f| f.addr == addr);
        let change = Change {
            added: next
                .iter()
                .map(|f| f.addr)
                .filter(|&a| !had(&self.set, a))
                .collect(),
            removed: self
                .set
                .iter()
                .map(|f| f.addr)
                .filter(|&a| !had(&next, a))
                .collect(),
        };
        self.set = next;
        Some(change)
    }
}

/// The wait after an answer whose smallest TTL is `ttl`.
pub fn refresh_wait(refresh: Refresh, ttl: Duration) -> Duration {
    match refresh {
        Refresh::Ttl { max } => ttl.clamp(MIN_REFRESH, max.max(MIN_REFRESH)),
        Refresh::Every(every) => every.max(MIN_REFRESH),
    }
}

/// The wait after the `n`th resolver error in a row: 1 s doubling, capped.
pub fn backoff(n: u32) -> Duration {
    let doublings = n.saturating_sub(1).min(16);
    (MIN_REFRESH * (1u32 << doublings)).min(MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DiscoverQuery;

    fn config(empty_after: u32) -> DiscoverConfig {
        DiscoverConfig {
            query: DiscoverQuery::Dns {
                name: "pg.test".into(),
                port: 5432,
            },
            resolvers: Vec::new(),
            refresh: Refresh::Ttl {
                max: Duration::from_secs(30),
            },
            timeout: Duration::from_secs(5),
            weight: 1,
            max_backends: 2,
            empty_after,
            backup: false,
            slow_start: Duration::ZERO,
        }
    }

    fn found(last: u8) -> Found {
        Found {
            addr: SocketAddr::from(([10, 0, 0, last], 5432)),
            weight: 1,
            backup: false,
        }
    }

    fn records(set: &[u8], ttl: u64) -> Outcome {
        Outcome::Records {
            found: set.iter().map(|&l| found(l)).collect(),
            ttl: Duration::from_secs(ttl),
        }
    }

    #[test]
    fn ttl_is_clamped_between_one_second_and_max() {
        let ttl = Refresh::Ttl {
            max: Duration::from_secs(30),
        };
        assert_eq!(refresh_wait(ttl, Duration::ZERO), MIN_REFRESH);
        assert_eq!(
            refresh_wait(ttl, Duration::from_secs(7)),
            Duration::from_secs(7)
        );
        assert_eq!(
            refresh_wait(ttl, Duration::from_secs(3600)),
            Duration::from_secs(30)
        );
        let every = Refresh::Every(Duration::from_secs(5));
        assert_eq!(refresh_wait(every, Duration::ZERO), Duration::from_secs(5));
    }

    #[test]
    fn records_replace_the_set_and_report_the_change() {
        let (c, now) = (config(3), Instant::now());
        let mut state = GroupState::default();
        let (change, wait) = state.on_outcome(&c, records(&[2, 1], 0), now);
        assert_eq!(wait, MIN_REFRESH);
        let change = change.unwrap();
        assert_eq!(change.added, vec![found(1).addr, found(2).addr]);
        assert!(change.removed.is_empty());
        assert_eq!(state.on_outcome(&c, records(&[1, 2], 5), now).0, None);
        let change = state.on_outcome(&c, records(&[2, 3], 5), now).0.unwrap();
        assert_eq!(change.added, vec![found(3).addr]);
        assert_eq!(change.removed, vec![found(1).addr]);
        // Capped at max_backends (2): the first two addresses in order.
        state.on_outcome(&c, records(&[9, 8, 7], 5), now);
        assert_eq!(state.set, vec![found(7), found(8)]);
    }

    #[test]
    fn resolver_errors_keep_the_set_and_back_off() {
        let (c, now) = (config(3), Instant::now());
        let mut state = GroupState::default();
        state.on_outcome(&c, records(&[1], 5), now);
        let waits: Vec<Duration> = (0..7)
            .map(|_| {
                let failed = Outcome::Failed {
                    why: "timed out".into(),
                };
                let (change, wait) = state.on_outcome(&c, failed, now);
                assert_eq!(change, None);
                wait
            })
            .collect();
        let secs: Vec<u64> = waits.iter().map(|w| w.as_secs()).collect();
        assert_eq!(secs, vec![1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(state.set, vec![found(1)]);
        assert_eq!(state.errors, 7);
        assert_eq!(state.last_error.as_deref(), Some("timed out"));
    }

    #[test]
    fn empty_answers_empty_the_group_only_after_empty_after_in_a_row() {
        let (c, now) = (config(3), Instant::now());
        let mut state = GroupState::default();
        state.on_outcome(&c, records(&[1], 5), now);
        let empty = || Outcome::Empty {
            why: "NXDOMAIN".into(),
        };
        assert_eq!(state.on_outcome(&c, empty(), now).0, None);
        assert_eq!(state.on_outcome(&c, empty(), now).0, None);
        // An answer with records resets the count.
        state.on_outcome(&c, records(&[1], 5), now);
        assert_eq!(state.on_outcome(&c, empty(), now).0, None);
        assert_eq!(state.on_outcome(&c, empty(), now).0, None);
        let change = state.on_outcome(&c, empty(), now).0.unwrap();
        assert_eq!(change.removed, vec![found(1).addr]);
        assert!(state.set.is_empty());
    }
}
