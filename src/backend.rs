//! One backend server of one service: its configured identity and its live counters.
//!
//! A `Backend` is shared (`Arc`) between the strategy that picks it, the connection
//! tasks that use it and the status readers. Counters are atomics so that the hot
//! path never takes a lock. `ConnectionGuard` is the only way to count an active
//! connection, so the count goes back down on every path, however a session ends.
//! This file does no I/O.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// Weight given to the newest sample in the connect-time moving average.
pub const CONNECT_TIME_EWMA_ALPHA: f64 = 0.3;

/// Marks "no connect time measured yet" in the EWMA cell.
const NO_SAMPLE: u64 = u64::MAX;

#[derive(Debug)]
pub struct Backend {
    address: String,
    addr: SocketAddr,
    weight: u32,
    max_connections: usize,
    active: AtomicUsize,
    total_connections: AtomicU64,
    connect_failures: AtomicU64,
    /// f64 seconds as bits, or `NO_SAMPLE`.
    connect_time_ewma: AtomicU64,
}

impl Backend {
    /// A backend named `address` (as configured) that connects to `addr`.
    pub fn new(address: impl Into<String>, addr: SocketAddr, weight: u32) -> Backend {
        Backend {
            address: address.into(),
            addr,
            weight: weight.max(1),
            max_connections: 0,
            active: AtomicUsize::new(0),
            total_connections: AtomicU64::new(0),
            connect_failures: AtomicU64::new(0),
            connect_time_ewma: AtomicU64::new(NO_SAMPLE),
        }
    }

    /// Caps concurrent connections; 0 means unlimited.
    pub fn with_max_connections(mut self, max: usize) -> Backend {
        self.max_connections = max;
        self
    }

    /// The address as configured: the backend's name in logs, metrics and status.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The socket address connections go to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Configured weight, 1..=1000.
    pub fn weight(&self) -> u32 {
        self.weight
    }

    pub fn max_connections(&self) -> usize {
        self.max_connections
    }

    /// Connections currently open (or being opened) to this backend.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    /// Connections ever opened to this backend.
    pub fn total_connections(&self) -> u64 {
        self.total_connections.load(Ordering::Relaxed)
    }

    /// Failed connect attempts (refused or timed out).
    pub fn connect_failures(&self) -> u64 {
        self.connect_failures.load(Ordering::Relaxed)
    }

    /// Whether one more connection fits under `max_connections`.
    pub fn has_capacity(&self) -> bool {
        self.max_connections == 0 || self.active() < self.max_connections
    }

    /// Counts a connection as active until the returned guard is dropped.
    ///
    /// Returns `None` when the backend is full. The check and the increment are one
    /// atomic step, so concurrent callers can never push it over its limit.
    pub fn try_acquire(self: &Arc<Self>) -> Option<ConnectionGuard> {
        let max = self.max_connections;
        let acquired = self
            .active
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| {
                (max == 0 || n < max).then_some(n + 1)
            });
        acquired.ok().map(|_| {
            self.total_connections.fetch_add(1, Ordering::Relaxed);
            ConnectionGuard {
                backend: Arc::clone(self),
            }
        })
    }

    /// Records one failed connect attempt.
    pub fn record_connect_failure(&self) {
        self.connect_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// Folds one successful connect time into the moving average.
    pub fn record_connect_time(&self, took: Duration) {
        let sample = took.as_secs_f64();
        let _ = self
            .connect_time_ewma
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                let next = if bits == NO_SAMPLE {
                    sample
                } else {
                    let old = f64::from_bits(bits);
                    old + CONNECT_TIME_EWMA_ALPHA * (sample - old)
                };
                Some(next.to_bits())
            });
    }

    /// Moving average of connect time in seconds; `None` before the first connect.
    pub fn connect_time_ewma(&self) -> Option<f64> {
        let bits = self.connect_time_ewma.load(Ordering::Relaxed);
        (bits != NO_SAMPLE).then(|| f64::from_bits(bits))
    }
}

/// One active connection to a backend; dropping it releases the slot.
#[derive(Debug)]
pub struct ConnectionGuard {
    backend: Arc<Backend>,
}

impl ConnectionGuard {
    pub fn backend(&self) -> &Arc<Backend> {
        &self.backend
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.backend.active.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(max: usize) -> Arc<Backend> {
        let addr: SocketAddr = "127.0.0.1:1".parse().expect("literal address");
        Arc::new(Backend::new("b", addr, 1).with_max_connections(max))
    }

    #[test]
    fn guard_counts_and_releases() {
        let b = backend(0);
        let g1 = b.try_acquire().expect("unlimited");
        let g2 = b.try_acquire().expect("unlimited");
        assert_eq!(b.active(), 2);
        drop(g1);
        assert_eq!(b.active(), 1);
        drop(g2);
        assert_eq!(b.active(), 0);
        assert_eq!(b.total_connections(), 2);
    }

    #[test]
    fn full_backend_refuses_until_a_slot_frees() {
        let b = backend(2);
        let g1 = b.try_acquire().expect("first fits");
        let _g2 = b.try_acquire().expect("second fits");
        assert!(b.try_acquire().is_none());
        assert!(!b.has_capacity());
        drop(g1);
        assert!(b.try_acquire().is_some());
    }

    #[test]
    fn ewma_starts_at_first_sample_then_moves_by_alpha() {
        let b = backend(0);
        assert_eq!(b.connect_time_ewma(), None);
        b.record_connect_time(Duration::from_millis(100));
        let first = b.connect_time_ewma().expect("one sample");
        assert!((first - 0.1).abs() < 1e-12);
        b.record_connect_time(Duration::from_millis(200));
        let second = b.connect_time_ewma().expect("two samples");
        assert!((second - (0.1 + 0.3 * 0.1)).abs() < 1e-12);
    }
}
