//! tunneld's configuration: TOML to a checked model.
//!
//! Pure and synchronous: no russh, no tokio. See `docs/configuration.md` for the file format
//! (the contract).
//! [`load`] reads a file, [`parse`] checks text, [`diff`] compares two configurations for a
//! reload. Every error is a [`ConfigError`] that reads `PATH:LINE:COLUMN: KEY: problem
//! (expected)`.
//!
//! Relative paths in the file (`identity_files`, `known_hosts`, `global_known_hosts`,
//! `auth_file`) are taken relative to the directory of the configuration file; `~` is not
//! expanded.

mod address;
mod diff;
mod duration;
mod error;
mod forward;
mod hostspec;
mod listeners;
mod model;
mod raw;
mod resolve;
mod settings;
mod tunnel;

use std::path::{Path, PathBuf};

pub use diff::{Change, diff};
pub use error::ConfigError;
pub use model::*;
pub use settings::SUPPORTED_CIPHERS;

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
    let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
        path: path.to_path_buf(),
        error,
    })?;
    parse(path, &text, &Environment::current())
}

/// Checks configuration `text`. `path` names the file in errors and in [`Config::path`], and its
/// directory is the base of relative paths in the file (made absolute against the current
/// directory when `path` is relative).
pub fn parse(path: &Path, text: &str, env: &Environment) -> Result<Config, ConfigError> {
    let source = error::Source { path, text };
    let raw = raw::parse(&source)?;
    let base_dir = base_dir(path);
    resolve::resolve(source, &raw, env, &base_dir)
}

fn base_dir(path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    absolute.parent().map(Path::to_path_buf).unwrap_or_default()
}
