//! `tunneld import-ssh-config` and `tunneld import-ssh-command`: the TOML on stdout, warnings
//! on stderr.

use std::path::Path;
use std::process::ExitCode;

use tunneld_import::{Import, ImportError, Local};

pub(crate) fn ssh_config(file: Option<&Path>, hosts: &[String]) -> ExitCode {
    let local = Local::current();
    let default = local.home.join(".ssh/config");
    let file = file.unwrap_or(&default);
    report(tunneld_import::import_config(file, hosts, &local))
}

pub(crate) fn ssh_command(command: &[String], name: Option<&str>) -> ExitCode {
    report(tunneld_import::import_command(
        command,
        name,
        &Local::current(),
    ))
}

/// 0 when there is a tunnel to run, 1 otherwise: nothing to import, or an input that cannot
/// be read.
fn report(import: Result<Import, ImportError>) -> ExitCode {
    let import = match import {
        Ok(import) => import,
        Err(err) => {
            eprintln!("tunneld: {err}");
            return ExitCode::FAILURE;
        }
    };
    print!("{}", import.toml);
    for warning in &import.warnings {
        eprintln!("tunneld: warning: {warning}");
    }
    if import.tunnels == 0 {
        eprintln!(
            "tunneld: nothing to import: no host with a LocalForward, RemoteForward or \
             DynamicForward"
        );
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
