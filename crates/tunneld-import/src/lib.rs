//! Translates what ssh users already have, an OpenSSH client config (`~/.ssh/config`) or an
//! `ssh`/`autossh` command line, into tunneld's TOML (docs/importing.md).
//!
//! OpenSSH is the model: a host's options are what `ssh -G` would print for it (`Host` and
//! `Match` blocks, `Include`s, the first value of an option wins). Nothing is executed, not
//! `Match exec` and not `ProxyCommand`. Every option that has no tunneld equivalent becomes a
//! TOML comment that says so; nothing is dropped without a word.
//!
//! Layers, lowest first: `lexer`, `pattern`, `paths`; `files`; `evaluate`, `command`; `map`,
//! `render`; `build`.

mod build;
mod command;
mod evaluate;
mod files;
mod lexer;
mod map;
mod paths;
mod pattern;
mod render;

use std::path::{Path, PathBuf};

/// Where the docs explain what tunneld deliberately leaves out; comments point there.
pub const NOT_DONE: &str =
    "\"What tunneld deliberately does not do\" in configuration.md (/usr/share/doc/tunneld)";

/// The invoking user, as ssh sees them: the defaults of a config (`User`, `~`, `%d`, the default
/// identity files).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Local {
    /// The login name (ssh's default `User`).
    pub user: String,
    /// The home directory, from the user database as ssh takes it (not `$HOME`).
    pub home: PathBuf,
    /// The numeric user id (`%i`).
    pub uid: u32,
    /// This machine's host name (`%l`).
    pub hostname: String,
    /// The directory relative paths are taken from.
    pub cwd: PathBuf,
}

impl Local {
    /// The user running this process.
    pub fn current() -> Local {
        let uid = nix::unistd::getuid();
        let user = nix::unistd::User::from_uid(uid).ok().flatten();
        let home = user
            .as_ref()
            .map(|user| user.dir.clone())
            .or_else(|| std::env::var_os("HOME").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("/"));
        let name = user
            .map(|user| user.name)
            .or_else(|| std::env::var("USER").ok())
            .unwrap_or_else(|| uid.to_string());
        let hostname = nix::unistd::gethostname()
            .ok()
            .and_then(|name| name.into_string().ok())
            .unwrap_or_default();
        Local {
            user: name,
            home,
            uid: uid.as_raw(),
            hostname,
            cwd: std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/")),
        }
    }
}

/// What an import produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Import {
    /// The TOML text, comments included.
    pub toml: String,
    /// Warnings for stderr (each also a comment in the TOML).
    pub warnings: Vec<String>,
    /// How many `[tunnels]` tables it holds; 0 means there was nothing to import.
    pub tunnels: usize,
}

/// Why an import failed.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// A file could not be read.
    #[error("{}: cannot read: {error}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// A line that OpenSSH would refuse too.
    #[error("{at}: {message}")]
    Line {
        /// `PATH:LINE`.
        at: String,
        /// What is wrong.
        message: String,
    },
    /// A command line that is not an ssh command.
    #[error("{0}")]
    Command(String),
}

/// `tunneld import-ssh-config`: the hosts of `config` (all those a `Host` line names without a
/// wildcard, when `hosts` is empty) as tunneld's TOML. A host with forwards becomes a tunnel;
/// its jump hosts become `[hosts]` entries.
pub fn import_config(
    config: &Path,
    hosts: &[String],
    local: &Local,
) -> Result<Import, ImportError> {
    build::from_config(config, hosts, local)
}

/// `tunneld import-ssh-command`: one `ssh` or `autossh` command line (`args[0]` is the program)
/// as one tunnel, named `name` or after the destination.
pub fn import_command(
    args: &[String],
    name: Option<&str>,
    local: &Local,
) -> Result<Import, ImportError> {
    build::from_command(args, name, local)
}
