//! tunneld: keeps named SSH tunnels up, unattended. The binary is a thin shell around the
//! libraries: it parses the command line, sets up logging and signals, and wires them together.

mod check;
mod cli;
mod control;
mod import;
mod keygen;
mod logging;
mod metrics;
mod metrics_state;
mod notify;
mod reload;
mod run;

use std::process::ExitCode;

use clap::Parser;

/// `EX_CONFIG` of sysexits.h: the configuration is invalid. systemd units do not restart on it.
pub(crate) const EXIT_CONFIG: u8 = 78;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    // `check --connect` prints its own lines: the connection's steps only for who asks.
    let quiet = matches!(cli.command, cli::Command::Check { connect: true, .. })
        && std::env::var_os("RUST_LOG").is_none();
    logging::init(cli.log_level.as_deref().or(quiet.then_some("warn")));
    match cli.command {
        cli::Command::Run { config } => run::run(&config),
        cli::Command::Check {
            config,
            connect,
            socket,
            tunnels,
        } => check::check(
            &config,
            &check::Connect {
                enabled: connect,
                socket,
                tunnels,
            },
        ),
        cli::Command::Status {
            daemon,
            json,
            tunnels,
        } => control::client::status(&daemon.target(), json, tunnels),
        // `--all` is the empty list: clap requires one or the other.
        cli::Command::Reconnect {
            daemon, tunnels, ..
        } => control::client::reconnect(&daemon.target(), tunnels),
        cli::Command::Reload { daemon } => control::client::reload(&daemon.target()),
        cli::Command::Keygen {
            config,
            tunnels,
            owner,
        } => keygen::keygen(&config, &tunnels, owner.as_deref()),
        cli::Command::ImportSshConfig { file, hosts } => {
            import::ssh_config(file.as_deref(), &hosts)
        }
        cli::Command::ImportSshLine { name, command } => {
            import::ssh_command(&command, name.as_deref())
        }
    }
}
