//! Which worker serves a newly accepted TCP client.
//!
//! Every worker accepts on its own SO_REUSEPORT socket, and the kernel picks
//! the socket from a hash of the client's address and port. With few
//! long-lived clients — a database pool of 4 or 16 connections — that hash
//! easily puts most sessions on one worker while another idles, and a session
//! never moves, so one worker's queue grows while another core waits. So, as
//! HAProxy dispatches accepted connections across its threads by load, the
//! worker that accepted a client looks at every worker's session count and,
//! when another worker has fewer, hands the client to it before anything is
//! read (`worker_dispatch = "least_sessions"`, the default). The session then
//! lives entirely on that worker: only the hand-off pays a cross-thread
//! wake-up, never the data path. `worker_dispatch = "kernel"` keeps every
//! client on the worker whose socket the kernel chose.
//!
//! Sessions are counted per worker with an RAII [`WorkerSeat`], taken when the
//! client is dispatched (so a burst of accepts sees the seats it has already
//! given out) and given back when the session ends, however it ends.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::runtime::Handle;

use crate::metrics::WorkerSample;

/// One worker's counters, on a cache line of their own: they are written by
/// every accept and every session end.
#[derive(Debug, Default)]
#[repr(align(64))]
struct WorkerCounts {
    /// TCP sessions running on the worker now.
    sessions: AtomicUsize,
    /// Clients another worker accepted and handed to this one.
    handed_in: AtomicU64,
}

/// The workers TCP clients can be dispatched to, and their session counts.
#[derive(Debug)]
pub struct WorkerDispatch {
    handles: Vec<Handle>,
    counts: Vec<WorkerCounts>,
    balanced: AtomicBool,
}

impl WorkerDispatch {
    /// Dispatch over the workers behind `handles` (in worker order); `balanced`
    /// is `worker_dispatch = "least_sessions"`.
    pub fn new(handles: Vec<Handle>, balanced: bool) -> WorkerDispatch {
        let counts = handles.iter().map(|_| WorkerCounts::default()).collect();
        WorkerDispatch {
            handles,
            counts,
            balanced: AtomicBool::new(balanced),
        }
    }

    /// Turns balancing on or off (a reload of `worker_dispatch`); sessions
    /// already running stay where they are.
    pub fn set_balanced(&self, balanced: bool) {
        self.balanced.store(balanced, Ordering::Relaxed);
    }

    /// The worker a client accepted by worker `own` should be served on.
    pub fn choose(&self, own: usize) -> usize {
        if !self.balanced.load(Ordering::Relaxed) {
            return own;
        }
        let sessions = self
            .counts
            .iter()
            .map(|c| c.sessions.load(Ordering::Relaxed));
        least_loaded(sessions, own)
    }

    /// Counts a session on `worker` until the seat is dropped; `handed_in`
    /// when another worker accepted it.
    pub fn seat(self: &Arc<Self>, worker: usize, handed_in: bool) -> WorkerSeat {
        if let Some(counts) = self.counts.get(worker) {
            counts.sessions.fetch_add(1, Ordering::Relaxed);
            if handed_in {
                counts.handed_in.fetch_add(1, Ordering::Relaxed);
            }
        }
        WorkerSeat {
            dispatch: Arc::clone(self),
            worker,
        }
    }

    /// The runtime of `worker`; `None` when there is no such worker.
    pub fn handle(&self, worker: usize) -> Option<&Handle> {
        self.handles.get(worker)
    }

    /// Every worker's counts and busy time, in worker order.
    pub fn samples(&self) -> Vec<WorkerSample> {
        self.handles
            .iter()
            .zip(&self.counts)
            .enumerate()
            .map(|(worker, (handle, counts))| WorkerSample {
                worker,
                sessions: counts.sessions.load(Ordering::Relaxed),
                busy_seconds: busy_time(handle).as_secs_f64(),
                handed_in: counts.handed_in.load(Ordering::Relaxed),
            })
            .collect()
    }
}

/// A worker's busy time: its one event-loop thread's time spent not parked.
fn busy_time(handle: &Handle) -> Duration {
    let metrics = handle.metrics();
    (0..metrics.num_workers())
        .map(|w| metrics.worker_total_busy_duration(w))
        .sum()
}

