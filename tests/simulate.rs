//! `l4lb simulate`, through the real binary: the known results of load-balancing
//! theory reproduced by l4lb's own strategies (equal round-robin shares, the
//! power of two choices, how many clients a hash moves when a backend dies), a
//! replay of a real l4lb's access log, determinism for a seed, and clear errors.

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;

use common::PATIENCE;
use common::binary::{BIN, l4lb_within_patience, tag_server, temp_dir};
use common::ports::free_port;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write file");
    path
}

/// A service `web` with `backends` backends (nothing listens there: the
/// simulator never connects).
fn service_config(strategy: &str, backends: usize, extra: &str) -> String {
    let mut text = format!(
        "[[service]]\nname = \"web\"\nlisten = \"127.0.0.1:7000\"\nstrategy = \"{strategy}\"\n{extra}"
    );
    for i in 0..backends {
        text.push_str(&format!(
            "[[service.backend]]\naddress = \"127.0.0.1:{}\"\n",
            7100 + i
        ));
    }
    text
}

/// Runs l4lb with `args` to its end, killing it (and failing) past PATIENCE.
fn l4lb(args: &[&str]) -> Output {
    l4lb_within_patience(args, &[])
}

/// `l4lb simulate CONFIG --service web ARGS... --json`, which must succeed.
fn simulate_json(config: &Path, args: &[&str]) -> Value {
    let mut all = vec![
        "simulate",
        config.to_str().expect("utf-8"),
        "--service",
        "web",
        "--json",
    ];
    all.extend_from_slice(args);
    let out = l4lb(&all);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "simulate {args:?} failed: {stderr}");
    serde_json::from_slice(&out.stdout).expect("one JSON document")
}

fn run_of<'a>(report: &'a Value, strategy: &str) -> &'a Value {
    report["runs"]
        .as_array()
        .and_then(|runs| runs.iter().find(|r| r["strategy"] == strategy))
        .unwrap_or_else(|| panic!("no run of {strategy} in {report}"))
}

fn sessions_per_backend(run: &Value) -> Vec<u64> {
    let backends = run["backends"].as_array().expect("backends");
    backends
        .iter()
        .map(|b| b["sessions"].as_u64().expect("sessions"))
        .collect()
}

#[test]
fn round_robin_with_equal_weights_gives_equal_shares_within_one() {
    let dir = temp_dir("simulate-rr");
    let config = write(&dir, "lb.toml", &service_config("round_robin", 5, ""));
    let workload = write(
        &dir,
        "w.toml",
        "length = \"30s\"\n[arrivals]\nrate = 333.0\n[sessions]\ndistribution = \"lognormal\"\nmean = \"2s\"\nsigma = 1.2\n",
    );
    let report = simulate_json(&config, &["--workload", workload.to_str().expect("utf-8")]);
    let run = run_of(&report, "round_robin");
    let sessions = sessions_per_backend(run);
    let total: u64 = sessions.iter().sum();
    assert!(total > 9_000, "{sessions:?}");
    assert_eq!(total, run["served"].as_u64().expect("served"));
    let (least, most) = (sessions.iter().min(), sessions.iter().max());
    assert!(
        most.zip(least).is_some_and(|(m, l)| m - l <= 1),
        "{sessions:?}"
    );
}

#[test]
fn power_of_two_keeps_the_max_load_far_below_random_at_high_utilisation() {
    let dir = temp_dir("simulate-p2c");
    let config = write(&dir, "lb.toml", &service_config("random", 20, ""));
    // 20 single-slot servers that queue, offered 95% of what they can serve:
    // the supermarket model of Mitzenmacher's "power of two choices".
    let workload = write(
        &dir,
        "w.toml",
        "length = \"200s\"\n[arrivals]\nrate = 190.0\n[sessions]\nmean = \"100ms\"\n\
         [backends]\ncapacity = 1\nwhen_full = \"queue\"\nconnect_latency = \"0s\"\n",
    );
    let workload = workload.to_str().expect("utf-8");
    let report = simulate_json(
        &config,
        &["--workload", workload, "--compare", "random,power_of_two"],
    );
    let random = run_of(&report, "random");
    let two = run_of(&report, "power_of_two");
    let mean_utilisation = |run: &Value| {
        let backends = run["backends"].as_array().expect("backends");
        let sum: f64 = backends
            .iter()
            .map(|b| b["utilisation"].as_f64().expect("utilisation"))
            .sum();
        sum / backends.len() as f64
    };
    assert!(mean_utilisation(two) > 0.85, "{two}");
    assert!(mean_utilisation(random) > 0.85, "{random}");
    let peak = |run: &Value| run["max_peak"].as_f64().expect("max_peak");
    let ratio = peak(two) / peak(random);
    assert!(
        ratio < 0.4,
        "power_of_two max load {} vs random {}",
        peak(two),
        peak(random)
    );
    let p99 = |run: &Value| run["start_latency"]["p99_ms"].as_f64().expect("p99");
    assert!(p99(two) < p99(random), "{} vs {}", p99(two), p99(random));
}

