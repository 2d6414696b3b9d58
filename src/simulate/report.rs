//! Turns simulated runs into what `l4lb simulate` prints: a text report (per
//! backend table, events, rejections, latency percentiles), a side-by-side
//! table for `--compare`, or one JSON document for scripts. Pure formatting;
//! iteration orders are fixed, so one seed prints one output.

use std::fmt::Write;
use std::time::Duration;

use serde_json::{Value, json};

use super::engine::event_target;
use super::outcome::{EventOutcome, RunOutcome};
use super::script::ScriptedEvent;
use crate::config::ServiceConfig;

/// The percentiles of session-start latency that are reported.
const PERCENTILES: [(&str, f64); 4] = [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99.9", 0.999)];

/// What the runs were about, beside their outcomes.
#[derive(Debug)]
pub struct Context<'a> {
    pub config: &'a ServiceConfig,
    /// One line describing the workload.
    pub workload: String,
    pub length: Duration,
    pub seed: u64,
    pub events: &'a [ScriptedEvent<usize>],
    /// Replays: sessions the log recorded per backend.
    pub recorded: Option<Vec<u64>>,
    /// Backends' server capacities (0 = unlimited).
    pub capacities: Vec<u64>,
}

/// The text report of one run.
pub fn text(context: &Context<'_>, run: &RunOutcome) -> String {
    let mut out = header(context, &[run]);
    out.push('\n');
    out.push_str(&backend_table(context, run));
    if !context.events.is_empty() {
        out.push_str("\nevents:\n");
        for (event, outcome) in context.events.iter().zip(&run.events) {
            let _ = writeln!(out, "  {}", event_line(context, event, outcome));
        }
    }
    let r = run.rejected;
    let _ = writeln!(
        out,
        "\nclients: {} arrived, {} served, {} rejected (no_backend {}, max_connections {}, backend_connect {})",
        run.arrived,
        run.served,
        r.total(),
        r.no_backend,
        r.max_connections,
        r.backend_connect
    );
    let _ = writeln!(out, "session-start latency: {}", latency_line(run));
    out
}

/// The `--compare` table: one row per strategy.
pub fn comparison(context: &Context<'_>, runs: &[RunOutcome]) -> String {
    let mut out = header(context, &runs.iter().collect::<Vec<_>>());
    let _ = writeln!(
        out,
        "\n{:<20} {:>8} {:>8} {:>9} {:>9} {:>8} {:>10} {:>10} {:>10}  moved by each event",
        "strategy", "served", "rejected", "max peak", "max mean", "max util", "p50", "p99", "max"
    );
    for run in runs {
        let max_mean = means(context, run).into_iter().fold(0.0, f64::max);
        let moved: Vec<String> = run
            .events
            .iter()
            .map(|e| format!("{}/{}", e.moved, e.seen))
            .collect();
        let _ = writeln!(
            out,
            "{:<20} {:>8} {:>8} {:>9} {:>9.2} {:>8} {:>10} {:>10} {:>10}  {}",
            run.strategy.as_str(),
            run.served,
            run.rejected.total(),
            run.max_peak(),
            max_mean,
            max_utilisation(context, run),
            millis(run.latency(0.5)),
            millis(run.latency(0.99)),
            millis(run.latency(1.0)),
            if moved.is_empty() {
                "-".to_string()
            } else {
                moved.join(", ")
            }
        );
    }
    out
}

fn header(context: &Context<'_>, runs: &[&RunOutcome]) -> String {
    let strategies: Vec<&str> = runs.iter().map(|r| r.strategy.as_str()).collect();
    let finished = runs.iter().map(|r| r.finished_at).max().unwrap_or_default();
    format!(
        "simulated service \"{}\" ({}), {} backends: {} of arrivals, seed {}, last session ended at {:.3}s\nworkload: {}\n",
        context.config.name,
        strategies.join(", "),
        context.config.backends.len(),
        humantime::format_duration(context.length),
        context.seed,
        finished.as_secs_f64(),
        context.workload
    )
}

fn backend_table(context: &Context<'_>, run: &RunOutcome) -> String {
    let mut out = format!(
        "{:<24} {:>6} {:>9} {:>6} {:>8} {:>7} {:>7} {:>8} {:>6}",
        "backend", "weight", "sessions", "peak", "mean", "util", "queued", "refused", "cut"
    );
    if context.recorded.is_some() {
        out.push_str(" recorded");
    }
    out.push('\n');
    let means = means(context, run);
    for (i, (backend, f)) in context.config.backends.iter().zip(&run.figures).enumerate() {
        let _ = write!(
            out,
            "{:<24} {:>6} {:>9} {:>6} {:>8.2} {:>7} {:>7} {:>8} {:>6}",
            backend.address,
            backend.weight,
            f.sessions,
            f.peak_open,
            means[i],
            utilisation(context, run, i).map_or("-".to_string(), |u| format!("{:.1}%", u * 100.0)),
            f.queued,
            f.refused,
            f.cut
        );
        if let Some(recorded) = &context.recorded {
            let _ = write!(out, " {:>8}", recorded[i]);
        }
        out.push('\n');
    }
    out
}

