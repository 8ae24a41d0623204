//! `tunneld check`: validates the file and its key and certificate files, one line per tunnel,
//! and judges what loading the file leaves to it (names that may be typos of `[hosts]` names,
//! listeners and remote ports that cannot all be had).

mod certificates;
mod connect;
mod resolve;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use tunneld_config::{Hop, Tunnel};
use tunneld_ssh::identity::{self, CheckOutcome};
use tunneld_ssh::socks::users::Credentials;

use crate::EXIT_CONFIG;

/// What `tunneld check` does after the static checks.
#[derive(Debug, Default)]
pub(crate) struct Connect {
    /// Connect each tunnel (`--connect`).
    pub(crate) enabled: bool,
    /// The daemon's control socket, instead of finding it from the file.
    pub(crate) socket: Option<PathBuf>,
    /// Only these tunnels (all when empty).
    pub(crate) tunnels: Vec<String>,
}

pub(crate) fn check(path: &Path, connect: &Connect) -> ExitCode {
    let (config, findings) = match tunneld_config::load_with_findings(path) {
        Ok(loaded) => loaded,
        Err(err) => {
            eprintln!("{err}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let mut lookup = resolve::Lookup::default();
    let verdicts =
        tunneld_config::judge(path, &findings, &mut |host| lookup.addresses(host).to_vec());
    let credentials_dir = std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from);
    let mut problems = verdicts.problems.len();
    for tunnel in &config.tunnels {
        println!("{}", describe(tunnel));
        for (_, warning) in verdicts
            .warnings
            .iter()
            .filter(|(of, _)| of.as_deref() == Some(tunnel.name.as_str()))
        {
            println!("  warning: {warning}");
        }
        for forward in &tunnel.dynamic {
            if let Some(users) = &forward.auth_file
                && let Err(err) = Credentials::load(users)
            {
                problems += 1;
                eprintln!(
                    "{}: tunnels.{}: dynamic {}: {err}",
                    path.display(),
                    tunnel.name,
                    forward.spec
                );
            }
        }
        for (hop_name, hop) in hops(tunnel) {
            for id in &hop.identity_files {
                match identity::check(id, credentials_dir.as_deref()) {
                    Ok(CheckOutcome::Usable { .. }) => {}
                    Ok(CheckOutcome::Unverifiable(why)) => {
                        println!("  note: {hop_name}: {why}");
                    }
                    Err(err) => {
                        problems += 1;
                        eprintln!(
                            "{}: tunnels.{}: {hop_name}: {err}",
                            path.display(),
                            tunnel.name
                        );
                    }
                }
            }
            problems +=
                certificates::report(path, tunnel, &hop_name, hop, credentials_dir.as_deref());
        }
    }
    for (_, warning) in verdicts.warnings.iter().filter(|(of, _)| of.is_none()) {
        println!("warning: {warning}");
    }
    for problem in &verdicts.problems {
        eprintln!("{problem}");
    }
    if problems > 0 {
        eprintln!("{}: {problems} problem(s)", path.display());
        return ExitCode::from(EXIT_CONFIG);
    }
    println!("{}: OK, {} tunnel(s)", path.display(), config.tunnels.len());
    if connect.enabled {
        return connect_all(path, &config.tunnels, connect);
    }
    ExitCode::SUCCESS
}

/// `--connect`: exit 0 when every tunnel and forward passed, 1 otherwise, 2 for a tunnel name
/// the file does not have.
fn connect_all(path: &Path, tunnels: &[Tunnel], connect: &Connect) -> ExitCode {
    if let Some(unknown) = connect
        .tunnels
        .iter()
        .find(|name| !tunnels.iter().any(|t| &t.name == *name))
    {
        eprintln!("{}: no tunnel named {unknown}", path.display());
        return ExitCode::from(2);
    }
    let chosen: Vec<&Tunnel> = tunnels
        .iter()
        .filter(|t| connect.tunnels.is_empty() || connect.tunnels.contains(&t.name))
        .collect();
    let status = match &connect.socket {
        Some(socket) => crate::control::client::status_of(socket),
        None => crate::control::client::daemon_status(path),
    };
    let held = connect::Held::from_status(status.as_ref());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("tunneld: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let mut failures = 0;
    for tunnel in chosen {
        failures += runtime.block_on(connect::tunnel(tunnel, &held));
    }
    if failures > 0 {
        eprintln!("{}: {failures} connection check(s) failed", path.display());
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

fn hops(tunnel: &Tunnel) -> impl Iterator<Item = (String, &Hop)> {
    tunnel
        .jump
        .iter()
        .enumerate()
        .map(|(i, hop)| (format!("hop {} ({})", i + 1, hop.label), hop))
        .chain(std::iter::once((
            format!("host {}", tunnel.target.label),
            &tunnel.target,
        )))
}

/// `db: dbadmin@192.168.1.50:22 via bastion; local 5432:localhost:5432; remote ...`
fn describe(tunnel: &Tunnel) -> String {
    let target = &tunnel.target;
    // An IPv6 address goes in brackets, the form `host` accepts (`u@[::1]:22`): the line can be
    // pasted back into the file.
    let hostname = if target.hostname.contains(':') {
        format!("[{}]", target.hostname)
    } else {
        target.hostname.clone()
    };
    let mut line = format!(
        "{}: {}@{hostname}:{}",
        tunnel.name, target.user, target.port
    );
    if !tunnel.jump.is_empty() {
        let via: Vec<&str> = tunnel.jump.iter().map(|hop| hop.label.as_str()).collect();
        line.push_str(&format!(" via {}", via.join(", ")));
    }
    if let Some(proxy) = &tunnel.jump.first().unwrap_or(target).proxy {
        line.push_str(&format!(" through proxy {proxy}"));
    }
    for forward in &tunnel.local {
        line.push_str(&format!("; local {}", forward.spec));
    }
    for forward in &tunnel.remote {
        line.push_str(&format!("; remote {}", forward.spec));
    }
    for forward in &tunnel.dynamic {
        line.push_str(&format!("; dynamic {}", forward.spec));
    }
    line
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use tunneld_config::{Environment, parse};

    use super::describe;

    #[test]
    fn an_ipv6_target_is_printed_in_brackets_as_the_file_takes_it() {
        let env = Environment {
            user: "runner".to_owned(),
        };
        let text = "[tunnels.t]\nhost = \"u@[::1]:22206\"\nuse_agent = true\n\
                    local = [\"5432:localhost:5432\"]\n\
                    [tunnels.v4]\nhost = \"127.0.0.1\"\nuse_agent = true\n\
                    proxy = \"socks5://[::1]:1080\"\n\
                    local = [\"5433:localhost:5432\"]\n";
        let config = parse(Path::new("t.toml"), text, &env).expect("valid");
        let lines: Vec<String> = config.tunnels.iter().map(describe).collect();
        assert_eq!(
            lines,
            [
                "t: u@[::1]:22206; local 5432:localhost:5432",
                "v4: runner@127.0.0.1:22 through proxy socks5://[::1]:1080; local 5433:localhost:5432",
            ]
        );
    }
}
