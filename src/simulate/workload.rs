//! The workload file of `l4lb simulate`: TOML read into raw structs (unknown keys
//! are errors), then checked into a [`Workload`], every mistake collected and
//! pinned to `file:line:column` and its key path, as `l4lb check` does for
//! `lb.toml`. This file owns the format and its defaults; it does no simulation.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::script::{ScriptedEvent, parse_event};
use crate::config::ConfigErrors;
use crate::config::report::Report;
use crate::config::values::parse_duration;

/// How long arrivals go on when the file does not say.
pub const DEFAULT_LENGTH: Duration = Duration::from_secs(60);
/// Distinct client addresses a Poisson workload may have: the 198.18.0.0/15
/// benchmarking range (addresses are labels to hash; nothing is sent to them).
pub const MAX_CLIENTS: u32 = 131_072;
/// Arrivals are generated up front; past this many the run is refused.
pub const MAX_ARRIVALS: f64 = 5_000_000.0;

/// A checked workload.
#[derive(Debug, Clone, PartialEq)]
pub struct Workload {
    /// How long clients keep arriving (sessions then run to their end).
    pub length: Duration,
    /// The seed when `--seed` gives none.
    pub seed: u64,
    pub arrivals: Arrivals,
    pub sessions: SessionLength,
    /// What every backend is like unless a `[[backend]]` entry says otherwise.
    pub backend_defaults: BackendModel,
    pub backend_overrides: Vec<BackendOverride>,
    pub events: Vec<Located<ScriptedEvent>>,
}

/// A value and where it was written (`file:line:col`), for later messages.
#[derive(Debug, Clone, PartialEq)]
pub struct Located<T> {
    pub value: T,
    pub place: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Arrivals {
    /// Poisson arrivals at `rate` per second from `clients` distinct addresses.
    Poisson { rate: f64, clients: u32 },
    /// The sessions of an l4lb JSON access log, at their recorded times.
    Replay { path: PathBuf },
}

/// How long each session lasts (Poisson arrivals only; replays use the log's).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SessionLength {
    Fixed(Duration),
    Exponential {
        mean: Duration,
    },
    /// `mean` is the arithmetic mean; `sigma` the standard deviation of ln(duration).
    LogNormal {
        mean: Duration,
        sigma: f64,
    },
}

/// What happens when a backend already serves `capacity` sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenFull {
    /// The session waits (accepted by the kernel, not yet served).
    Queue,
    /// The connect is refused.
    Refuse,
}

/// The simulated server behind one backend address.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BackendModel {
    /// Sessions served at once; 0 = unlimited.
    pub capacity: u64,
    pub when_full: WhenFull,
    /// Time a connect takes (a refused one too).
    pub connect_latency: Duration,
}

impl Default for BackendModel {
    fn default() -> Self {
        BackendModel {
            capacity: 0,
            when_full: WhenFull::Queue,
            connect_latency: Duration::from_millis(1),
        }
    }
}

/// A `[[backend]]` entry: one backend's own model.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendOverride {
    pub address: Located<String>,
    pub model: BackendModel,
}

impl Default for Workload {
    fn default() -> Self {
        Workload {
            length: DEFAULT_LENGTH,
            seed: 1,
            arrivals: Arrivals::Poisson {
                rate: 100.0,
                clients: 1000,
            },
            sessions: SessionLength::Exponential {
                mean: Duration::from_secs(1),
            },
            backend_defaults: BackendModel::default(),
            backend_overrides: Vec::new(),
            events: Vec::new(),
        }
    }
}

