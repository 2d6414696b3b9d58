//! The `l4lb` binary: parse the command line, set up logging, run or check a config,
//! and turn the outcome into an exit code.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use l4lb::cli::{Cli, Command};
use l4lb::config::{self, Config};
use l4lb::fd_store::FdStore;
use l4lb::logging;
use l4lb::notify::{Notifier, run_watchdog};
use l4lb::runtime::control;
use l4lb::runtime::inherited::InheritedSockets;
use l4lb::runtime::takeover::{self, Takeover, UpgradeMode};
use l4lb::runtime::{HandedFlows, Server, ServerHandle, StartError};
use l4lb::socket_activation::{self, ActivatedSocket};
use l4lb::upgrade::plan::plan;
use l4lb::upgrade::protocol::Message;

mod successor;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(code) = print_manual(&cli.command) {
        return code;
    }
    if let Err(message) = logging::init(cli.log_format, cli.log_level.as_deref(), cli.log_target) {
        eprintln!("l4lb: {message}");
        return ExitCode::FAILURE;
    }
    match &cli.command {
        Command::Check { config } => check(config),
        Command::Run {
            config,
            upgrade,
            fd_store,
        } => run(config, *upgrade, *fd_store),
        Command::Simulate(args) => simulate(args),
        Command::Status(args) => l4lb::ctl::status(args),
        Command::Backend(args) => l4lb::ctl::backend(args),
        Command::Completions { .. } | Command::Manpage => ExitCode::SUCCESS,
    }
}

/// `completions` and `manpage` print generated text and need no logging; `None`
/// for every other command.
fn print_manual(command: &Command) -> Option<ExitCode> {
    let mut stdout = std::io::stdout().lock();
    let written = match command {
        Command::Completions { shell } => {
            l4lb::manual::completions(*shell, &mut stdout);
            Ok(())
        }
        Command::Manpage => l4lb::manual::manpage(&mut stdout),
        _ => return None,
    };
    Some(match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("l4lb: cannot write the manual page: {e}");
            ExitCode::FAILURE
        }
    })
}

fn simulate(args: &l4lb::cli::SimulateArgs) -> ExitCode {
    let options = l4lb::simulate::Options {
        config: args.config.clone(),
        service: args.service.clone(),
        workload: args.workload.clone(),
        seed: args.seed,
        compare: args.compare.clone(),
        plot: args.plot.clone(),
        json: args.json,
    };
    match l4lb::simulate::run(&options) {
        Ok(report) => {
            print!("{report}");
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for line in errors {
                eprintln!("{line}");
            }
            ExitCode::FAILURE
        }
    }
}

