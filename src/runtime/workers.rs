//! The data-plane threads: one single-threaded tokio runtime per worker.
//!
//! Every listen address gets one SO_REUSEPORT socket per worker, and each worker
//! accepts, relays and answers on its own sockets with its own epoll instance and
//! timers, so a session never moves between threads and no worker wakes another.
//! The kernel spreads new connections (and UDP clients) over the sockets. The
//! control plane (admin endpoint, health probes, reloads, signals) stays on the
//! runtime that created the pool.

use std::io;

use tokio::runtime::{Builder, Handle};
use tokio::sync::oneshot;

/// The worker threads and a handle to spawn on each.
#[derive(Debug)]
pub struct WorkerPool {
    workers: Vec<Worker>,
}

#[derive(Debug)]
struct Worker {
    handle: Handle,
    /// Dropped with the pool, which ends the worker's runtime (cancelling
    /// whatever still runs there); the thread then exits by itself.
    _stop: oneshot::Sender<()>,
}

impl WorkerPool {
    /// Starts `count` workers (at least one; 0 means one per available core).
    pub fn start(count: usize) -> io::Result<WorkerPool> {
        let count = match count {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let workers = (0..count)
            .map(Worker::start)
            .collect::<io::Result<Vec<_>>>()?;
        Ok(WorkerPool { workers })
    }

    /// One handle per worker, in a fixed order.
    pub fn handles(&self) -> impl ExactSizeIterator<Item = &Handle> {
        self.workers.iter().map(|w| &w.handle)
    }

    pub fn len(&self) -> usize {
        self.workers.len()
    }
}

impl Worker {
    fn start(index: usize) -> io::Result<Worker> {
        let runtime = Builder::new_current_thread().enable_all().build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name(format!("l4lb-worker-{index}"))
            .spawn(move || {
                // Runs every task spawned on `handle` until the pool says stop.
                let _ = runtime.block_on(stopped);
                drop(runtime);
            })?;
        Ok(Worker {
            handle,
            _stop: stop,
        })
    }
}
