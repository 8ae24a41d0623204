//! Pieces of tunneld's configuration for the test sshds: `[hosts.NAME]` entries and the
//! known_hosts files they point to.

use std::path::{Path, PathBuf};

use crate::sshd::Sshd;

/// Writes `dir/known_hosts_NAME` holding `line` (and a newline), and returns its path.
pub fn known_hosts_file(dir: &Path, name: &str, line: &str) -> PathBuf {
    let path = dir.join(format!("known_hosts_{name}"));
    std::fs::write(&path, format!("{line}\n")).unwrap();
    path
}

/// A `[hosts.NAME]` entry for `sshd`: 127.0.0.1, its port, user and client key, and a
/// known_hosts file of its own (`dir/known_hosts_NAME`, written now) that trusts its host key.
/// `extra` (whole lines) is appended to the table as is.
pub fn host_entry(dir: &Path, name: &str, sshd: &Sshd, extra: &str) -> String {
    let known_hosts = known_hosts_file(dir, name, &sshd.known_hosts_line());
    HostEntry::new(name, sshd, &known_hosts).extra(extra).toml()
}

/// A `[hosts.NAME]` entry that differs from [`host_entry`]'s: another known_hosts file, host
/// name, port or key, or extra lines.
#[derive(Debug, Clone)]
#[must_use]
pub struct HostEntry {
    name: String,
    hostname: String,
    port: u16,
    user: String,
    identity: PathBuf,
    known_hosts: PathBuf,
    extra: String,
}

impl HostEntry {
    /// An entry `name` that logs in to `sshd` at 127.0.0.1 as its user with its client key, and
    /// checks the host key against `known_hosts`.
    pub fn new(name: &str, sshd: &Sshd, known_hosts: &Path) -> Self {
        Self {
            name: name.to_owned(),
            hostname: "127.0.0.1".to_owned(),
            port: sshd.port(),
            user: sshd.user().to_owned(),
            identity: sshd.client_key().private.clone(),
            known_hosts: known_hosts.to_owned(),
            extra: String::new(),
        }
    }

    /// Another `hostname` (such as `localhost`, resolved by the previous hop).
    pub fn hostname(mut self, hostname: &str) -> Self {
        hostname.clone_into(&mut self.hostname);
        self
    }

    /// Another port (one where no sshd listens, or a mute listener).
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Another private key to offer.
    pub fn identity(mut self, key: &Path) -> Self {
        key.clone_into(&mut self.identity);
        self
    }

    /// Lines appended to the table as they are (each ending in a newline).
    pub fn extra(mut self, lines: &str) -> Self {
        lines.clone_into(&mut self.extra);
        self
    }

    /// The table, followed by an empty line.
    pub fn toml(&self) -> String {
        format!(
            "[hosts.{name}]\nhostname = \"{hostname}\"\nport = {port}\nuser = \"{user}\"\n\
             identity_files = [\"{identity}\"]\nknown_hosts = \"{known_hosts}\"\n{extra}\n",
            name = self.name,
            hostname = self.hostname,
            port = self.port,
            user = self.user,
            identity = self.identity.display(),
            known_hosts = self.known_hosts.display(),
            extra = self.extra,
        )
    }
}
