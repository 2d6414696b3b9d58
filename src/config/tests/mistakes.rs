//! Mistakes that look plausible and would otherwise be accepted: durations
//! past any timer, checks that cannot probe their service, backends that loop
//! back into l4lb, CIDRs with host bits, mistyped keys and addresses.

use super::*;

// ---- durations have an upper bound --------------------------------------

#[test]
fn durations_longer_than_30_days_are_refused_everywhere() {
    let text = lines(&[
        "[global]",
        "shutdown_grace = \"31days\"",
        "[[service]]",
        "name = \"pg\"",
        "listen = \"127.0.0.1:0\"",
        "idle_timeout = \"18446744073709551615s\"",
        "connect_timeout = \"721h\"",
        "[service.health]",
        "interval = \"1000000h\"",
        "[service.outlier]",
        "ejection_time = \"100years\"",
        "[[service.backend]]",
        "address = \"127.0.0.1:5432\"",
        "slow_start = \"5000000000s\"",
    ]);
    let bound = "must be at most 30 days (\"720h\")";
    assert_eq!(
        errors(&text),
        [
            format!("lb.toml:2:18: global.shutdown_grace: {bound}, got \"31days\""),
            format!(
                "lb.toml:6:16: service \"pg\".idle_timeout: {bound}, got \"18446744073709551615s\""
            ),
            format!("lb.toml:7:19: service \"pg\".connect_timeout: {bound}, got \"721h\""),
            format!("lb.toml:9:12: service \"pg\".health.interval: {bound}, got \"1000000h\""),
            format!(
                "lb.toml:11:17: service \"pg\".outlier.ejection_time: {bound}, got \"100years\""
            ),
            format!(
                "lb.toml:14:14: service \"pg\".backend[0].slow_start: {bound}, got \"5000000000s\""
            ),
        ]
    );
}

#[test]
fn thirty_days_is_accepted() {
    let config = valid(&service_with(&["idle_timeout = \"720h\""]));
    assert_eq!(
        config.services[0].idle_timeout,
        Duration::from_secs(30 * 24 * 3600)
    );
}
