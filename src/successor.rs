//! SIGUSR2: start the binary installed at this program's path as `run
//! --upgrade` with this process's own arguments, so that it takes every socket
//! and UDP flow over (and, under systemd, becomes the main process with
//! `MAINPID=`) while this one drains.
//!
//! The new process inherits the environment (NOTIFY_SOCKET) except
//! `WATCHDOG_PID`, which names this process: the successor pings the
//! watchdog itself once it is the main process. Its exit is waited for on a
//! thread, so a successor that fails is logged here and never left a zombie.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Command;

use tracing::{error, info, warn};

/// Starts the successor; logs what happens.
pub fn start() {
    let binary = match installed_binary() {
        Ok(binary) => binary,
        Err(e) => return error!(error = %e, "SIGUSR2: cannot tell which binary to start"),
    };
    let arguments = upgrade_arguments(std::env::args_os().skip(1).collect());
    let spawned = Command::new(&binary)
        .args(&arguments)
        .env_remove("WATCHDOG_PID")
        // systemd's passed sockets were this process's; the new one gets them
        // from it over the control socket.
        .env_remove("LISTEN_PID")
        .env_remove("LISTEN_FDS")
        .env_remove("LISTEN_FDNAMES")
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => {
            return error!(binary = %binary.display(), error = %e,
                "SIGUSR2: cannot start the new binary; still serving");
        }
    };
    let pid = child.id();
    info!(binary = %binary.display(), pid, "SIGUSR2: started the new binary to take over");
    std::thread::spawn(move || match child.wait() {
        Ok(status) if status.success() => info!(pid, "the new process exited"),
        Ok(status) => warn!(pid, %status, "the new process exited with an error"),
        Err(e) => warn!(pid, error = %e, "cannot wait for the new process"),
    });
}

/// The path this program was started from, naming the file there now (a
/// replaced binary shows as "PATH (deleted)" in /proc/self/exe).
fn installed_binary() -> std::io::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let text = exe.to_string_lossy();
    Ok(match text.strip_suffix(" (deleted)") {
        Some(path) => PathBuf::from(path),
        None => exe,
    })
}

/// This process's arguments with `--upgrade` after `run` (once).
fn upgrade_arguments(mut arguments: Vec<OsString>) -> Vec<OsString> {
    let upgrade = OsString::from("--upgrade");
    if arguments.contains(&upgrade) {
        return arguments;
    }
    match arguments.iter().position(|a| a == "run") {
        Some(at) => arguments.insert(at + 1, upgrade),
        None => arguments.extend([OsString::from("run"), upgrade]),
    }
    arguments
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(words: &[&str]) -> Vec<OsString> {
        words.iter().map(OsString::from).collect()
    }

    #[test]
    fn upgrade_goes_right_after_run_and_only_once() {
        let got = upgrade_arguments(os(&["--log-format", "json", "run", "/etc/l4lb/lb.toml"]));
        assert_eq!(
            got,
            os(&[
                "--log-format",
                "json",
                "run",
                "--upgrade",
                "/etc/l4lb/lb.toml"
            ])
        );
        let again = upgrade_arguments(got.clone());
        assert_eq!(again, got);
    }
}
