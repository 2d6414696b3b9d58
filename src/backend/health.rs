//! The active-check verdict of one backend: rise/fall counting and the record that
//! status and metrics read.
//!
//! Pure: check results and the time are passed in; probing itself lives in
//! `crate::health`. A backend starts up; `fall` consecutive failures mark it down
//! and `rise` consecutive successes mark it up again, so one lost probe never
//! flips it.

use std::time::{Duration, Instant};

/// The outcome of one probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckResult {
    Success,
    Failure,
    Timeout,
}

impl CheckResult {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckResult::Success => "success",
            CheckResult::Failure => "failure",
            CheckResult::Timeout => "timeout",
        }
    }
}

/// A change of verdict caused by one probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Up,
    Down,
}

/// Everything active checks have said about one backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthRecord {
    up: bool,
    consecutive_successes: u32,
    consecutive_failures: u32,
    last_check: Option<Instant>,
    last_result: Option<CheckResult>,
    /// Why the last probe failed; `None` when it passed.
    last_error: Option<String>,
    passed: u64,
    failed: u64,
    timed_out: u64,
    marked_up: u64,
    marked_down: u64,
}

impl Default for HealthRecord {
    fn default() -> Self {
        HealthRecord {
            up: true,
            consecutive_successes: 0,
            consecutive_failures: 0,
            last_check: None,
            last_result: None,
            last_error: None,
            passed: 0,
            failed: 0,
            timed_out: 0,
            marked_up: 0,
            marked_down: 0,
        }
    }
}

impl HealthRecord {
    pub fn is_up(&self) -> bool {
        self.up
    }

    /// Folds one probe result (and the error behind a failure) in; returns the
    /// transition it caused, if any.
    pub fn record(
        &mut self,
        result: CheckResult,
        error: Option<&str>,
        now: Instant,
        rise: u32,
        fall: u32,
    ) -> Option<Transition> {
        self.last_check = Some(now);
        self.last_result = Some(result);
        self.last_error = match result {
            CheckResult::Success => None,
            CheckResult::Failure | CheckResult::Timeout => Some(error.unwrap_or("").to_string()),
        };
        match result {
            CheckResult::Success => {
                self.passed += 1;
                self.consecutive_successes = self.consecutive_successes.saturating_add(1);
                self.consecutive_failures = 0;
            }
            CheckResult::Failure | CheckResult::Timeout => {
                if result == CheckResult::Timeout {
                    self.timed_out += 1;
                } else {
                    self.failed += 1;
                }
                self.consecutive_failures = self.consecutive_failures.saturating_add(1);
                self.consecutive_successes = 0;
            }
        }
        self.transition(rise, fall)
    }

    fn transition(&mut self, rise: u32, fall: u32) -> Option<Transition> {
        if self.up && self.consecutive_failures >= fall {
            self.up = false;
            self.marked_down += 1;
            Some(Transition::Down)
        } else if !self.up && self.consecutive_successes >= rise {
            self.up = true;
            self.marked_up += 1;
            Some(Transition::Up)
        } else {
            None
        }
    }

    /// A frozen copy, with the age of the last check as of `now`.
    pub fn snapshot(&self, now: Instant) -> HealthSnapshot {
        HealthSnapshot {
            up: self.up,
            consecutive_successes: self.consecutive_successes,
            consecutive_failures: self.consecutive_failures,
            last_check_ago: self.last_check.map(|t| now.saturating_duration_since(t)),
            last_result: self.last_result,
            last_error: self.last_error.clone(),
            passed: self.passed,
            failed: self.failed,
            timed_out: self.timed_out,
            marked_up: self.marked_up,
            marked_down: self.marked_down,
        }
    }
}

/// A copy of a backend's health record, for status and metrics readers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthSnapshot {
    pub up: bool,
    pub consecutive_successes: u32,
    pub consecutive_failures: u32,
    /// How long ago the last probe finished; `None` before the first.
    pub last_check_ago: Option<Duration>,
    pub last_result: Option<CheckResult>,
    /// Why the last probe failed; `None` when it passed (or before the first).
    pub last_error: Option<String>,
    pub passed: u64,
    pub failed: u64,
    pub timed_out: u64,
    pub marked_up: u64,
    pub marked_down: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use CheckResult::{Failure, Success, Timeout};

    fn run(results: &[CheckResult], rise: u32, fall: u32) -> (HealthRecord, Vec<Transition>) {
        let mut record = HealthRecord::default();
        let now = Instant::now();
        let transitions = results
            .iter()
            .filter_map(|&r| record.record(r, Some("refused"), now, rise, fall))
            .collect();
        (record, transitions)
    }

    #[test]
    fn starts_up_and_goes_down_after_fall_failures() {
        let (record, transitions) = run(&[Failure, Timeout], 2, 3);
        assert!(record.is_up());
        assert!(transitions.is_empty());
        let (record, transitions) = run(&[Failure, Timeout, Failure], 2, 3);
        assert!(!record.is_up());
        assert_eq!(transitions, [Transition::Down]);
    }

    #[test]
    fn one_failure_among_successes_never_marks_down() {
        let (record, transitions) = run(
            &[Success, Failure, Success, Failure, Failure, Success],
            2,
            3,
        );
        assert!(record.is_up());
        assert!(transitions.is_empty());
    }

    #[test]
    fn comes_back_up_after_rise_successes_only() {
        let (record, transitions) = run(&[Failure, Success, Failure, Success], 2, 1);
        assert!(!record.is_up());
        assert_eq!(transitions, [Transition::Down]);
        let (record, transitions) = run(&[Failure, Success, Success], 2, 1);
        assert!(record.is_up());
        assert_eq!(transitions, [Transition::Down, Transition::Up]);
    }

    #[test]
    fn snapshot_counts_every_result_and_transition() {
        let (record, _) = run(
            &[Success, Failure, Timeout, Failure, Success, Success],
            2,
            2,
        );
        let snapshot = record.snapshot(Instant::now());
        assert_eq!(
            (snapshot.passed, snapshot.failed, snapshot.timed_out),
            (3, 2, 1)
        );
        assert_eq!((snapshot.marked_down, snapshot.marked_up), (1, 1));
        assert_eq!(snapshot.consecutive_successes, 2);
        assert_eq!(snapshot.last_result, Some(Success));
        assert!(snapshot.last_check_ago.is_some());
        assert_eq!(snapshot.last_error, None);
    }

    #[test]
    fn last_error_tells_why_the_last_probe_failed_until_one_passes() {
        let mut record = HealthRecord::default();
        let now = Instant::now();
        let why = "postgres: 57P03 the database system is shutting down";
        record.record(Failure, Some(why), now, 2, 3);
        assert_eq!(record.snapshot(now).last_error.as_deref(), Some(why));
        record.record(Success, None, now, 2, 3);
        assert_eq!(record.snapshot(now).last_error, None);
    }
}
