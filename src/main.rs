//! The `l4lb` binary: parse the command line, set up logging, run or check a config,
//! and turn the outcome into an exit code.

use std::path::Path;
use std::process::ExitCode;

use clap::Parser;
use tokio::signal::unix::{SignalKind, signal};
use tracing::{error, info, warn};
use tracing_subscriber::EnvFilter;

use l4lb::cli::{Cli, Command, LogFormat};
use l4lb::config::{self, Config};
use l4lb::runtime::{Server, ServerHandle};

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format, cli.log_level.as_deref());
    match &cli.command {
        Command::Check { config } => check(config),
        Command::Run { config } => run(config),
    }
}

fn init_logging(format: LogFormat, level: Option<&str>) {
    let filter = match level {
        Some(level) => EnvFilter::new(level),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// Loads and validates `path`, printing every error; `None` when it is invalid.
fn load_or_report(path: &Path) -> Option<Config> {
    match config::load(path) {
        Ok(config) => Some(config),
        Err(errors) => {
            for e in errors.iter() {
                eprintln!("{e}");
            }
            eprintln!(
                "{}: {} error(s); configuration is invalid",
                path.display(),
                errors.len()
            );
            None
        }
    }
}

fn check(path: &Path) -> ExitCode {
    let Some(config) = load_or_report(path) else {
        return ExitCode::FAILURE;
    };
    for service in &config.services {
        println!("{}", service.summary());
    }
    println!("{}: configuration is valid", path.display());
    ExitCode::SUCCESS
}

fn run(path: &Path) -> ExitCode {
    let Some(config) = load_or_report(path) else {
        return ExitCode::FAILURE;
    };
    let runtime = match build_runtime(config.global.workers) {
        Ok(runtime) => runtime,
        Err(e) => {
            error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(serve(config))
}

fn build_runtime(workers: usize) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if workers > 0 {
        builder.worker_threads(workers);
    }
    builder.enable_all().build()
}

async fn serve(config: Config) -> ExitCode {
    let server = match Server::bind(&config) {
        Ok(server) => server,
        Err(e) => {
            error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = watch_signals(server.handle()) {
        error!(error = %e, "cannot install signal handlers");
        return ExitCode::FAILURE;
    }
    info!(version = env!("CARGO_PKG_VERSION"), config = %config.source.display(),
        services = config.services.len(), "l4lb started");
    let report = server.serve().await;
    info!(
        completed = report.completed,
        closed_at_deadline = report.closed_at_deadline,
        "l4lb stopped"
    );
    ExitCode::SUCCESS
}

/// SIGTERM or SIGINT starts a graceful drain; a second one closes everything at once.
fn watch_signals(handle: ServerHandle) -> std::io::Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        let name = tokio::select! { _ = term.recv() => "SIGTERM", _ = int.recv() => "SIGINT" };
        info!(
            signal = name,
            "stopping: no new clients, open sessions may finish"
        );
        handle.shutdown();
        let name = tokio::select! { _ = term.recv() => "SIGTERM", _ = int.recv() => "SIGINT" };
        warn!(signal = name, "second signal: closing every session now");
        handle.close_now();
    });
    Ok(())
}
