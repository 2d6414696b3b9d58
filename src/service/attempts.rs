//! The connect budget of one client: which backends it has been offered, how
//! many connects failed, and when to give up (after `connect_attempts`
//! failures, or once every round has been spent on backends that were full).
//! Pure bookkeeping shared by the TCP proxy and the simulator, so both follow
//! the same retry rules.

use smallvec::SmallVec;

use super::RejectReason;

/// One client's connect attempts so far.
#[derive(Debug, Default)]
pub struct ConnectAttempts {
    /// Indices of the backends offered so far (inline for the usual few: no
    /// allocation per client).
    tried: SmallVec<[usize; 4]>,
    failures: u32,
    /// Each round either fails a connect or skips a backend that just filled up.
    rounds: usize,
}

impl ConnectAttempts {
    /// Whether another backend may be offered under `connect_attempts`, with
    /// `backends` in the service; counts the round when it may.
    pub fn next_round(&mut self, connect_attempts: u32, backends: usize) -> bool {
        if self.failures >= connect_attempts || self.rounds >= connect_attempts as usize + backends
        {
            return false;
        }
        self.rounds += 1;
        true
    }

    /// The backends offered so far, oldest first.
    pub fn tried(&self) -> &[usize] {
        &self.tried
    }

    /// The same list to rewrite, e.g. onto the backends of a reloaded service.
    pub fn tried_mut(&mut self) -> &mut SmallVec<[usize; 4]> {
        &mut self.tried
    }

    /// The backend at `index` was offered.
    pub fn offered(&mut self, index: usize) {
        self.tried.push(index);
    }

    /// The connect to the last backend offered failed.
    pub fn failed(&mut self) {
        self.failures += 1;
    }

    /// Why the client is turned away when no round is left or nothing is offered.
    pub fn give_up_reason(&self) -> RejectReason {
        if self.failures == 0 {
            RejectReason::NoBackend
        } else {
            RejectReason::BackendConnect
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gives_up_after_the_failures_allowed() {
        let mut attempts = ConnectAttempts::default();
        for backend in 0..3 {
            assert!(attempts.next_round(3, 5));
            attempts.offered(backend);
            attempts.failed();
        }
        assert!(!attempts.next_round(3, 5));
        assert_eq!(attempts.tried(), [0, 1, 2]);
        assert_eq!(attempts.give_up_reason(), RejectReason::BackendConnect);
    }

    #[test]
    fn full_backends_spend_rounds_not_failures() {
        let mut attempts = ConnectAttempts::default();
        let rounds = std::iter::from_fn(|| attempts.next_round(2, 3).then_some(())).count();
        assert_eq!(rounds, 5);
        assert_eq!(attempts.give_up_reason(), RejectReason::NoBackend);
    }
}
