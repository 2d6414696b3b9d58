//! `l4lb simulate`: runs one service of a configuration against simulated
//! backends on a virtual clock, to see what a strategy, a weight, a cap or an
//! outage would do before trying it live.
//!
//! The decisions are the production ones: the service's tiers, strategy,
//! admission, slow start, admin states, health (rise/fall) and outlier records
//! are the real modules, driven through their pure interfaces (time and random
//! numbers passed in). What is simulated is only the world around them:
//! arrivals ([`arrivals`], or a replayed access log, [`access_log`]), each
//! backend's server ([`server`]), the clock ([`clock`]) and scripted events
//! ([`script`]). This module reads the inputs, runs one engine per strategy
//! and hands the outcomes to [`report`] and [`plot`].

pub mod access_log;
pub mod arrivals;
pub mod clock;
pub mod engine;
pub mod outcome;
pub mod plot;
pub mod report;
pub mod script;
pub mod server;
pub mod workload;

#[cfg(test)]
mod scenarios;

use std::path::{Path, PathBuf};

use crate::config::{self, ServiceConfig, StrategyKind};
use engine::Scenario;
use outcome::RunOutcome;
use script::{ScriptedEvent, resolve_backend};
use workload::{Arrivals, BackendModel, SessionLength, Workload};

/// What the command line asked for.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub config: PathBuf,
    pub service: String,
    pub workload: Option<PathBuf>,
    pub seed: Option<u64>,
    /// Strategies to run side by side; empty = the service's own.
    pub compare: Vec<String>,
    pub plot: Option<PathBuf>,
    pub json: bool,
}

/// Runs the simulation `options` describe; the text to print, or every error.
pub fn run(options: &Options) -> Result<String, Vec<String>> {
    let config = config::load(&options.config)
        .map_err(|errors| errors.capped_lines(config::SHOWN_ERRORS))?;
    let service = find_service(&config.services, &options.service, &options.config)?;
    let workload = match &options.workload {
        Some(path) => workload::load(path).map_err(|e| e.capped_lines(config::SHOWN_ERRORS))?,
        None => Workload::default(),
    };
    let seed = options.seed.unwrap_or(workload.seed);
    let events = resolve_events(&workload, service)?;
    let models = backend_models(&workload, service)?;
    let strategies = strategies(&options.compare, service)?;
    let (arrivals, description) = arrivals_of(&workload, service, seed).map_err(|e| vec![e])?;
    let mut runs = Vec::new();
    for kind in &strategies {
        let mut config = service.clone();
        config.strategy.kind = *kind;
        let scenario = Scenario {
            config,
            arrivals: &arrivals,
            models: models.clone(),
            events: &events,
            length: workload.length,
            seed,
        };
        runs.push(engine::run(&scenario).map_err(|e| vec![e])?);
    }
    let recorded = recorded_counts(&arrivals, service);
    let context = report::Context {
        config: service,
        workload: description,
        length: workload.length,
        seed,
        events: &events,
        recorded,
        capacities: models.iter().map(|m| m.capacity).collect(),
    };
    if let Some(path) = &options.plot {
        let names: Vec<String> = service.backends.iter().map(|b| b.address.clone()).collect();
        plot::write(path, &names, &events, &runs).map_err(|e| vec![e])?;
    }
    Ok(render(options, &context, &runs))
}

fn render(options: &Options, context: &report::Context<'_>, runs: &[RunOutcome]) -> String {
    if options.json {
        return format!("{}\n", report::json(context, runs));
    }
    match runs {
        [one] if options.compare.is_empty() => report::text(context, one),
        _ => report::comparison(context, runs),
    }
}

fn find_service<'a>(
    services: &'a [ServiceConfig],
    name: &str,
    path: &Path,
) -> Result<&'a ServiceConfig, Vec<String>> {
    services.iter().find(|s| s.name == name).ok_or_else(|| {
        let names: Vec<String> = services.iter().map(|s| format!("\"{}\"", s.name)).collect();
        vec![format!(
            "{}: --service: no service named \"{name}\"; the configuration has {}",
            path.display(),
            names.join(", ")
        )]
    })
}

fn resolve_events(
    workload: &Workload,
    service: &ServiceConfig,
) -> Result<Vec<ScriptedEvent<usize>>, Vec<String>> {
    let addresses: Vec<&str> = service
        .backends
        .iter()
        .map(|b| b.address.as_str())
        .collect();
    let mut errors = Vec::new();
    let mut events = Vec::new();
    for located in &workload.events {
        let event = &located.value;
        match event.action.resolve(|r| resolve_backend(r, &addresses)) {
            Ok(action) => events.push(ScriptedEvent {
                at: event.at,
                action,
                text: event.text.clone(),
            }),
            Err(e) => errors.push(format!(
                "{}: events: \"{}\": {e}",
                located.place, event.text
            )),
        }
    }
    if errors.is_empty() {
        Ok(events)
    } else {
        Err(errors)
    }
}