type Field<T> = Option<Spanned<T>>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWorkload {
    length: Field<String>,
    seed: Field<u64>,
    events: Option<Vec<Spanned<String>>>,
    arrivals: Option<RawArrivals>,
    sessions: Option<Spanned<RawSessions>>,
    backends: Option<RawModel>,
    backend: Option<Vec<RawBackend>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawArrivals {
    rate: Field<f64>,
    clients: Field<i64>,
    replay: Field<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSessions {
    distribution: Field<String>,
    mean: Field<String>,
    sigma: Field<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    capacity: Field<i64>,
    when_full: Field<String>,
    connect_latency: Field<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackend {
    address: Spanned<String>,
    capacity: Field<i64>,
    when_full: Field<String>,
    connect_latency: Field<String>,
}

impl RawBackend {
    fn model(&self) -> RawModel {
        RawModel {
            capacity: self.capacity.clone(),
            when_full: self.when_full.clone(),
            connect_latency: self.connect_latency.clone(),
        }
    }
}

/// Reads and checks the workload file at `path`.
pub fn load(path: &Path) -> Result<Workload, ConfigErrors> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigErrors::about_file(path, format!("cannot read: {e}")))?;
    parse(&text, path)
}

/// Checks workload `text`; `path` names it in messages and anchors a relative
/// `replay` path.
pub fn parse(text: &str, path: &Path) -> Result<Workload, ConfigErrors> {
    let mut report = Report::new(path.display().to_string(), text);
    let raw: RawWorkload = match toml::from_str(text) {
        Ok(raw) => raw,
        Err(e) => {
            report.error(e.span(), "", e.message().to_string());
            return Err(report.into_errors());
        }
    };
    let workload = Checker {
        report: &mut report,
        base: path.parent().unwrap_or(Path::new("")),
        file: path.display().to_string(),
    }
    .workload(raw);
    if report.has_errors() {
        return Err(report.into_errors());
    }
    Ok(workload)
}

struct Checker<'r, 'a> {
    report: &'r mut Report<'a>,
    base: &'r Path,
    file: String,
}

impl Checker<'_, '_> {
    fn workload(&mut self, raw: RawWorkload) -> Workload {
        let defaults = Workload::default();
        let length = self.duration(raw.length.as_ref(), "length", false);
        let length = length.unwrap_or(defaults.length);
        let arrivals = raw
            .arrivals
            .map_or(defaults.arrivals.clone(), |a| self.arrivals(a));
        let replaying = matches!(arrivals, Arrivals::Replay { .. });
        let sessions = match raw.sessions {
            Some(s) if replaying => {
                let message = "not with arrivals.replay: a replay takes each session's \
                               duration from the log";
                self.report.at(&s.span(), "sessions", message);
                defaults.sessions
            }
            Some(s) => self.sessions(s.into_inner()),
            None => defaults.sessions,
        };
        let backend_defaults = raw.backends.map_or(BackendModel::default(), |m| {
            self.model(&m, "backends", None)
        });
        let backend_overrides = raw
            .backend
            .unwrap_or_default()
            .iter()
            .enumerate()
            .map(|(i, b)| self.backend(b, i, backend_defaults))
            .collect();
        let events = self.events(raw.events.unwrap_or_default(), length);
        if let Arrivals::Poisson { rate, .. } = arrivals
            && rate * length.as_secs_f64() > MAX_ARRIVALS
        {
            let message = format!(
                "rate x length is {:.0} arrivals, more than the {MAX_ARRIVALS} a run may have",
                rate * length.as_secs_f64()
            );
            self.report.error(None, "arrivals.rate", message);
        }
        Workload {
            length,
            seed: raw.seed.map_or(defaults.seed, Spanned::into_inner),
            arrivals,
            sessions,
            backend_defaults,
            backend_overrides,
            events,
        }
    }

    fn place(&self, span: &std::ops::Range<usize>) -> String {
        let p = self.report.position(span.start);
        format!("{}:{}:{}", self.file, p.line, p.column)
    }

    fn duration(
        &mut self,
        field: Option<&Spanned<String>>,
        key: &str,
        zero: bool,
    ) -> Option<Duration> {
        let field = field?;
        match parse_duration(field.get_ref(), zero) {
            Ok(d) => Some(d),
            Err(message) => {
                self.report.at(&field.span(), key, message);
                None
            }
        }
    }

    fn arrivals(&mut self, raw: RawArrivals) -> Arrivals {
        if let Some(replay) = &raw.replay {
            for (written, key) in [
                (raw.rate.is_some(), "rate"),
                (raw.clients.is_some(), "clients"),
            ] {
                if written {
                    let message = format!("not with replay: the log gives the {key}");
                    self.report
                        .at(&replay.span(), &format!("arrivals.{key}"), message);
                }
            }
            return Arrivals::Replay {
                path: self.base.join(replay.get_ref()),
            };
        }
        let rate = match &raw.rate {
            Some(r) if !(r.get_ref().is_finite() && *r.get_ref() > 0.0) => {
                let message = format!(
                    "must be a number of sessions per second above 0, got {}",
                    r.get_ref()
                );
                self.report.at(&r.span(), "arrivals.rate", message);
                1.0
            }
            Some(r) => *r.get_ref(),
            None => 100.0,
        };
        let clients = match &raw.clients {
            Some(c) if !(1..=i64::from(MAX_CLIENTS)).contains(c.get_ref()) => {
                let message = format!("must be between 1 and {MAX_CLIENTS}, got {}", c.get_ref());
                self.report.at(&c.span(), "arrivals.clients", message);
                1
            }
            Some(c) => *c.get_ref() as u32,
            None => 1000,
        };
        Arrivals::Poisson { rate, clients }
    }

    fn sessions(&mut self, raw: RawSessions) -> SessionLength {
        let mean = self.duration(raw.mean.as_ref(), "sessions.mean", false);
        let mean = mean.unwrap_or(Duration::from_secs(1));
        let sigma = match &raw.sigma {
            Some(s) if !(s.get_ref().is_finite() && (0.0..=10.0).contains(s.get_ref())) => {
                let message = format!("must be between 0 and 10, got {}", s.get_ref());
                self.report.at(&s.span(), "sessions.sigma", message);
                1.0
            }
            Some(s) => *s.get_ref(),
            None => 1.0,
        };
        let kind = raw
            .distribution
            .as_ref()
            .map_or("exponential", |d| d.get_ref().as_str());
        match kind {
            "fixed" => SessionLength::Fixed(mean),
            "exponential" => SessionLength::Exponential { mean },
            "lognormal" => SessionLength::LogNormal { mean, sigma },
            other => {
                let message = format!(
                    "must be one of \"fixed\", \"exponential\", \"lognormal\"; got \"{other}\""
                );
                let span = raw.distribution.as_ref().map(Spanned::span);
                self.report.error(span, "sessions.distribution", message);
                SessionLength::Exponential { mean }
            }
        }
    }

    fn model(&mut self, raw: &RawModel, path: &str, base: Option<BackendModel>) -> BackendModel {
        let mut model = base.unwrap_or_default();
        if let Some(c) = &raw.capacity {
            match u64::try_from(*c.get_ref()) {
                Ok(capacity) => model.capacity = capacity,
                Err(_) => {
                    let message = format!("must be 0 (unlimited) or more, got {}", c.get_ref());
                    self.report
                        .at(&c.span(), &format!("{path}.capacity"), message);
                }
            }
        }
        if let Some(w) = &raw.when_full {
            match w.get_ref().as_str() {
                "queue" => model.when_full = WhenFull::Queue,
                "refuse" => model.when_full = WhenFull::Refuse,
                other => {
                    let message = format!("must be one of \"queue\", \"refuse\"; got \"{other}\"");
                    self.report
                        .at(&w.span(), &format!("{path}.when_full"), message);
                }
            }
        }
        let key = format!("{path}.connect_latency");
        if let Some(latency) = self.duration(raw.connect_latency.as_ref(), &key, true) {
            model.connect_latency = latency;
        }
        model
    }

    fn backend(&mut self, raw: &RawBackend, i: usize, defaults: BackendModel) -> BackendOverride {
        let path = format!("backend[{i}]");
        BackendOverride {
            address: Located {
                value: raw.address.get_ref().clone(),
                place: self.place(&raw.address.span()),
            },
            model: self.model(&raw.model(), &path, Some(defaults)),
        }
    }

    fn events(
        &mut self,
        lines: Vec<Spanned<String>>,
        length: Duration,
    ) -> Vec<Located<ScriptedEvent>> {
        let mut events = Vec::new();
        let mut previous = None;
        for (i, line) in lines.iter().enumerate() {
            let key = format!("events[{i}]");
            match parse_event(line.get_ref(), previous.as_ref()) {
                Ok(event) if event.at > length => {
                    let message = format!(
                        "at {} is after the end of the run (length {})",
                        humantime::format_duration(event.at),
                        humantime::format_duration(length)
                    );
                    self.report.at(&line.span(), &key, message);
                }
                Ok(event) => {
                    previous = event.action.target().cloned().or(previous);
                    let place = self.place(&line.span());
                    events.push(Located {
                        value: event,
                        place,
                    });
                }
                Err(message) => self.report.at(&line.span(), &key, message),
            }
        }
        events.sort_by_key(|e| e.value.at);
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_text(text: &str) -> Result<Workload, Vec<String>> {
        parse(text, Path::new("w.toml")).map_err(|e| e.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn an_empty_file_is_the_default_workload() {
        assert_eq!(parse_text("").unwrap(), Workload::default());
    }

    #[test]
    fn every_key_is_read() {
        let workload = parse_text(
            "length = \"2m\"\nseed = 7\nevents = [\"at 30s kill backend 2\", \"at 1m restore\"]\n\
             [arrivals]\nrate = 250.5\nclients = 20\n\
             [sessions]\ndistribution = \"lognormal\"\nmean = \"3s\"\nsigma = 0.5\n\
             [backends]\ncapacity = 10\nwhen_full = \"refuse\"\nconnect_latency = \"2ms\"\n\
             [[backend]]\naddress = \"10.0.0.1:80\"\ncapacity = 3\n",
        )
        .unwrap();
        assert_eq!(workload.length, Duration::from_secs(120));
        assert_eq!(workload.seed, 7);
        assert_eq!(
            workload.arrivals,
            Arrivals::Poisson {
                rate: 250.5,
                clients: 20
            }
        );
        assert_eq!(
            workload.sessions,
            SessionLength::LogNormal {
                mean: Duration::from_secs(3),
                sigma: 0.5
            }
        );
        let model = workload.backend_defaults;
        assert_eq!((model.capacity, model.when_full), (10, WhenFull::Refuse));
        let own = &workload.backend_overrides[0];
        assert_eq!(own.address.value, "10.0.0.1:80");
        assert_eq!(own.address.place, "w.toml:16:11");
        assert_eq!(
            (own.model.capacity, own.model.when_full),
            (3, WhenFull::Refuse)
        );
        assert_eq!(own.model.connect_latency, Duration::from_millis(2));
        assert_eq!(workload.events.len(), 2);
        assert_eq!(workload.events[0].place, "w.toml:3:11");
    }

    #[test]
    fn every_mistake_is_reported_with_its_place() {
        let errors = parse_text(
            "length = \"forever\"\nevents = [\"at 2h kill backend 1\", \"at 1s jump\"]\n\
             [arrivals]\nrate = -1.0\n[sessions]\ndistribution = \"pareto\"\n\
             [backends]\ncapacity = -2\nwhen_full = \"drop\"\n",
        )
        .unwrap_err();
        let expected = [
            "w.toml:1:10: length: invalid duration",
            "w.toml:2:11: events[0]: at 2h is after the end of the run (length 1m)",
            "w.toml:2:35: events[1]: unknown action \"jump\"",
            "w.toml:4:8: arrivals.rate: must be a number of sessions per second above 0",
            "w.toml:6:16: sessions.distribution: must be one of",
            "w.toml:8:12: backends.capacity: must be 0 (unlimited) or more, got -2",
            "w.toml:9:13: backends.when_full: must be one of \"queue\", \"refuse\"",
        ];
        for want in expected {
            assert!(
                errors.iter().any(|e| e.starts_with(want)),
                "{want} not in {errors:#?}"
            );
        }
        assert_eq!(errors.len(), expected.len(), "{errors:#?}");
    }

    #[test]
    fn unknown_keys_and_replay_conflicts_are_errors() {
        let errors = parse_text("[arrivals]\nrat = 5\n").unwrap_err();
        assert!(
            errors[0].starts_with("w.toml:2:1: unknown field `rat`"),
            "{errors:?}"
        );
        let errors =
            parse_text("[arrivals]\nreplay = \"a.log\"\nrate = 5.0\n[sessions]\nmean = \"1s\"\n")
                .unwrap_err();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors[0].contains("arrivals.rate: not with replay"),
            "{errors:?}"
        );
        assert!(
            errors[1].contains("sessions: not with arrivals.replay"),
            "{errors:?}"
        );
    }
}
