//! Unit tests of the engine: small scenarios whose outcome follows from the
//! production rules (retries, ejection, reloads, slow start, caps, admin states).

use std::path::Path;
use std::time::Duration;

use super::arrivals::{self, Arrival};
use super::engine::{Scenario, run};
use super::outcome::RunOutcome;
use super::script::{ScriptedEvent, parse_event, resolve_backend};
use super::workload::{BackendModel, SessionLength, WhenFull};
use crate::config::{self, ServiceConfig};

fn service(extra: &str, backends: &[&str]) -> ServiceConfig {
    let mut text = format!("[[service]]\nname = \"web\"\nlisten = \"127.0.0.1:7000\"\n{extra}");
    for b in backends {
        text.push_str(&format!(
            "[[service.backend]]\naddress = \"127.0.0.1:{b}\"\n"
        ));
    }
    let config = config::parse(&text, Path::new("lb.toml")).expect("valid config");
    config.services.into_iter().next().expect("one service")
}

fn events(config: &ServiceConfig, lines: &[&str]) -> Vec<ScriptedEvent<usize>> {
    let addresses: Vec<&str> = config.backends.iter().map(|b| b.address.as_str()).collect();
    let mut previous = None;
    lines
        .iter()
        .map(|line| {
            let event = parse_event(line, previous.as_ref()).expect("event");
            previous = event.action.target().cloned().or(previous.clone());
            let action = event
                .action
                .resolve(|r| resolve_backend(r, &addresses))
                .expect("backend");
            ScriptedEvent {
                at: event.at,
                action,
                text: event.text,
            }
        })
        .collect()
}

fn steady(rate: f64, length: u64, mean_ms: u64) -> Vec<Arrival> {
    let mut rng = fastrand::Rng::with_seed(5);
    let sessions = SessionLength::Exponential {
        mean: Duration::from_millis(mean_ms),
    };
    arrivals::poisson(&mut rng, rate, 500, Duration::from_secs(length), sessions)
}

fn simulate(
    config: &ServiceConfig,
    arrivals: &[Arrival],
    model: BackendModel,
    events: &[ScriptedEvent<usize>],
    length: u64,
) -> RunOutcome {
    let scenario = Scenario {
        config: config.clone(),
        arrivals,
        models: vec![model; config.backends.len()],
        events,
        length: Duration::from_secs(length),
        seed: 11,
    };
    run(&scenario).expect("run")
}

#[test]
fn a_killed_backend_without_checks_is_retried_elsewhere_and_no_client_notices() {
    let config = service("", &["1", "2", "3"]);
    let arrivals = steady(100.0, 20, 200);
    let kill = events(&config, &["at 5s kill backend 2"]);
    let run = simulate(&config, &arrivals, BackendModel::default(), &kill, 20);
    assert!(run.figures[1].refused > 300, "{:?}", run.figures[1]);
    assert_eq!(run.rejected.total(), 0);
    assert_eq!(run.served, run.arrived);
    let one_attempt = service("connect_attempts = 1\n", &["1", "2", "3"]);
    let run = simulate(&one_attempt, &arrivals, BackendModel::default(), &kill, 20);
    assert_eq!(run.rejected.backend_connect, run.figures[1].refused);
    assert!(run.rejected.backend_connect > 300);
}

#[test]
fn passive_checks_eject_a_dead_backend_after_their_streak() {
    let outlier = "[service.outlier]\nconsecutive_failures = 3\nejection_time = \"60s\"\n";
    let config = service(outlier, &["1", "2", "3"]);
    let arrivals = steady(100.0, 20, 200);
    let kill = events(&config, &["at 5s kill backend 2"]);
    let run = simulate(&config, &arrivals, BackendModel::default(), &kill, 20);
    assert_eq!(run.figures[1].refused, 3);
    assert!(run.figures[1].cut > 0);
}

#[test]
fn a_reload_of_the_weight_shifts_new_clients_at_once() {
    let config = service("", &["1", "2"]);
    let arrivals = steady(200.0, 40, 100);
    let reload = events(&config, &["at 20s reload backend 1 weight 3"]);
    let run = simulate(&config, &arrivals, BackendModel::default(), &reload, 40);
    let share = run.figures[0].sessions as f64 / run.served as f64;
    // Half the run at 1/2, half at 3/4.
    assert!((share - 0.625).abs() < 0.02, "{share}");
}

#[test]
fn slow_start_holds_a_returning_backend_back() {
    let health = "[service.health]\ninterval = \"1s\"\nrise = 1\nfall = 1\n";
    let plain = service(health, &["1", "2"]);
    let slow_text =
        format!("{health}[[service.backend]]\naddress = \"127.0.0.1:1\"\nslow_start = \"20s\"\n");
    let slow = service(&slow_text, &["2"]);
    let arrivals = steady(200.0, 40, 100);
    let lines = ["at 5s kill backend 1", "at 10s restore"];
    let fast_run = simulate(
        &plain,
        &arrivals,
        BackendModel::default(),
        &events(&plain, &lines),
        40,
    );
    let slow_run = simulate(
        &slow,
        &arrivals,
        BackendModel::default(),
        &events(&slow, &lines),
        40,
    );
    let (fast, ramped) = (fast_run.figures[0].sessions, slow_run.figures[0].sessions);
    // About 10 s of the 30 s back up are lost to a 20 s linear ramp: ~1/3 of its share.
    assert!(ramped * 10 < fast * 8, "slow start {ramped} vs none {fast}");
    assert!(ramped * 10 > fast * 5, "slow start {ramped} vs none {fast}");
}

#[test]
fn caps_refusals_and_queues_are_counted() {
    let capped = service("max_connections = 10\n", &["1", "2"]);
    let arrivals = steady(100.0, 20, 500);
    let run = simulate(&capped, &arrivals, BackendModel::default(), &[], 20);
    assert!(run.rejected.max_connections > 100, "{:?}", run.rejected);
    let config = service("strategy = \"least_connections\"\n", &["1", "2"]);
    let refusing = BackendModel {
        capacity: 10,
        when_full: WhenFull::Refuse,
        ..BackendModel::default()
    };
    let run = simulate(&config, &arrivals, refusing, &[], 20);
    assert!(
        run.figures
            .iter()
            .all(|f| f.refused > 0 && f.queued == 0 && f.peak_open <= 10)
    );
    let queueing = BackendModel {
        capacity: 10,
        when_full: WhenFull::Queue,
        ..refusing
    };
    let run = simulate(&config, &arrivals, queueing, &[], 20);
    assert!(run.figures.iter().all(|f| f.refused == 0 && f.queued > 0));
    assert_eq!(run.served, run.arrived);
    assert!(run.latency(1.0) > Some(Duration::from_millis(100)));
}

#[test]
fn drain_and_blackhole_behave_as_the_runtime_api_and_a_dead_host_do() {
    let config = service("connect_timeout = \"2s\"\n", &["1", "2"]);
    let arrivals = steady(100.0, 20, 100);
    let drain = events(&config, &["at 0s drain backend 2"]);
    let run = simulate(&config, &arrivals, BackendModel::default(), &drain, 20);
    assert_eq!(run.figures[1].sessions, 0);
    let blackhole = events(&config, &["at 5s blackhole backend 2"]);
    let run = simulate(&config, &arrivals, BackendModel::default(), &blackhole, 20);
    assert!(run.figures[1].refused > 0);
    assert!(
        run.latency(1.0) >= Some(Duration::from_secs(2)),
        "a connect waited out its timeout"
    );
    assert_eq!(run.rejected.total(), 0);
}
