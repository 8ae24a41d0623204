//! tunneld's configuration: TOML to a checked model.
//!
//! Pure and synchronous: no russh, no tokio. See `docs/configuration.md` for the file format
//! (the contract).
//! [`load`] reads a file, [`parse`] checks text, [`diff`] compares two configurations for a
//! reload. Every error is a [`ConfigError`] that reads `PATH:LINE:COLUMN: KEY: problem
//! (expected)`. [`load_with_findings`] also returns what `tunneld check` has to judge with more
//! than the file ([`Finding`]), and [`judge`] turns them into `check`'s verdict, given how names
//! resolve.
//!
//! Relative paths in the file (`identity_files`, `known_hosts`, `global_known_hosts`,
//! `auth_file`) are taken relative to the directory of the configuration file; `~` is not
//! expanded.

mod address;
mod daemon;
mod diff;
mod duration;
mod error;
mod findings;
mod forward;
mod hostspec;
mod listeners;
mod model;
mod near_names;
mod proxy;
mod raw;
mod rekey;
mod remote_ports;
mod resolve;
mod settings;
mod ssh_config;
mod streamlocal;
mod toml_error;
mod tunnel;
mod verdicts;

use std::path::{Path, PathBuf};

pub use daemon::Daemon;
pub use diff::{Change, diff};
pub use error::ConfigError;
pub use findings::{
    Finding, GatewayPorts, Location, NearHostName, RemotePortClash, ResolvedBy, describe_route,
};
pub use model::*;
pub use proxy::{Proxy, ProxyKind};
pub use settings::SUPPORTED_CIPHERS;
pub use ssh_config::equivalent_key as ssh_config_key;
pub use verdicts::{Resolve, Verdicts, judge};

/// The built-in defaults that depend on the machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Environment {
    /// The user to authenticate as when the file names none: the user running tunneld.
    pub user: String,
}

impl Environment {
    /// The environment of this process: the name of the user it runs as (from the user
    /// database, else `$USER`, else the numeric uid).
    pub fn current() -> Self {
        let uid = nix::unistd::getuid();
        let user = match nix::unistd::User::from_uid(uid) {
            Ok(Some(user)) => user.name,
            _ => std::env::var("USER")
                .ok()
                .filter(|user| !user.is_empty())
                .unwrap_or_else(|| uid.to_string()),
        };
        Environment { user }
    }
}

/// Reads and checks the configuration file at `path`, with the defaults of this machine.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    load_with_findings(path).map(|(config, _)| config)
}

/// [`load`], and what `tunneld check` has to judge, in the order they are written.
pub fn load_with_findings(path: &Path) -> Result<(Config, Vec<Finding>), ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
        path: path.to_path_buf(),
        error,
    })?;
    parse_with_findings(path, &text, &Environment::current())
}

/// Checks configuration `text`. `path` names the file in errors and in [`Config::path`], and its
/// directory is the base of relative paths in the file (made absolute against the current
/// directory when `path` is relative).
pub fn parse(path: &Path, text: &str, env: &Environment) -> Result<Config, ConfigError> {
    parse_with_findings(path, text, env).map(|(config, _)| config)
}

/// [`parse`], and what `tunneld check` has to judge, in the order they are written.
pub fn parse_with_findings(
    path: &Path,
    text: &str,
    env: &Environment,
) -> Result<(Config, Vec<Finding>), ConfigError> {
    let source = error::Source { path, text };
    let raw = raw::parse(&source)?;
    let base_dir = base_dir(path);
    resolve_file(source, &raw, env, &base_dir)
}

/// From the raw file to the model: what the tunnels are resolved against (`resolve`), each
/// tunnel (`tunnel`), then the checks across tunnels (`listeners`, `remote_ports`,
/// `near_names`). It lives here, above those modules, so that they depend on each other one
/// way only.
fn resolve_file(
    source: error::Source<'_>,
    raw: &raw::RawFile,
    env: &Environment,
    base_dir: &Path,
) -> Result<(Config, Vec<Finding>), ConfigError> {
    let resolver = resolve::Resolver::new(source, raw, env, base_dir)?;
    let tunnels_table = raw.tunnels.as_ref();
    let mut tunnels = Vec::new();
    for (name, raw_tunnel) in tunnels_table.iter().flat_map(|t| t.get_ref()) {
        tunnels.push(tunnel::resolve(&resolver, name, raw_tunnel)?);
    }
    if tunnels.is_empty() {
        let span = tunnels_table.map_or(0..0, toml::Spanned::span);
        return Err(source.error(
            &span,
            error::Key::root("tunnels"),
            "no tunnels defined (expected at least one [tunnels.NAME] table)",
        ));
    }
    let mut findings = listeners::check_across_tunnels(&source, &tunnels)?;
    listeners::check_sockets(&source, &tunnels)?;
    findings.extend(remote_ports::check(&source, &tunnels)?);
    findings.extend(near_names::find(&source, raw, &resolver.hosts, &tunnels));
    findings.sort_by_key(|finding| (finding.at().line, finding.at().column));
    tunnels.sort_by(|a, b| a.tunnel.name.cmp(&b.tunnel.name));
    let daemon = daemon::resolve(&source, raw.daemon.as_ref(), base_dir)?;
    let config = Config {
        path: source.path.to_path_buf(),
        daemon,
        tunnels: tunnels.into_iter().map(|t| t.tunnel).collect(),
    };
    Ok((config, findings))
}

fn base_dir(path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    absolute.parent().map(Path::to_path_buf).unwrap_or_default()
}
