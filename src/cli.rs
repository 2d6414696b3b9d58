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
    },
    /// Parse and validate the configuration only; print one summary line per service.
    Check {
        /// Path of the configuration file.
        #[arg(default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}