#[test]
fn a_dead_backend_moves_about_one_in_n_clients_with_maglev_and_exactly_its_own_with_rendezvous() {
    let dir = temp_dir("simulate-hash");
    let health = "[service.health]\ninterval = \"1s\"\nfall = 2\nrise = 2\n";
    let config = write(&dir, "lb.toml", &service_config("maglev", 10, health));
    let workload = write(
        &dir,
        "w.toml",
        "length = \"60s\"\nevents = [\"at 30s kill backend 3\"]\n\
         [arrivals]\nrate = 400.0\nclients = 2000\n[sessions]\nmean = \"500ms\"\n",
    );
    let workload = workload.to_str().expect("utf-8");
    let report = simulate_json(
        &config,
        &["--workload", workload, "--compare", "maglev,source_hash"],
    );
    for strategy in ["maglev", "source_hash"] {
        let run = run_of(&report, strategy);
        let event = &run["events"][0];
        let seen = event["seen"].as_f64().expect("seen");
        let moved = event["moved"].as_f64().expect("moved");
        assert!(seen > 1_800.0, "{event}");
        let share = moved / seen;
        assert!((share - 0.1).abs() < 0.03, "{strategy}: {event}");
        assert!(event["cut"].as_u64().is_some_and(|cut| cut > 0), "{event}");
        assert_eq!(
            run["rejected"]["backend_connect"], 0,
            "retries absorb the refusals"
        );
    }
    let rendezvous = &run_of(&report, "source_hash")["events"][0];
    assert_eq!(rendezvous["moved"], rendezvous["on_target"], "{rendezvous}");
}

