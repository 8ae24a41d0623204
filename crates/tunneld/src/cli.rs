//! The command line (CONFIG.md is the contract).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// The configuration file read when `--config` is not given.
pub(crate) const DEFAULT_CONFIG: &str = "/etc/tunneld/tunneld.toml";

/// tunneld keeps SSH tunnels (local, remote and dynamic forwards) up, unattended, and reports
/// their health to systemd.
#[derive(Debug, Parser)]
#[command(name = "tunneld", version, about, long_about = None)]
pub(crate) struct Cli {
    /// Log level or filter (error, warn, info, debug, trace, or a RUST_LOG-style filter).
    /// Overrides RUST_LOG.
    #[arg(long, global = true, value_name = "LEVEL")]
    pub(crate) log_level: Option<String>,

    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run every tunnel of the file in the foreground until SIGTERM or SIGINT; SIGHUP reloads.
    Run {
        /// The configuration file.
        #[arg(long, short, default_value = DEFAULT_CONFIG, value_name = "PATH")]
        config: PathBuf,
    },
    /// Validate the file (syntax, types, semantics, key files) and print one line per tunnel.
    Check {
        /// The configuration file.
        #[arg(long, short, default_value = DEFAULT_CONFIG, value_name = "PATH")]
        config: PathBuf,
    },
}
