//! `l4lb status`: reads `/status` once (a table, or `--json` as it came) or,
//! with `--watch`, every 2 s until Ctrl-C (or `--count` tables).
//!
//! In watch mode an unreachable endpoint is shown in place of the table and
//! the next read tries again; a single read fails the command instead.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use hyper::Method;
use tokio::signal::unix::{SignalKind, signal};

use super::{http, table};
use crate::cli::StatusArgs;

/// How often `--watch` redraws.
const WATCH_INTERVAL: Duration = Duration::from_secs(2);
/// Home the cursor and clear the screen.
const CLEAR: &str = "\x1b[H\x1b[2J";

pub fn status(args: &StatusArgs) -> ExitCode {
    super::run("status", async {
        match args.watch {
            true => watch(&args.admin.admin, args.count).await,
            false => once(&args.admin.admin, args.json).await,
        }
    })
}

async fn once(admin: &str, json: bool) -> Result<(), String> {
    let document = fetch(admin).await?;
    match json {
        true => println!("{}", document.trim_end()),
        false => print!("{}", render(admin, &document)?),
    }
    Ok(())
}

async fn watch(admin: &str, count: Option<u64>) -> Result<(), String> {
    // Installed first: Ctrl-C ends the command cleanly at any point from here on.
    let mut interrupt =
        signal(SignalKind::interrupt()).map_err(|e| format!("cannot watch for Ctrl-C: {e}"))?;
    let terminal = std::io::stdout().is_terminal();
    let mut drawn = 0;
    loop {
        let screen = tokio::select! {
            screen = screen(admin) => screen,
            _ = interrupt.recv() => return Ok(()),
        };
        match terminal {
            true => print!("{CLEAR}{screen}"),
            false => println!("{screen}"),
        }
        drawn += 1;
        if count.is_some_and(|n| drawn >= n) {
            return Ok(());
        }
        tokio::select! {
            _ = tokio::time::sleep(WATCH_INTERVAL) => {}
            _ = interrupt.recv() => return Ok(()),
        }
    }
}

/// The table, or what kept it from being read.
async fn screen(admin: &str) -> String {
    match fetch(admin).await.and_then(|d| render(admin, &d)) {
        Ok(text) => text,
        Err(e) => format!("{e}\n"),
    }
}

/// The `/status` body; an error for anything but `200`.
async fn fetch(admin: &str) -> Result<String, String> {
    let answer = http::request(admin, Method::GET, "/status", None).await?;
    match answer.status {
        200 => Ok(answer.body),
        status => Err(format!(
            "admin endpoint {admin} answered GET /status with {status}: {}",
            answer.message()
        )),
    }
}

fn render(admin: &str, document: &str) -> Result<String, String> {
    let status: serde_json::Value = serde_json::from_str(document).map_err(|e| {
        format!("admin endpoint {admin}: GET /status did not answer a JSON document: {e}")
    })?;
    let no_color = std::env::var_os("NO_COLOR");
    let colour = crate::logging::use_colour(std::io::stdout().is_terminal(), no_color.as_deref());
    Ok(table::render(&status, colour))
}