#[test]
fn the_same_seed_prints_the_same_report_and_plot() {
    let dir = temp_dir("simulate-seed");
    let config = write(&dir, "lb.toml", &service_config("power_of_two", 4, ""));
    let workload = write(
        &dir,
        "w.toml",
        "length = \"20s\"\nevents = [\"at 5s kill backend 2\", \"at 10s restore\", \"at 15s reload weight 3\"]\n\
         [arrivals]\nrate = 200.0\n[backends]\ncapacity = 30\nwhen_full = \"refuse\"\n",
    );
    let run = |seed: &str, plot: &Path| {
        let args = [
            "simulate",
            config.to_str().expect("utf-8"),
            "--service",
            "web",
            "--workload",
            workload.to_str().expect("utf-8"),
            "--seed",
            seed,
            "--plot",
            plot.to_str().expect("utf-8"),
        ];
        let out = l4lb(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let svg = std::fs::read_to_string(plot).expect("plot written");
        (String::from_utf8(out.stdout).expect("utf-8 report"), svg)
    };
    let (first, first_svg) = run("42", &dir.join("a.svg"));
    let (second, second_svg) = run("42", &dir.join("b.svg"));
    let (other, _) = run("43", &dir.join("c.svg"));
    assert_eq!(first, second);
    assert_eq!(first_svg, second_svg);
    assert_ne!(first, other);
    assert!(first.contains("at 5s kill backend 2: "), "{first}");
    assert!(first.contains("at 15s reload weight 3: "), "{first}");
    assert!(first_svg.starts_with("<svg") && first_svg.contains("127.0.0.1:7101"));
    assert!(
        first_svg.contains("5s kill backend 2"),
        "events are marked on the plot"
    );
}

#[test]
fn bad_input_is_an_error_that_says_where() {
    let dir = temp_dir("simulate-errors");
    let config = write(&dir, "lb.toml", &service_config("round_robin", 2, ""));
    let config = config.to_str().expect("utf-8");
    let cases: [(&str, &[&str]); 4] = [
        (
            "events = [\"at 1s kill backend 3\"]\n",
            &[
                "w.toml:1:11: events: \"at 1s kill backend 3\": backend 3: the service has 2 backends",
            ],
        ),
        (
            "[arrivals]\nrate = 0.0\n[[backend]]\naddress = \"127.0.0.1:9\"\n",
            &["w.toml:2:8: arrivals.rate: must be a number of sessions per second above 0"],
        ),
        (
            "[[backend]]\naddress = \"127.0.0.1:9\"\n",
            &["w.toml:2:11: backend.address: \"127.0.0.1:9\" is not a backend of service \"web\""],
        ),
        (
            "[sessions]\nmean = \"1 fortnight\"\n",
            &["w.toml:2:8: sessions.mean: invalid duration"],
        ),
    ];
    for (text, expected) in cases {
        let workload = write(&dir, "w.toml", text);
        let out = l4lb(&[
            "simulate",
            config,
            "--service",
            "web",
            "--workload",
            workload.to_str().expect("utf-8"),
        ]);
        assert_eq!(out.status.code(), Some(1), "{text}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        for want in expected {
            let want = want.replace("w.toml", &workload.display().to_string());
            assert!(stderr.contains(&want), "{want}\nnot in\n{stderr}");
        }
    }
    let out = l4lb(&["simulate", config, "--service", "api"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("no service named \"api\"; the configuration has \"web\"")
    );
    let out = l4lb(&[
        "simulate",
        config,
        "--service",
        "web",
        "--compare",
        "round_robin,fastest",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown strategy \"fastest\""));
}

/// One session through l4lb at `listen`: connect (waiting for l4lb to listen),
/// read the backend's tag to the end.
fn one_session(listen: SocketAddr, deadline: Instant) -> String {
    loop {
        if let Ok(mut stream) = TcpStream::connect(listen) {
            stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
            let mut reply = String::new();
            let _ = stream.read_to_string(&mut reply);
            if !reply.is_empty() {
                return reply;
            }
        }
        assert!(Instant::now() < deadline, "no session through l4lb");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_replayed_access_log_reproduces_the_recorded_counts_for_round_robin() {
    let dir = temp_dir("simulate-replay");
    let backends = [tag_server("a"), tag_server("b"), tag_server("c")];
    let listen = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut text =
        format!("[[service]]\nname = \"web\"\nlisten = \"{listen}\"\nstrategy = \"round_robin\"\n");
    for b in &backends {
        text.push_str(&format!("[[service.backend]]\naddress = \"{b}\"\n"));
    }
    let config = write(&dir, "lb.toml", &text);
    let log_path = dir.join("access.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let mut child = Command::new(BIN)
        .args([
            "--log-format",
            "json",
            "run",
            config.to_str().expect("utf-8"),
        ])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn l4lb run");
    let deadline = Instant::now() + PATIENCE;
    let mut live = std::collections::BTreeMap::new();
    for _ in 0..31 {
        *live.entry(one_session(listen, deadline)).or_insert(0u64) += 1;
    }
    // Each session's access line is written as it closes; wait until all 31 are.
    let logged = |path: &Path| {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        text.lines()
            .filter(|l| l.contains("\"session closed\""))
            .count()
    };
    while logged(&log_path) < 31 {
        assert!(Instant::now() < deadline, "access lines missing");
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    let mut counts: Vec<u64> = live.values().copied().collect();
    counts.sort_unstable();
    assert_eq!(counts, [10, 10, 11], "the live run: {live:?}");
    let workload = write(
        &dir,
        "w.toml",
        "length = \"60s\"\n[arrivals]\nreplay = \"access.log\"\n",
    );
    let report = simulate_json(&config, &["--workload", workload.to_str().expect("utf-8")]);
    let run = run_of(&report, "round_robin");
    for backend in run["backends"].as_array().expect("backends") {
        assert_eq!(backend["sessions"], backend["recorded"], "{run}");
    }
    let recorded: u64 = run["backends"]
        .as_array()
        .expect("backends")
        .iter()
        .map(|b| b["recorded"].as_u64().expect("recorded"))
        .sum();
    assert_eq!(recorded, 31);
    assert_eq!(run["arrived"], 31);
}

#[test]
fn the_shipped_example_workload_runs_on_the_shipped_config_as_the_readme_shows() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = root.join("lb.toml");
    let workload = root.join("examples/simulate.toml");
    let out = l4lb(&[
        "simulate",
        config.to_str().expect("utf-8"),
        "--service",
        "pg",
        "--workload",
        workload.to_str().expect("utf-8"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = String::from_utf8(out.stdout).expect("utf-8 report");
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README");
    let section = readme
        .split("$ l4lb simulate lb.toml --service pg --workload examples/simulate.toml\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("the README's example run");
    for line in section
        .lines()
        .filter(|l| !l.trim().is_empty() && l.trim() != "...")
    {
        assert!(
            report.contains(line),
            "README line {line:?} is not in\n{report}"
        );
    }
}
