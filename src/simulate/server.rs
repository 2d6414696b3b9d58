//! The simulated server behind one backend address: whether it answers, the
//! sessions it serves and queues, and the time-weighted figures of a run
//! (peak and mean concurrency, utilisation). Pure bookkeeping, no balancing:
//! which backend a client gets is the production service's decision.

use std::collections::{BTreeSet, VecDeque};
use std::time::Duration;

use super::workload::{BackendModel, WhenFull};

/// Why a backend does not answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outage {
    /// Its process died: connects and probes are refused at once.
    Killed,
    /// Its host stopped answering: connects and probes time out.
    Blackholed,
}

/// What the server does with one connect that reached it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Serve,
    Queue,
    Refuse,
}

/// One backend's server and its figures so far.
#[derive(Debug)]
pub struct Server {
    pub model: BackendModel,
    pub outage: Option<Outage>,
    /// Sessions connected to it (served or queued), by session number.
    pub open: BTreeSet<usize>,
    pub serving: u64,
    pub queue: VecDeque<usize>,
    pub figures: Figures,
    /// Figures are averaged over `0..window` (the arrival period).
    window: Duration,
    last_change: Duration,
}

/// What one backend went through in a run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Figures {
    /// Sessions connected to it.
    pub sessions: u64,
    pub peak_open: usize,
    /// Integral of open sessions over time, in session-seconds.
    pub open_seconds: f64,
    /// Integral of sessions being served, in session-seconds.
    pub busy_seconds: f64,
    /// Sessions that waited for a free slot.
    pub queued: u64,
    /// Connects refused or timed out (full, killed or blackholed).
    pub refused: u64,
    /// Sessions cut by an event (kill, blackhole, maint, close_on_down).
    pub cut: u64,
}

impl Server {
    pub fn new(model: BackendModel, window: Duration) -> Server {
        Server {
            model,
            outage: None,
            open: BTreeSet::new(),
            serving: 0,
            queue: VecDeque::new(),
            figures: Figures::default(),
            window,
            last_change: Duration::ZERO,
        }
    }

    /// What a connect reaching the server at this moment gets.
    pub fn answer(&self) -> Answer {
        let full = self.model.capacity > 0 && self.serving >= self.model.capacity;
        match (self.outage, full, self.model.when_full) {
            (Some(_), _, _) => Answer::Refuse,
            (None, false, _) => Answer::Serve,
            (None, true, WhenFull::Queue) => Answer::Queue,
            (None, true, WhenFull::Refuse) => Answer::Refuse,
        }
    }

    /// Folds the time since the last change into the integrals; call before
    /// every change of `open` or `serving`.
    pub fn advance(&mut self, now: Duration) {
        let from = self.last_change.min(self.window);
        let to = now.min(self.window);
        let span = to.saturating_sub(from).as_secs_f64();
        self.figures.open_seconds += span * self.open.len() as f64;
        self.figures.busy_seconds += span * self.serving as f64;
        self.last_change = now;
    }

    /// A session connected at `now`, served at once or queued per `answer`.
    pub fn connect(&mut self, now: Duration, session: usize, answer: Answer) {
        self.advance(now);
        self.open.insert(session);
        self.figures.sessions += 1;
        self.figures.peak_open = self.figures.peak_open.max(self.open.len());
        if answer == Answer::Queue {
            self.queue.push_back(session);
            self.figures.queued += 1;
        } else {
            self.serving += 1;
        }
    }

    /// A served session ended at `now`; returns the queued session that takes
    /// its slot, if any.
    pub fn finish(&mut self, now: Duration, session: usize) -> Option<usize> {
        self.advance(now);
        if !self.open.remove(&session) {
            return None;
        }
        self.serving = self.serving.saturating_sub(1);
        let next = self.queue.pop_front()?;
        self.serving += 1;
        Some(next)
    }

    /// Every open session is cut at `now`; returns them.
    pub fn cut_all(&mut self, now: Duration) -> Vec<usize> {
        self.advance(now);
        let cut: Vec<usize> = std::mem::take(&mut self.open).into_iter().collect();
        self.figures.cut += cut.len() as u64;
        self.serving = 0;
        self.queue.clear();
        cut
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(capacity: u64, when_full: WhenFull) -> Server {
        let model = BackendModel {
            capacity,
            when_full,
            connect_latency: Duration::ZERO,
        };
        Server::new(model, Duration::from_secs(10))
    }

    #[test]
    fn a_full_server_queues_then_hands_the_slot_on() {
        let mut s = server(1, WhenFull::Queue);
        let t = Duration::from_secs;
        assert_eq!(s.answer(), Answer::Serve);
        s.connect(t(0), 1, Answer::Serve);
        assert_eq!(s.answer(), Answer::Queue);
        s.connect(t(1), 2, Answer::Queue);
        assert_eq!(s.finish(t(3), 1), Some(2));
        assert_eq!(s.finish(t(4), 2), None);
        s.advance(t(20));
        assert_eq!(s.figures.peak_open, 2);
        assert_eq!(s.figures.queued, 1);
        // open: 1 for 1s, 2 for 2s, 1 for 1s; busy: 1 for 4s; nothing after 10s counts.
        assert!((s.figures.open_seconds - 6.0).abs() < 1e-9);
        assert!((s.figures.busy_seconds - 4.0).abs() < 1e-9);
    }

    #[test]
    fn refusing_and_dead_servers_refuse() {
        let mut s = server(1, WhenFull::Refuse);
        s.connect(Duration::ZERO, 1, Answer::Serve);
        assert_eq!(s.answer(), Answer::Refuse);
        let mut dead = server(0, WhenFull::Queue);
        dead.outage = Some(Outage::Killed);
        assert_eq!(dead.answer(), Answer::Refuse);
        assert_eq!(s.cut_all(Duration::from_secs(1)), vec![1]);
        assert_eq!((s.figures.cut, s.serving), (1, 0));
    }
}
