//! tunneld: keeps named SSH tunnels up, unattended. The binary is a thin shell around the
//! libraries: it parses the command line, sets up logging and signals, and wires them together.

mod check;
mod cli;
mod logging;
mod metrics;
mod metrics_state;
mod notify;
mod run;

use std::process::ExitCode;

use clap::Parser;

/// `EX_CONFIG` of sysexits.h: the configuration is invalid. systemd units do not restart on it.
pub(crate) const EXIT_CONFIG: u8 = 78;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    logging::init(cli.log_level.as_deref());
    match cli.command {
        cli::Command::Run { config } => run::run(&config),
        cli::Command::Check { config } => check::check(&config),
    }
}
