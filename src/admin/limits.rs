//! Resource bounds for the admin server: connection cap, timeouts, buffer
//! size and the memory budget for rendered documents. Owns the defaults and
//! their sanitising; does not enforce them (`server`, `slots` and `documents`
//! do).

use std::time::Duration;

use tokio::sync::Semaphore;

/// Smallest read buffer hyper accepts; smaller values make it panic.
const MIN_BUF_SIZE: usize = 8 * 1024;

/// Bounds that keep slow or hostile admin clients from exhausting the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Concurrent admin connections; a connection beyond this evicts an idle
    /// or stalled one (see `slots`), or is closed at once.
    pub(crate) max_connections: usize,
    /// How long a response may be in flight before its connection may be
    /// evicted to make room (for a connection, or for budget).
    pub(crate) stalled_after: Duration,
    /// Bytes of rendered `/metrics` and `/status` bodies held at once.
    pub(crate) body_budget: usize,
    /// How long a request waits for a share of `body_budget` before a 503.
    pub(crate) body_wait: Duration,
    /// Time a client has to send a complete request head.
    pub(crate) header_read_timeout: Duration,
    /// Largest read buffer per connection, which also caps the request head size.
    pub(crate) max_buf_size: usize,
    /// Total time one connection may stay open, keep-alive included.
    pub(crate) connection_lifetime: Duration,
    /// Time an open connection gets to finish its response once it is asked to
    /// close (on shutdown or at the end of its lifetime) before it is dropped.
    pub(crate) close_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 64,
            stalled_after: Duration::from_secs(10),
            body_budget: 16 * 1024 * 1024,
            body_wait: Duration::from_secs(5),
            header_read_timeout: Duration::from_secs(5),
            max_buf_size: 16 * 1024,
            connection_lifetime: Duration::from_secs(60),
            close_grace: Duration::from_secs(1),
        }
    }
}

impl Limits {
    /// Clamps values into the ranges hyper and tokio accept without panicking.
    pub(crate) fn sanitized(self) -> Self {
        Self {
            max_connections: self.max_connections.min(Semaphore::MAX_PERMITS),
            max_buf_size: self.max_buf_size.max(MIN_BUF_SIZE),
            ..self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_documented_bounds() {
        let limits = Limits::default();
        assert_eq!(limits.max_connections, 64);
        assert_eq!(limits.stalled_after, Duration::from_secs(10));
        assert_eq!(limits.body_budget, 16 * 1024 * 1024);
        assert_eq!(limits.body_wait, Duration::from_secs(5));
        assert_eq!(limits.header_read_timeout, Duration::from_secs(5));
        assert_eq!(limits.max_buf_size, 16 * 1024);
        assert_eq!(limits.connection_lifetime, Duration::from_secs(60));
        assert_eq!(limits.close_grace, Duration::from_secs(1));
    }

    #[test]
    fn sanitized_raises_tiny_buffer_and_caps_connections() {
        let limits = Limits {
            max_connections: usize::MAX,
            max_buf_size: 1,
            ..Limits::default()
        }
        .sanitized();
        assert_eq!(limits.max_buf_size, MIN_BUF_SIZE);
        assert_eq!(limits.max_connections, Semaphore::MAX_PERMITS);
    }

    #[test]
    fn sanitized_keeps_sane_values() {
        assert_eq!(Limits::default().sanitized(), Limits::default());
    }
}
