//! Makes a wedged worker visible: each worker runtime runs a heartbeat task
//! that records, every `BEAT_EVERY`, that its loop is still turning; a worker
//! whose last beat is older than `STALLED_AFTER` is stalled.
//!
//! A stalled worker serves none of its clients and accepts none on its
//! sockets, while the control plane (admin endpoint, probes) still answers, so
//! without this the process would look healthy. Stalls are reported by
//! `/healthz` (503), logged when they start and end, and withhold systemd's
//! `WATCHDOG=1`, so that systemd restarts a process that cannot serve.
//!
//! The judgement is a pure function of the beats and the time
//! (`stalled_workers`); the beat tasks and the log loop are thin I/O shells.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

/// How often each worker records that it runs.
pub const BEAT_EVERY: Duration = Duration::from_millis(250);

/// A worker whose loop has not turned for this long is stalled.
pub const STALLED_AFTER: Duration = Duration::from_secs(3);

/// One worker that has not run for a while.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StalledWorker {
    /// Its thread name (`l4lb-worker-N`).
    pub name: String,
    pub silent_for: Duration,
}

/// The last beat of every worker, in milliseconds since `epoch`.
#[derive(Debug)]
pub struct Heartbeats {
    epoch: Instant,
    last_beat_ms: Vec<AtomicU64>,
    stalled_after: Duration,
}

impl Heartbeats {
    /// Beats for `workers` workers, each counted as having just run.
    pub fn new(workers: usize, stalled_after: Duration) -> Heartbeats {
        Heartbeats {
            epoch: Instant::now(),
            last_beat_ms: (0..workers).map(|_| AtomicU64::new(0)).collect(),
            stalled_after,
        }
    }

    /// Starts one beat task per worker, on that worker's runtime, until `stop`.
    pub fn start<'a>(
        self: &Arc<Self>,
        workers: impl Iterator<Item = &'a Handle>,
        stop: &CancellationToken,
    ) {
        for (index, handle) in workers.enumerate() {
            let beats = Arc::clone(self);
            let stop = stop.clone();
            handle.spawn(async move {
                loop {
                    beats.beat(index);
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(BEAT_EVERY) => {}
                    }
                }
            });
        }
    }

    fn beat(&self, worker: usize) {
        if let Some(slot) = self.last_beat_ms.get(worker) {
            slot.store(millis(self.epoch.elapsed()), Ordering::Relaxed);
        }
    }

    /// The workers stalled now.
    pub fn stalled(&self) -> Vec<StalledWorker> {
        let beats: Vec<u64> = self
            .last_beat_ms
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        stalled_workers(&beats, millis(self.epoch.elapsed()), self.stalled_after)
    }
}

/// Workers whose last beat (ms) is more than `stalled_after` before `now_ms`.
pub fn stalled_workers(
    last_beats: &[u64],
    now_ms: u64,
    stalled_after: Duration,
) -> Vec<StalledWorker> {
    let limit = millis(stalled_after);
    last_beats
        .iter()
        .enumerate()
        .filter_map(|(index, &beat)| {
            let silent = now_ms.saturating_sub(beat);
            (silent > limit).then(|| StalledWorker {
                name: format!("l4lb-worker-{index}"),
                silent_for: Duration::from_millis(silent),
            })
        })
        .collect()
}

/// One line for `/healthz` and the log, or `None` when every worker runs.
pub fn describe(stalled: &[StalledWorker]) -> Option<String> {
    if stalled.is_empty() {
        return None;
    }
    let each: Vec<String> = stalled
        .iter()
        .map(|w| {
            format!(
                "{} has not run for {:.1} s",
                w.name,
                w.silent_for.as_secs_f64()
            )
        })
        .collect();
    Some(format!("stalled: {}", each.join(", ")))
}

/// Logs each start and end of a stall, checking once per beat, until `stop`.
pub async fn log_stalls(beats: Arc<Heartbeats>, stop: CancellationToken) {
    let mut was_stalled = false;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(BEAT_EVERY) => {}
        }
        let stalled = beats.stalled();
        match (describe(&stalled), was_stalled) {
            (Some(what), false) => {
                error!(
                    workers = stalled.len(),
                    "worker loop {what}; its clients are not served"
                )
            }
            (None, true) => info!("every worker loop runs again"),
            _ => {}
        }
        was_stalled = !stalled.is_empty();
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::workers::WorkerPool;

    #[test]
    fn a_worker_is_stalled_only_past_the_limit() {
        let limit = Duration::from_secs(3);
        assert!(stalled_workers(&[1000, 4000], 4000, limit).is_empty());
        assert!(
            stalled_workers(&[1000], 4000, limit).is_empty(),
            "exactly 3 s is not yet"
        );
        let stalled = stalled_workers(&[1000, 3900], 4001, limit);
        assert_eq!(
            stalled,
            vec![StalledWorker {
                name: "l4lb-worker-0".into(),
                silent_for: Duration::from_millis(3001)
            }]
        );
        assert_eq!(
            describe(&stalled).as_deref(),
            Some("stalled: l4lb-worker-0 has not run for 3.0 s")
        );
        assert_eq!(describe(&[]), None);
    }

    #[test]
    fn a_blocked_worker_runtime_is_reported_and_recovers() {
        let pool = WorkerPool::start(2).expect("workers");
        let beats = Arc::new(Heartbeats::new(2, Duration::from_millis(600)));
        let stop = CancellationToken::new();
        beats.start(pool.handles(), &stop);
        let blocked = pool.handles().next().expect("worker 0").clone();
        let wait_for = |what: &str, done: &dyn Fn(&[StalledWorker]) -> bool| {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                if done(&beats.stalled()) {
                    return;
                }
                assert!(Instant::now() < deadline, "never happened: {what}");
                std::thread::sleep(Duration::from_millis(20));
            }
        };
        std::thread::sleep(Duration::from_millis(300));
        assert!(beats.stalled().is_empty(), "running workers beat");
        // A task that never yields holds worker 0's loop for 2 s.
        blocked.spawn(async { std::thread::sleep(Duration::from_secs(2)) });
        wait_for("worker 0 is stalled", &|s| {
            s.len() == 1 && s[0].name == "l4lb-worker-0"
        });
        wait_for("worker 0 runs again", &|s| s.is_empty());
        stop.cancel();
    }
}
