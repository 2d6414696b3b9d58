//! What both directions of one relayed session share: when a byte last moved
//! (for the idle timeout), and, for each direction, whether it has reached end
//! of stream and whether it holds bytes it has read but not yet passed on.
//!
//! "Moved" means read from one side *or* written to the other: a session whose
//! reader is slow but steady is busy, not idle, even while one large burst
//! drains into it for longer than the idle timeout.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// One of the two directions of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Way {
    /// Client to backend.
    Up = 0,
    /// Backend to client.
    Down = 1,
}

/// Activity shared by the two directions of a session.
#[derive(Debug)]
pub struct Activity {
    start: Instant,
    last_nanos: AtomicU64,
    ended: [AtomicBool; 2],
    holding: [AtomicBool; 2],
}

impl Activity {
    pub fn new() -> Activity {
        Activity {
            start: Instant::now(),
            last_nanos: AtomicU64::new(0),
            ended: [AtomicBool::new(false), AtomicBool::new(false)],
            holding: [AtomicBool::new(false), AtomicBool::new(false)],
        }
    }

    /// Records that `way` reached end of stream; true when it is the first
    /// direction to end.
    pub fn end(&self, way: Way) -> bool {
        self.ended[way as usize].store(true, Ordering::Relaxed);
        !self.ended[1 - way as usize].load(Ordering::Relaxed)
    }

    /// Whether `way` has reached end of stream.
    pub fn has_ended(&self, way: Way) -> bool {
        self.ended[way as usize].load(Ordering::Relaxed)
    }

    /// Bytes moved (read or written) just now.
    pub fn touch(&self) {
        let nanos = u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.last_nanos.store(nanos, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        let since_start = Duration::from_nanos(self.last_nanos.load(Ordering::Relaxed));
        self.start.checked_add(since_start).unwrap_or(self.start)
    }

    /// Completes once `idle` has passed with no byte moved either way; never,
    /// when `idle` is too long for the clock to express.
    ///
    /// Bytes the relay moves itself are `touch`ed; `moved` counts the bytes
    /// the kernel moved on the session's sockets (say, a slow reader taking
    /// what is buffered for it while the relay waits to write more), and is
    /// asked only when the deadline comes.
    pub async fn idle_for(&self, idle: Duration, moved: impl Fn() -> u64) {
        let mut seen = moved();
        loop {
            let Some(deadline) = self.last().checked_add(idle) else {
                return std::future::pending().await;
            };
            if Instant::now() < deadline {
                tokio::time::sleep_until(deadline).await;
                continue;
            }
            let now_seen = moved();
            if now_seen == seen {
                return;
            }
            seen = now_seen;
            self.touch();
        }
    }

    /// `way` now holds bytes it has read and not yet written. The mark stays
    /// until `release` (not when the direction is dropped), so a session cut
    /// mid-write still knows it held bytes.
    pub fn hold(&self, way: Way) {
        self.holding[way as usize].store(true, Ordering::Relaxed);
    }

    /// `way` has passed on every byte it read.
    pub fn release(&self, way: Way) {
        self.holding[way as usize].store(false, Ordering::Relaxed);
    }

    /// Whether `way` holds bytes not yet passed on.
    pub fn is_holding(&self, way: Way) -> bool {
        self.holding[way as usize].load(Ordering::Relaxed)
    }
}

impl Default for Activity {
    fn default() -> Activity {
        Activity::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hold_lasts_until_released_and_concerns_one_way() {
        let activity = Activity::new();
        activity.hold(Way::Up);
        assert!(activity.is_holding(Way::Up));
        assert!(!activity.is_holding(Way::Down));
        activity.release(Way::Up);
        assert!(!activity.is_holding(Way::Up));
    }

    #[test]
    fn only_the_first_end_of_stream_is_first() {
        let activity = Activity::new();
        assert!(activity.end(Way::Down));
        assert!(activity.has_ended(Way::Down));
        assert!(!activity.has_ended(Way::Up));
        assert!(!activity.end(Way::Up));
    }

    #[tokio::test(start_paused = true)]
    async fn a_touch_pushes_the_idle_deadline_back() {
        let activity = Activity::new();
        let idle = Duration::from_secs(2);
        tokio::time::advance(Duration::from_millis(1500)).await;
        activity.touch();
        let started = Instant::now();
        activity.idle_for(idle, || 0).await;
        assert!(Instant::now() - started >= Duration::from_millis(1999));
    }

    #[tokio::test(start_paused = true)]
    async fn bytes_the_kernel_moved_count_as_activity() {
        let activity = Activity::new();
        let idle = Duration::from_secs(1);
        // The kernel moves bytes for the first 5 s, the relay none.
        let start = Instant::now();
        let kernel_moved = move || start.elapsed().as_secs().min(5);
        activity.idle_for(idle, kernel_moved).await;
        assert!(start.elapsed() >= Duration::from_secs(6));
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_timeout_beyond_the_clock_never_fires() {
        let activity = Activity::new();
        let never = activity.idle_for(Duration::MAX, || 0);
        let fired = tokio::time::timeout(Duration::from_secs(3600), never).await;
        assert!(fired.is_err());
    }
}