/// Loads and validates `path`, printing every error; `None` when it is invalid.
fn load_or_report(path: &Path) -> Option<Config> {
    match config::load(path) {
        Ok(config) => {
            for warning in config::warnings(&config) {
                eprintln!("warning: {warning}");
            }
            Some(config)
        }
        Err(errors) => {
            for line in errors.capped_lines(config::SHOWN_ERRORS) {
                eprintln!("{line}");
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
    // Not errors: `check` may run on another host, or without the privileges
    // `l4lb run` will have.
    for problem in l4lb::proxy::source_check::check(&config) {
        eprintln!(
            "warning: {problem} (l4lb run would refuse to start with this process's privileges)"
        );
    }
    print_upgrade_plan(&config);
    println!("{}: configuration is valid", path.display());
    ExitCode::SUCCESS
}

/// What `l4lb run` of this configuration would take over from the l4lb
/// running on its control socket, if one does.
fn print_upgrade_plan(config: &Config) {
    let control = &config.global.control_socket;
    match takeover::describe(control, &config.source) {
        Ok(None) => println!(
            "control socket {}: no l4lb runs there; `run` binds every address itself",
            control.display()
        ),
        Ok(Some((
            Message::Hello {
                pid,
                version,
                config: theirs,
                ..
            },
            Message::Description { sockets, udp_flows },
        ))) => {
            println!(
                "control socket {}: l4lb {version} (pid {pid}, {}) runs there; `run --upgrade` \
                 takes over {} socket(s) and up to {udp_flows} udp flow(s):",
                control.display(),
                theirs.display(),
                sockets.len()
            );
            for line in plan(config, &sockets) {
                println!("  {line}");
            }
        }
        Ok(Some((_, other))) => println!(
            "control socket {}: unexpected answer {other:?}",
            control.display()
        ),
        Err(e) => println!("control socket {}: {e}", control.display()),
    }
}

fn run(path: &Path, upgrade: bool, fd_store: bool) -> ExitCode {
    let Some(config) = load_or_report(path) else {
        return ExitCode::FAILURE;
    };
    let runtime = match build_control_runtime() {
        Ok(runtime) => runtime,
        Err(e) => {
            error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    let mode = match upgrade {
        true => UpgradeMode::Required,
        false => UpgradeMode::Auto,
    };
    runtime.block_on(serve(config, mode, fd_store))
}

/// The runtime of the control plane (signals, admin endpoint, health probes,
/// reloads) on the main thread; clients are served on the worker threads that
/// `Server::bind` starts.
fn build_control_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// Binds every listener — taking a predecessor's sockets and UDP flows when
/// there is one — and, once serving, tells the predecessor to stop accepting.
/// Sockets systemd passed join the inherited pool. The server, and whether it
/// took over from a predecessor.
fn start(
    config: &Config,
    mode: UpgradeMode,
    activated: Vec<ActivatedSocket>,
) -> Result<(Server, bool), String> {
    let control = &config.global.control_socket;
    let mut takeover =
        Takeover::connect(control, &config.source, mode).map_err(|e| format!("upgrade: {e}"))?;
    let inherited = match takeover.as_mut() {
        Some(t) => t.receive_sockets(),
        None => Ok(InheritedSockets::default()),
    }
    .map(|mut inherited| {
        inherited.add_activated(activated);
        inherited
    });
    let bound = inherited.map_err(|e| e.to_string()).and_then(|inherited| {
        Server::bind_inheriting(config, inherited, || match takeover.as_mut() {
            Some(t) => t
                .receive_flows()
                .map_err(|e| StartError::Upgrade(e.to_string())),
            None => Ok(HandedFlows::new()),
        })
        .map_err(|e| e.to_string())
    });
    let upgraded = takeover.is_some();
    let mut server = match (bound, takeover) {
        (Ok(server), None) => server,
        (Ok(server), Some(t)) => {
            // Serving already: giving up now could leave nobody serving.
            match t.ready() {
                Ok(report) => server.record_predecessor(report),
                Err(e) => error!(error = %e, "upgrade: the previous process did not confirm \
                    it stopped accepting; serving anyway (stop it with SIGTERM if it still runs)"),
            }
            server
        }
        (Err(e), Some(t)) => {
            t.fail(&e);
            return Err(format!("{e}; the running l4lb keeps serving"));
        }
        (Err(e), None) => return Err(e),
    };
    if let Err(e) = server.open_control_socket() {
        control::warn_unavailable(control, &e);
    }
    Ok((server, upgraded))
}

async fn serve(config: Config, mode: UpgradeMode, fd_store: bool) -> ExitCode {
    // Before any listener is bound: a SIGTERM that comes the moment clients can
    // connect must start a drain, not end the process by the default action.
    let signals = match Signals::install() {
        Ok(signals) => signals,
        Err(e) => {
            error!(error = %e, "cannot install signal handlers");
            return ExitCode::FAILURE;
        }
    };
    let activated = match socket_activation::from_env() {
        Ok(activated) => activated,
        Err(e) => {
            error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let passed: Vec<_> = activated.iter().map(|s| (s.protocol, s.local)).collect();
    let (mut server, upgraded) = match start(&config, mode, activated) {
        Ok(started) => started,
        Err(e) => {
            error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let handle = server.handle();
    let notifier = Arc::new(Notifier::from_env());
    let store = FdStore::new(Arc::clone(&notifier), fd_store);
    // A stored socket this configuration no longer serves leaves the store.
    for (protocol, local) in passed.iter().filter(|(p, a)| !config.listens_on(*p, *a)) {
        store.remove(*protocol, *local);
    }
    server.use_fd_store(store);
    let watchdog_stop = CancellationToken::new();
    let workers = handle.clone();
    tokio::spawn(run_watchdog(
        Arc::clone(&notifier),
        watchdog_stop.clone(),
        move || workers.stalled_workers().is_none(),
    ));
    tokio::spawn(signals.handle(handle.clone(), Arc::clone(&notifier), config.source.clone()));
    info!(version = env!("CARGO_PKG_VERSION"), config = %config.source.display(),
        services = config.services.len(), "l4lb started");
    match upgraded {
        true => notifier.ready_as_main(&handle.summary()),
        false => notifier.ready(&handle.summary()),
    }
    let report = server.serve().await;
    watchdog_stop.cancel();
    info!(
        completed = report.completed,
        closed_at_deadline = report.closed_at_deadline,
        "l4lb stopped"
    );
    ExitCode::SUCCESS
}

/// The signals l4lb acts on, installed before it reports ready (an unhandled
/// SIGHUP would otherwise end the process). SIGUSR2 starts a binary upgrade
/// (see `successor`).
struct Signals {
    term: Signal,
    int: Signal,
    hup: Signal,
    usr2: Signal,
}

impl Signals {
    fn install() -> std::io::Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
            usr2: signal(SignalKind::user_defined2())?,
        })
    }

    /// SIGHUP reloads the configuration file; the first SIGTERM or SIGINT starts
    /// a graceful drain, a second one closes everything at once.
    async fn handle(mut self, handle: ServerHandle, notifier: Arc<Notifier>, path: PathBuf) {
        let mut stopping = false;
        loop {
            let name = tokio::select! {
                _ = self.hup.recv() => "SIGHUP",
                _ = self.term.recv() => "SIGTERM",
                _ = self.int.recv() => "SIGINT",
                _ = self.usr2.recv() => "SIGUSR2",
            };
            match (name, stopping) {
                ("SIGHUP", false) => {
                    info!(signal = name, config = %path.display(), "reloading");
                    notifier.reloading("reloading configuration");
                    let _ = handle.reload_file(&path).await;
                    notifier.ready(&handle.summary());
                }
                ("SIGHUP", true) => warn!("SIGHUP while stopping: ignored"),
                ("SIGUSR2", false) => successor::start(),
                ("SIGUSR2", true) => warn!("SIGUSR2 while stopping: ignored"),
                (_, false) => {
                    stopping = true;
                    info!(
                        signal = name,
                        "stopping: no new clients, open sessions may finish"
                    );
                    notifier.stopping("draining open sessions");
                    handle.shutdown();
                }
                (_, true) => {
                    warn!(signal = name, "second signal: closing every session now");
                    handle.close_now();
                }
            }
        }
    }
}
