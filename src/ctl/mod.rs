//! The operator's commands that talk to a running l4lb through its admin
//! endpoint: `l4lb status` (the `/status` document as a table, as JSON, or
//! redrawn every 2 s) and `l4lb backend drain|maint|ready` (the runtime API).
//!
//! Owns the commands' behaviour and exit codes (0 done, 1 anything wrong, the
//! reason on stderr). The HTTP client is `http`, the table `table`; the admin
//! endpoint itself is `crate::admin`.

mod backend;
pub mod http;
mod status;
pub mod table;

use std::future::Future;
use std::process::ExitCode;

pub use backend::backend;
pub use status::status;

/// Runs `command` on a runtime of its own; prints its error, if any, after `l4lb <what>: `.
fn run(what: &str, command: impl Future<Output = Result<(), String>>) -> ExitCode {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let outcome = match runtime {
        Ok(runtime) => runtime.block_on(command),
        Err(e) => Err(format!("cannot start the async runtime: {e}")),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("l4lb {what}: {e}");
            ExitCode::FAILURE
        }
    }
}