fn event_line(
    context: &Context<'_>,
    event: &ScriptedEvent<usize>,
    outcome: &EventOutcome,
) -> String {
    let share = |n: usize| match outcome.seen {
        0 => 0.0,
        seen => 100.0 * n as f64 / seen as f64,
    };
    let mut line = format!(
        "{}: {} sessions cut; clients moved: {} of {} seen before and after ({:.1}%)",
        event.text,
        outcome.cut,
        outcome.moved,
        outcome.seen,
        share(outcome.moved)
    );
    if let Some(b) = event_target(event).and_then(|b| context.config.backends.get(b)) {
        let _ = write!(
            line,
            "; {} of them had been on {}",
            outcome.on_target, b.address
        );
    }
    if !context.config.strategy.kind.is_hashing() {
        line.push_str(" (not a hashing strategy: clients are not kept on one backend)");
    }
    line
}

fn latency_line(run: &RunOutcome) -> String {
    let mut parts: Vec<String> = PERCENTILES
        .iter()
        .map(|(name, q)| format!("{name} {}", millis(run.latency(*q))))
        .collect();
    parts.push(format!("max {}", millis(run.latency(1.0))));
    parts.join("  ")
}

fn millis(d: Option<Duration>) -> String {
    d.map_or("-".to_string(), |d| {
        format!("{:.3}ms", d.as_secs_f64() * 1000.0)
    })
}

/// Mean open sessions per backend over the arrival period.
fn means(context: &Context<'_>, run: &RunOutcome) -> Vec<f64> {
    let seconds = context.length.as_secs_f64().max(f64::MIN_POSITIVE);
    run.figures
        .iter()
        .map(|f| f.open_seconds / seconds)
        .collect()
}

/// Share of its capacity backend `i` kept busy, when it has a capacity.
fn utilisation(context: &Context<'_>, run: &RunOutcome, i: usize) -> Option<f64> {
    let capacity = *context.capacities.get(i).filter(|c| **c > 0)?;
    let seconds = context.length.as_secs_f64().max(f64::MIN_POSITIVE);
    Some(run.figures[i].busy_seconds / (capacity as f64 * seconds))
}

fn max_utilisation(context: &Context<'_>, run: &RunOutcome) -> String {
    let most = (0..run.figures.len())
        .filter_map(|i| utilisation(context, run, i))
        .fold(None, |m: Option<f64>, u| Some(m.map_or(u, |m| m.max(u))));
    most.map_or("-".to_string(), |u| format!("{:.1}%", u * 100.0))
}

/// Every run as one JSON document.
pub fn json(context: &Context<'_>, runs: &[RunOutcome]) -> Value {
    json!({
        "service": context.config.name,
        "workload": context.workload,
        "length_seconds": context.length.as_secs_f64(),
        "seed": context.seed,
        "runs": runs.iter().map(|r| run_json(context, r)).collect::<Vec<_>>(),
    })
}

fn run_json(context: &Context<'_>, run: &RunOutcome) -> Value {
    let means = means(context, run);
    let backends: Vec<Value> = context
        .config
        .backends
        .iter()
        .zip(&run.figures)
        .enumerate()
        .map(|(i, (b, f))| {
            json!({
                "address": b.address, "weight": b.weight, "sessions": f.sessions,
                "peak": f.peak_open, "mean": means[i], "utilisation": utilisation(context, run, i),
                "queued": f.queued, "refused": f.refused, "cut": f.cut,
                "recorded": context.recorded.as_ref().map(|r| r[i]),
            })
        })
        .collect();
    let events: Vec<Value> = context
        .events
        .iter()
        .zip(&run.events)
        .map(|(e, o)| {
            json!({"event": e.text, "at_seconds": e.at.as_secs_f64(), "cut": o.cut,
                   "seen": o.seen, "moved": o.moved, "on_target": o.on_target})
        })
        .collect();
    let mut latency = serde_json::Map::new();
    for (name, q) in PERCENTILES.iter().chain(&[("max", 1.0)]) {
        latency.insert(
            format!("{name}_ms"),
            json!(run.latency(*q).map(|d| d.as_secs_f64() * 1000.0)),
        );
    }
    let r = run.rejected;
    json!({
        "strategy": run.strategy.as_str(),
        "arrived": run.arrived, "served": run.served,
        "rejected": {"no_backend": r.no_backend, "max_connections": r.max_connections,
                     "backend_connect": r.backend_connect},
        "max_peak": run.max_peak(),
        "finished_at_seconds": run.finished_at.as_secs_f64(),
        "backends": backends, "events": events, "start_latency": latency,
    })
}
