//! Several l4lb instances behind ECMP with BGP, end to end: runs
//! `scripts/ecmp_lab.sh` (network namespaces, a BIRD router with multipath,
//! a BIRD speaker per instance gated on `/ready`, real backends and 200 client
//! addresses) against this build's binary, and checks the numbers it reports.
//!
//! Needs root, `ip netns`, bird2, socat, curl and nftables (scripts/test.sh
//! installs them; CI runs as root). Without them the test says why and skips.

use std::collections::HashMap;
use std::process::Command;

/// The lab's own bound (it normally takes well under a minute).
const LAB_TIMEOUT_SECONDS: &str = "110";

/// Why the lab cannot run here, if it cannot.
fn skip_reason() -> Option<String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root (network namespaces need it)".into());
    }
    for tool in ["ip", "bird", "birdc", "socat", "curl", "nft", "timeout"] {
        let found = Command::new("sh")
            .args([
                "-c",
                &format!("command -v {tool} || test -x /usr/sbin/{tool}"),
            ])
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            return Some(format!(
                "{tool} is not installed (scripts/test.sh installs it)"
            ));
        }
    }
    let probe = "l4ecmp-probe";
    let made = Command::new("ip").args(["netns", "add", probe]).status();
    let _ = Command::new("ip").args(["netns", "del", probe]).status();
    match made {
        Ok(status) if status.success() => None,
        _ => Some("cannot create network namespaces here".into()),
    }
}

/// `RESULT <name> key=value ...` lines, by name.
fn results(stdout: &str) -> HashMap<String, HashMap<String, String>> {
    stdout
        .lines()
        .filter_map(|line| line.strip_prefix("RESULT "))
        .map(|rest| {
            let mut words = rest.split_whitespace();
            let name = words.next().unwrap_or_default().to_owned();
            let fields = words
                .filter_map(|w| w.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
            (name, fields)
        })
        .collect()
}

fn number(results: &HashMap<String, HashMap<String, String>>, name: &str, key: &str) -> u64 {
    results
        .get(name)
        .and_then(|fields| fields.get(key))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("the lab reported no {name} {key}"))
}

#[test]
fn instances_behind_ecmp_share_clients_fail_over_and_drain() {
    if let Some(why) = skip_reason() {
        eprintln!("skipped: ECMP lab: {why}");
        return;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/ecmp_lab.sh");
    let output = Command::new("timeout")
        .args(["-k", "5", LAB_TIMEOUT_SECONDS, "bash", script])
        .env("L4LB_BIN", env!("CARGO_BIN_EXE_l4lb"))
        .output()
        .expect("run scripts/ecmp_lab.sh");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    if output.status.code() == Some(77) {
        eprintln!("skipped: ECMP lab: {}", stdout.trim());
        return;
    }
    assert!(output.status.success(), "the lab failed: {}", stderr.trim());

    let results = results(&stdout);
    let spread = &results["spread"];
    assert_eq!(spread.len(), 3, "{spread:?}");
    assert!(
        spread
            .values()
            .all(|count| count.parse::<u32>().unwrap_or(0) >= 20)
    );
    assert!(stdout.contains("RESULT same_backend maglev 200/200"));
    assert!(stdout.contains("RESULT same_backend source_hash 200/200"));

    assert!(number(&results, "sigkill", "failover_ms") <= 5_000);
    assert_eq!(number(&results, "sigkill", "new_failed"), 0);
    let on_killed = number(&results, "sigkill", "on_killed");
    assert!(on_killed > 0);
    assert_eq!(number(&results, "sigkill", "lost_on_killed"), on_killed);
    assert_eq!(number(&results, "sigkill", "lost_elsewhere"), 0);

    assert!(number(&results, "sigterm", "stream") > 0);
    assert_eq!(number(&results, "sigterm", "stream_failed"), 0);
    assert!(number(&results, "sigterm", "on_stopped") > 0);
    assert_eq!(number(&results, "sigterm", "lost_on_stopped"), 0);
    assert_eq!(number(&results, "sigterm", "lost_elsewhere"), 0);

    assert!(number(&results, "all_down", "withdrawn_ms") <= 5_000);
}
