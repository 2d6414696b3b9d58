//! dashboards/: the Grafana dashboard and the Prometheus alerting rules use
//! only metric names the README's metrics table documents and a real scrape
//! of l4lb serves; every dashboard query is valid PromQL and the rules pass
//! `promtool check rules` and their unit tests (`promtool test rules`).

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{TestProxy, backend_blocks, get_ok, udp_echo};

fn repo(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

fn read(relative: &str) -> String {
    std::fs::read_to_string(repo(relative)).unwrap_or_else(|e| panic!("{relative}: {e}"))
}

/// Every PromQL expression of the dashboard's panels (and its variables' queries).
fn dashboard_exprs() -> Vec<String> {
    let dashboard: serde_json::Value =
        serde_json::from_str(&read("dashboards/l4lb.json")).expect("the dashboard is JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 10, "{} panels", panels.len());
    let exprs: Vec<String> = panels
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t["expr"].as_str().map(str::to_owned))
        .collect();
    assert!(exprs.len() >= panels.len(), "every panel has a query");
    exprs
}

/// The `expr:` of every rule in alerts.yml (block scalars included).
fn alert_exprs() -> Vec<String> {
    let text = read("dashboards/alerts.yml");
    let mut exprs = Vec::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let Some(expr) = line.trim_start().strip_prefix("expr:") else {
            continue;
        };
        let mut expr = expr.trim().to_string();
        if expr == "|" {
            expr.clear();
            while let Some(next) = lines.next_if(|l| l.starts_with("          ")) {
                expr.push_str(next.trim());
                expr.push(' ');
            }
        }
        exprs.push(expr);
    }
    assert_eq!(exprs.len(), 4, "{exprs:?}");
    exprs
}

/// The metric names an expression reads: identifiers starting `l4lb_` or `process_`.
fn metric_names(expr: &str) -> BTreeSet<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|w| w.starts_with("l4lb_") || w.starts_with("process_"))
        .map(str::to_owned)
        .collect()
}

/// The names in the README's metrics table (its first column).
fn documented() -> BTreeSet<String> {
    let readme = read("README.md");
    let table = readme
        .split("| metric | type | labels |")
        .nth(1)
        .expect("the metrics table");
    table
        .lines()
        .skip(1)
        .take_while(|l| l.starts_with('|'))
        .filter_map(|l| l.split('`').nth(1).map(str::to_owned))
        .collect()
}

/// A histogram's series name (`_bucket`, `_sum`, `_count`) as its family's.
fn family<'a>(name: &'a str, families: &BTreeSet<String>) -> &'a str {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix)
            && families.contains(base)
        {
            return base;
        }
    }
    name
}

/// The metric families of a real scrape (its `# TYPE` lines), with tcp and
/// udp services, active checks and passive checks.
async fn scraped_families() -> BTreeSet<String> {
    let tcp = common::TestBackend::start("a", common::Behaviour::Echo).await;
    let udp = udp_echo().await;
    let toml = format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n\
         [[service]]\nname = \"tcp\"\nlisten = \"127.0.0.1:0\"\n\
         [service.health]\ninterval = \"1s\"\n[service.outlier]\n{}\
         [[service]]\nname = \"udp\"\nprotocol = \"udp\"\nlisten = \"127.0.0.1:0\"\n{}",
        backend_blocks(&[tcp.addr], &[]),
        backend_blocks(&[udp], &[])
    );
    let proxy = TestProxy::start(&toml).await;
    let scrape = get_ok(proxy.admin.expect("admin"), "/metrics").await;
    scrape
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn every_metric_the_dashboards_use_is_documented_and_served() {
    let documented = documented();
    assert!(documented.contains("l4lb_backend_up"), "{documented:?}");
    let served = scraped_families().await;
    let exprs: Vec<String> = dashboard_exprs().into_iter().chain(alert_exprs()).collect();
    let mut used = BTreeSet::new();
    for expr in &exprs {
        for name in metric_names(expr) {
            let name = family(&name, &served).to_string();
            let in_readme = documented.contains(&name)
                || (name.starts_with("process_") && documented.contains("process_*"));
            assert!(
                in_readme,
                "{name} (in `{expr}`) is not in the README's metrics table"
            );
            assert!(
                served.contains(&name),
                "{name} (in `{expr}`) is not in a real scrape"
            );
            used.insert(name);
        }
    }
    for wanted in [
        "l4lb_backend_up",
        "l4lb_rejected_connections_total",
        "l4lb_connect_duration_seconds",
        "l4lb_udp_flows",
        "l4lb_udp_dropped_datagrams_total",
        "l4lb_outlier_ejections_total",
        "l4lb_config_reloads_total",
    ] {
        assert!(used.contains(wanted), "the dashboards never use {wanted}");
    }
}

fn promtool(args: &[&str]) -> String {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(repo("dashboards"))
        .output()
        .expect("promtool is required (Debian package `prometheus`; scripts/test.sh installs it)");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?}:\n{report}");
    report
}

#[test]
fn the_alerting_rules_pass_promtool_check_and_their_unit_tests() {
    let report = promtool(&["check", "rules", "alerts.yml"]);
    assert!(report.contains("SUCCESS: 4 rules found"), "{report}");
    let report = promtool(&["test", "rules", "alerts_test.yml"]);
    assert!(report.contains("SUCCESS"), "{report}");
}

#[test]
fn every_dashboard_query_is_valid_promql() {
    // promtool parses recording rules' expressions; Grafana's variables get a value.
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, expr) in dashboard_exprs().iter().enumerate() {
        let expr = expr
            .replace("$__rate_interval", "5m")
            .replace("$service", ".*");
        let quoted = serde_json::to_string(&expr).expect("quote");
        rules.push_str(&format!(
            "      - record: dashboard:query{i}\n        expr: {quoted}\n"
        ));
    }
    let dir = std::env::temp_dir().join(format!("l4lb-dashboard-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("queries.yml");
    std::fs::write(&file, &rules).expect("write");
    let report = promtool(&["check", "rules", file.to_str().expect("utf-8")]);
    assert!(report.contains("SUCCESS"), "{report}\n{rules}");
    let _ = std::fs::remove_dir_all(dir);
}
