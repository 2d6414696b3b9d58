//! Command-line interface: clap derive structs only, no behaviour.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// The configuration file used when none is given.
pub const DEFAULT_CONFIG: &str = "/etc/l4lb/lb.toml";

/// l4lb: a Layer-4 (TCP and UDP) load balancer.
#[derive(Debug, Parser)]
#[command(name = "l4lb", version, about, propagate_version = true)]
pub struct Cli {
    /// Log line format (logs go to stderr).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,

    /// Log level or filter (e.g. `debug`, `l4lb=debug`); overrides RUST_LOG. Default: info.
    #[arg(long, global = true)]
    pub log_level: Option<String>,

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
