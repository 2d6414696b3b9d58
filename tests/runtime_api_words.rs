//! The runtime API answers in `/status`'s words: a drained backend is
//! `draining` in both, a backend in maintenance `maint`, one back in rotation `up`.

mod common;

use common::*;

#[tokio::test]
async fn drain_maint_and_ready_answer_with_the_states_status_shows() {
    let a = TestBackend::start("a", Behaviour::Tagged).await;
    let toml = format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n[[service]]\nname = \"svc\"\nlisten = \"127.0.0.1:0\"\n{}",
        backend_blocks(&[a.addr], &[])
    );
    let proxy = TestProxy::start(&toml).await;
    let admin = proxy.admin.expect("admin");
    let backend = a.addr.to_string();
    let steps = [
        ("drain", "up", "draining"),
        ("maint", "draining", "maint"),
        ("ready", "maint", "up"),
    ];
    for (action, previous, state) in steps {
        let path = format!("/services/svc/backends/{backend}/{action}");
        let (code, body) = http(admin, "POST", &path).await;
        assert_eq!(code, 200, "{action}: {body}");
        let answer: serde_json::Value = serde_json::from_str(&body).expect("JSON answer");
        assert_eq!(answer["previous"], previous, "{action}: {body}");
        assert_eq!(answer["state"], state, "{action}: {body}");
        let status: serde_json::Value =
            serde_json::from_str(&get_ok(admin, "/status").await).expect("status is JSON");
        assert_eq!(status["services"][0]["backends"][0]["state"], state);
    }
}
