//! Headless Chromium (Debian package `chromium`; scripts/test.sh installs it)
//! for tests of the stats page: the DOM after the page's script has run, and
//! screenshots. Every run is bounded in time and may resolve no host name but
//! 127.0.0.1, so the browser talks to nothing but the test's l4lb.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The flags of every headless run (here and in `devtools`): no GPU, no
/// first-run or background traffic, and no host name resolves but 127.0.0.1.
pub const HEADLESS_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
];

/// How long one Chromium run may take before it is killed and the test fails.
const RUN_LIMIT: Duration = Duration::from_secs(90);
/// Virtual time the page's timers get: enough for three polls of `/status`.
const VIRTUAL_TIME_MS: u32 = 5000;

fn chromium(profile: &Path, extra: &[String], url: &str) -> Vec<u8> {
    let mut child = Command::new("chromium")
        .args(HEADLESS_FLAGS)
        .arg("--hide-scrollbars")
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--virtual-time-budget={VIRTUAL_TIME_MS}"))
        .args(extra)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromium is required (Debian package `chromium`; scripts/test.sh installs it)");
    let stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = std::io::Read::read_to_end(&mut { stdout }, &mut out);
        out
    });
    let deadline = Instant::now() + RUN_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for chromium") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within {RUN_LIMIT:?} for {url}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "chromium failed ({status}) on {url}");
    reader.join().expect("chromium's output")
}

/// The DOM of `url` once its script has had [`VIRTUAL_TIME_MS`] of time.
pub fn dump_dom(profile: &Path, url: &str) -> String {
    String::from_utf8_lossy(&chromium(profile, &["--dump-dom".into()], url)).into_owned()
}

/// A PNG screenshot of `url`, `width` × `height`, written to `out`.
pub fn screenshot(profile: &Path, url: &str, out: &Path, width: u32, height: u32) {
    let _ = std::fs::remove_file(out);
    chromium(
        profile,
        &[
            format!("--screenshot={}", out.display()),
            format!("--window-size={width},{height}"),
        ],
        url,
    );
    let png = std::fs::read(out).expect("chromium wrote the screenshot");
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n"),
        "not a PNG: {}",
        out.display()
    );
}

/// The value of every `attribute="..."` in `html` inside tags that have
/// `key="..."` too, as `(key's value, attribute's value)`, in document order.
pub fn attribute_pairs(html: &str, key: &str, attribute: &str) -> Vec<(String, String)> {
    let key = format!("{key}=\"");
    let attribute = format!("{attribute}=\"");
    let mut pairs = Vec::new();
    for tag in html.split('<').skip(1) {
        let tag = tag.split('>').next().unwrap_or("");
        let value = |name: &str| {
            let start = tag.find(name)? + name.len();
            let end = tag[start..].find('"')? + start;
            Some(tag[start..end].to_string())
        };
        if let (Some(k), Some(a)) = (value(&key), value(&attribute)) {
            pairs.push((k, a));
        }
    }
    pairs
}