/// One session counted on one worker; gives the count back when dropped.
#[derive(Debug)]
pub struct WorkerSeat {
    dispatch: Arc<WorkerDispatch>,
    worker: usize,
}

impl Drop for WorkerSeat {
    fn drop(&mut self) {
        if let Some(counts) = self.dispatch.counts.get(self.worker) {
            counts.sessions.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// The worker to serve a client that worker `own` accepted, given every
/// worker's session count (in worker order): the one with the fewest, unless
/// `own` is within an eighth of it (the tolerance keeps a steady stream of
/// short connections from bouncing between workers that are already even;
/// with few sessions it is zero, so 4 clients on 2 workers end up 2 and 2).
/// Ties go to `own`, then to the lowest index.
pub fn least_loaded(sessions: impl Iterator<Item = usize>, own: usize) -> usize {
    let mut own_count = None;
    let mut best: Option<(usize, usize)> = None;
    for (worker, count) in sessions.enumerate() {
        if worker == own {
            own_count = Some(count);
        }
        if best.is_none_or(|(_, fewest)| count < fewest) {
            best = Some((worker, count));
        }
    }
    match (own_count, best) {
        (Some(mine), Some((worker, fewest))) if mine > fewest + fewest / 8 => worker,
        (None, Some((worker, _))) => worker,
        _ => own,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pick(counts: &[usize], own: usize) -> usize {
        least_loaded(counts.iter().copied(), own)
    }

    #[test]
    fn a_client_stays_on_its_worker_when_no_other_has_fewer_sessions() {
        assert_eq!(pick(&[0, 0], 0), 0);
        assert_eq!(pick(&[3, 3], 1), 1);
        assert_eq!(pick(&[2, 5], 0), 0);
    }

    #[test]
    fn a_client_moves_to_the_worker_with_the_fewest_sessions() {
        assert_eq!(pick(&[1, 0], 0), 1);
        assert_eq!(pick(&[4, 2, 1, 3], 0), 2);
        assert_eq!(pick(&[5, 1, 1], 0), 1, "ties go to the lowest index");
    }

    #[test]
    fn within_an_eighth_of_the_fewest_a_client_stays() {
        assert_eq!(pick(&[36, 32], 0), 0);
        assert_eq!(pick(&[37, 32], 0), 1);
        assert_eq!(
            pick(&[8, 7], 0),
            1,
            "below 8 sessions any difference counts"
        );
    }

    #[test]
    fn an_unknown_accepting_worker_hands_to_the_least_loaded() {
        assert_eq!(pick(&[2, 1], 5), 1);
        assert_eq!(pick(&[], 0), 0);
    }

    /// Dispatch over two workers (both on one runtime: only counts matter here).
    fn two_workers(balanced: bool) -> (tokio::runtime::Runtime, Arc<WorkerDispatch>) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let handles = vec![runtime.handle().clone(), runtime.handle().clone()];
        let dispatch = Arc::new(WorkerDispatch::new(handles, balanced));
        (runtime, dispatch)
    }

    #[test]
    fn four_clients_hashed_onto_one_worker_end_up_two_and_two() {
        let (_runtime, dispatch) = two_workers(true);
        let seats: Vec<WorkerSeat> = (0..4)
            .map(|_| {
                let worker = dispatch.choose(0);
                dispatch.seat(worker, worker != 0)
            })
            .collect();
        let sessions: Vec<usize> = dispatch.samples().iter().map(|s| s.sessions).collect();
        assert_eq!(sessions, [2, 2]);
        assert_eq!(dispatch.samples()[1].handed_in, 2);
        drop(seats);
        let sessions: Vec<usize> = dispatch.samples().iter().map(|s| s.sessions).collect();
        assert_eq!(sessions, [0, 0], "every seat is given back");
    }

    #[test]
    fn with_kernel_dispatch_every_client_stays_where_it_was_accepted() {
        let (_runtime, dispatch) = two_workers(false);
        let _seats: Vec<WorkerSeat> = (0..4)
            .map(|_| dispatch.seat(dispatch.choose(0), false))
            .collect();
        assert_eq!(dispatch.samples()[0].sessions, 4);
    }
}