fn backend_models(
    workload: &Workload,
    service: &ServiceConfig,
) -> Result<Vec<BackendModel>, Vec<String>> {
    let mut models = vec![workload.backend_defaults; service.backends.len()];
    let mut errors = Vec::new();
    for own in &workload.backend_overrides {
        match service
            .backends
            .iter()
            .position(|b| b.address == own.address.value)
        {
            Some(i) => models[i] = own.model,
            None => errors.push(format!(
                "{}: backend.address: \"{}\" is not a backend of service \"{}\"",
                own.address.place, own.address.value, service.name
            )),
        }
    }
    if errors.is_empty() {
        Ok(models)
    } else {
        Err(errors)
    }
}

/// The strategies `--compare` names (the service's own without it).
fn strategies(names: &[String], service: &ServiceConfig) -> Result<Vec<StrategyKind>, Vec<String>> {
    if names.is_empty() {
        return Ok(vec![service.strategy.kind]);
    }
    let slow_start = service
        .backends
        .iter()
        .position(|b| !b.slow_start.is_zero());
    let mut errors = Vec::new();
    let mut kinds = Vec::new();
    for name in names {
        match StrategyKind::from_name(name) {
            Some(kind) if kind.is_hashing() && slow_start.is_some() => errors.push(format!(
                "--compare {name}: service \"{}\".backend[{}].slow_start is not allowed with a hashing strategy",
                service.name,
                slow_start.unwrap_or(0)
            )),
            Some(kind) => kinds.push(kind),
            None => {
                let known: Vec<&str> = StrategyKind::ALL.iter().map(|k| k.as_str()).collect();
                errors.push(format!("--compare: unknown strategy \"{name}\"; expected one of {}", known.join(", ")));
            }
        }
    }
    if errors.is_empty() {
        Ok(kinds)
    } else {
        Err(errors)
    }
}

/// The run's arrivals and one line describing them.
fn arrivals_of(
    workload: &Workload,
    service: &ServiceConfig,
    seed: u64,
) -> Result<(Vec<arrivals::Arrival>, String), String> {
    match &workload.arrivals {
        Arrivals::Poisson { rate, clients } => {
            let mut rng = fastrand::Rng::with_seed(seed);
            let list = arrivals::poisson(
                &mut rng,
                *rate,
                *clients,
                workload.length,
                workload.sessions,
            );
            let line = format!(
                "Poisson arrivals at {rate}/s from {clients} clients, sessions {}; {}",
                describe_sessions(workload.sessions),
                describe_model(&workload.backend_defaults)
            );
            Ok((list, line))
        }
        Arrivals::Replay { path } => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("{}: cannot read the access log: {e}", path.display()))?;
            let file = path.display().to_string();
            let sessions = access_log::parse(&text, &file, &service.name)?;
            if sessions.is_empty() {
                return Err(format!(
                    "{file}: no access-log line of service \"{}\"",
                    service.name
                ));
            }
            let line = format!(
                "replay of {file}: {} sessions; {}",
                sessions.len(),
                describe_model(&workload.backend_defaults)
            );
            Ok((arrivals::replayed(sessions), line))
        }
    }
}

fn describe_sessions(sessions: SessionLength) -> String {
    let show = |d: std::time::Duration| humantime::format_duration(d).to_string();
    match sessions {
        SessionLength::Fixed(d) => format!("fixed {}", show(d)),
        SessionLength::Exponential { mean } => format!("exponential, mean {}", show(mean)),
        SessionLength::LogNormal { mean, sigma } => {
            format!("log-normal, mean {}, sigma {sigma}", show(mean))
        }
    }
}

fn describe_model(model: &BackendModel) -> String {
    let capacity = match model.capacity {
        0 => "unlimited capacity".to_string(),
        n => format!(
            "capacity {n} ({})",
            match model.when_full {
                workload::WhenFull::Queue => "queue when full",
                workload::WhenFull::Refuse => "refuse when full",
            }
        ),
    };
    format!(
        "backends: {capacity}, connect latency {}",
        humantime::format_duration(model.connect_latency)
    )
}

/// Replays: the sessions the log recorded on each of the service's backends.
fn recorded_counts(arrivals: &[arrivals::Arrival], service: &ServiceConfig) -> Option<Vec<u64>> {
    let mut counts = vec![0; service.backends.len()];
    let mut any = false;
    for recorded in arrivals
        .iter()
        .filter_map(|a| a.recorded_backend.as_deref())
    {
        any = true;
        if let Some(i) = service.backends.iter().position(|b| b.address == recorded) {
            counts[i] += 1;
        }
    }
    any.then_some(counts)
}
