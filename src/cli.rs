//! Command-line interface: clap derive structs only, no behaviour.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// The configuration file used when none is given.
pub const DEFAULT_CONFIG: &str = "/etc/l4lb/lb.toml";

/// The admin endpoint `status` and `backend` talk to when none is given: the
/// documented default of `[admin] listen`.
pub const DEFAULT_ADMIN: &str = "127.0.0.1:9100";

/// l4lb: a Layer-4 (TCP and UDP) load balancer.
#[derive(Debug, Parser)]
#[command(name = "l4lb", version, propagate_version = true)]
pub struct Cli {
    /// Log line format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,

    /// Log level or filter (e.g. `debug`, `l4lb=debug`); overrides RUST_LOG. Default: info.
    #[arg(long, global = true)]
    pub log_level: Option<String>,

    /// Where log lines go: stderr, or syslog (RFC 3164 datagrams to /dev/log).
    #[arg(long, value_enum, default_value_t = LogTarget::Stderr, global = true)]
    pub log_target: LogTarget,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load and validate the configuration, bind every listener, serve until SIGTERM/SIGINT.
    Run {
        /// Path of the configuration file.
        #[arg(default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Take every listening socket and UDP flow over from the l4lb running on
        /// `[global] control_socket`, which then drains; fail if none runs there.
        /// Without it, `run` upgrades only from a live l4lb of the same file.
        #[arg(long)]
        upgrade: bool,
        /// Also keep every listening socket in systemd's file-descriptor store
        /// (the unit needs `FileDescriptorStoreMax=`), so that a restart gets them back.
        #[arg(long)]
        fd_store: bool,
    },
    /// Parse and validate the configuration only; print one summary line per service.
    Check {
        /// Path of the configuration file.
        #[arg(default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Run a service's real strategy and health logic against simulated backends.
    Simulate(SimulateArgs),
    /// Show every service and backend of a running l4lb (its admin endpoint's /status).
    Status(StatusArgs),
    /// Take a backend of a running l4lb out of rotation or put it back (runtime API).
    Backend(BackendArgs),
    /// Print a shell completion script for l4lb.
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the l4lb(1) manual page (roff).
    Manpage,
}

/// Where `status` and `backend` find the running l4lb.
#[derive(Debug, Clone, clap::Args)]
pub struct AdminArgs {
    /// Address of the admin endpoint (`[admin] listen` of its configuration).
    #[arg(long, value_name = "ADDR", env = "L4LB_ADMIN", default_value = DEFAULT_ADMIN)]
    pub admin: String,
}

/// `l4lb status [--admin ADDR] [--json | --watch]`
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub admin: AdminArgs,
    /// Print the /status JSON document as it is, for scripts.
    #[arg(long, conflicts_with = "watch")]
    pub json: bool,
    /// Redraw the table every 2 seconds until Ctrl-C.
    #[arg(long)]
    pub watch: bool,
    /// With --watch: stop after this many tables.
    #[arg(long, value_name = "N", requires = "watch", value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
}

/// `l4lb backend drain|maint|ready SERVICE ADDRESS`
#[derive(Debug, clap::Args)]
pub struct BackendArgs {
    /// What to do: drain (no new clients), maint (no new clients, sessions
    /// closed) or ready (back in rotation).
    #[arg(value_enum)]
    pub action: BackendAction,
    /// The service's name.
    pub service: String,
    /// The backend's address as configured (e.g. 10.0.0.11:5432).
    pub address: String,
    #[command(flatten)]
    pub admin: AdminArgs,
    /// File holding the runtime API's bearer token (`[admin] token`); else $L4LB_TOKEN.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
}

/// A runtime-API action on one backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendAction {
    Drain,
    Maint,
    Ready,
}

impl BackendAction {
    /// The action's word in the runtime API's path.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Drain => "drain",
            Self::Maint => "maint",
            Self::Ready => "ready",
        }
    }
}

/// `l4lb simulate CONFIG --service NAME [--workload FILE] ...`
#[derive(Debug, clap::Args)]
pub struct SimulateArgs {
    /// Path of the configuration file.
    pub config: PathBuf,
    /// The service to simulate.
    #[arg(long)]
    pub service: String,
    /// Workload file (TOML: arrivals, durations, backends, events); default: 100/s for 60s.
    #[arg(long)]
    pub workload: Option<PathBuf>,
    /// Seed of every random draw (overrides the workload's `seed`).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Strategies to run side by side on the same workload, e.g. `round_robin,maglev`.
    #[arg(long, value_delimiter = ',')]
    pub compare: Vec<String>,
    /// Write an SVG plot of open sessions per backend over time.
    #[arg(long, value_name = "FILE")]
    pub plot: Option<PathBuf>,
    /// Print the report as one JSON document.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogTarget {
    Stderr,
    Syslog,
}
