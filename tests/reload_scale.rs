//! A reload of a large backend set (a generated configuration of 20,000 backends)
//! is applied as a diff of identities: unchanged, changed, removed and added
//! backends are told apart correctly, and the admin endpoint answers afterwards.

mod common;

use std::time::Duration;

use common::{TestProxy, get_ok};

const BACKENDS: usize = 20_000;

/// Generous bound for the reload of the whole set (a linear diff takes well under
/// a second even in a debug build).
const RELOAD_PATIENCE: Duration = Duration::from_secs(120);

/// Backend `i`'s address: distinct, on loopback, never connected to (no checks,
/// no traffic).
fn address(i: usize) -> String {
    format!(
        "127.{}.{}.{}:9",
        1 + i / 62_500,
        (i / 250) % 250,
        1 + i % 250
    )
}

/// Service "big" over backends `range`, those in `heavier` with weight 2.
fn config(range: std::ops::Range<usize>, heavier: std::ops::Range<usize>) -> String {
    let mut text = String::from(
        "[admin]\nlisten = \"127.0.0.1:0\"\n\
         [[service]]\nname = \"big\"\nlisten = \"127.0.0.1:0\"\n",
    );
    for i in range {
        let weight = if heavier.contains(&i) { 2 } else { 1 };
        text.push_str(&format!(
            "[[service.backend]]\naddress = \"{}\"\nweight = {weight}\n",
            address(i)
        ));
    }
    text
}

#[tokio::test]
async fn a_reload_of_twenty_thousand_backends_is_a_correct_diff_and_the_admin_still_answers() {
    let quarter = BACKENDS / 4;
    let proxy = TestProxy::start(&config(0..BACKENDS, 0..0)).await;
    let admin = proxy.admin.expect("admin");
    let before = proxy.current("big");

    // Drop the first quarter, change the weight of the second, keep the third and
    // fourth, add a new quarter.
    let next = config(quarter..BACKENDS + quarter, quarter..2 * quarter);
    let report = tokio::time::timeout(RELOAD_PATIENCE, proxy.reload(&next))
        .await
        .expect("the reload finishes")
        .expect("reload");
    assert_eq!(report.backends_removed, quarter);
    assert_eq!(report.backends_added, quarter);
    assert_eq!(report.backends_changed, quarter);

    let after = proxy.current("big");
    assert_eq!(after.backends().len(), BACKENDS);
    for i in [2 * quarter, 3 * quarter, BACKENDS - 1] {
        let index = i - quarter;
        assert_eq!(after.backends()[index].address(), address(i));
        assert!(
            std::sync::Arc::ptr_eq(&after.backends()[index], &before.backends()[i]),
            "backend {i} is unchanged: kept as it was"
        );
    }
    assert_eq!(after.backends()[0].weight(), 2);
    assert_eq!(after.backends()[0].address(), address(quarter));

    assert_eq!(common::http(admin, "GET", "/healthz").await.0, 200);
    let status: serde_json::Value =
        serde_json::from_str(&get_ok(admin, "/status").await).expect("status is JSON");
    assert_eq!(status["config_generation"], 2);
    let listed = status["services"][0]["backends"]
        .as_array()
        .expect("backends");
    assert_eq!(listed.len(), BACKENDS, "removed backends had no sessions");
    let metrics = get_ok(admin, "/metrics").await;
    let up = metrics
        .lines()
        .filter(|l| l.starts_with("l4lb_backend_up{"))
        .count();
    assert_eq!(up, BACKENDS);
}
