//! `tunneld keygen`: creates the identity files that the configuration names and does not find,
//! and prints, for each server of each tunnel, the `authorized_keys` line that lets that key do
//! what the tunnel needs there and nothing more.

mod lines;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use tunneld_config::{Hop, IdentityFile, Tunnel};
use tunneld_ssh::identity;
use tunneld_ssh::keygen::{self, Owner};

use crate::EXIT_CONFIG;

/// What one run has done with each key file: its public key, or the failure already reported.
type Keys = HashMap<PathBuf, Option<String>>;

pub(crate) fn keygen(path: &Path, tunnels: &[String], owner: Option<&str>) -> ExitCode {
    let config = match tunneld_config::load(path) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("{err}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    for name in tunnels {
        if !config.tunnels.iter().any(|t| &t.name == name) {
            eprintln!("{}: no tunnel named {name:?}", path.display());
            return ExitCode::FAILURE;
        }
    }
    let owner = match owner.map(owner_of).transpose() {
        Ok(owner) => owner,
        Err(err) => {
            eprintln!("tunneld: {err}");
            return ExitCode::FAILURE;
        }
    };
    let hostname = nix::unistd::gethostname()
        .ok()
        .and_then(|name| name.into_string().ok())
        .unwrap_or_else(|| "localhost".to_owned());
    let mut run = Run {
        config: path,
        owner,
        root: nix::unistd::geteuid().is_root(),
        hostname,
        keys: HashMap::new(),
        lines: HashMap::new(),
        problems: 0,
    };
    let selected = config
        .tunnels
        .iter()
        .filter(|t| tunnels.is_empty() || tunnels.contains(&t.name));
    for (i, tunnel) in selected.enumerate() {
        if i > 0 {
            println!();
        }
        run.tunnel(tunnel);
    }
    if run.problems > 0 {
        eprintln!("{}: {} problem(s)", path.display(), run.problems);
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

struct Run<'a> {
    config: &'a Path,
    owner: Option<Owner>,
    root: bool,
    /// This machine's name, in each key's comment: `tunneld:TUNNEL@HOSTNAME`.
    hostname: String,
    keys: Keys,
    /// The tunnel that got the first line for each (server, key).
    lines: HashMap<(String, String), String>,
    problems: usize,
}

impl Run<'_> {
    fn tunnel(&mut self, tunnel: &Tunnel) {
        let hops = lines::grants(tunnel);
        let count = hops.len();
        for (i, (hop, grant)) in hops.into_iter().enumerate() {
            let which = if i + 1 == count {
                "server".to_owned()
            } else {
                format!("jump host {} of {}", i + 1, count - 1)
            };
            println!(
                "# tunnel {}, {which} {}: in ~{}/.ssh/authorized_keys on {}",
                tunnel.name,
                hop.label,
                hop.user,
                lines::host_port(&hop.hostname, &hop.port.to_string())
            );
            let keys = self.public_keys(tunnel, hop);
            if keys.is_empty() {
                continue;
            }
            for note in &grant.notes {
                println!("# {note}");
            }
            for key in keys {
                let server = format!("{}@{}:{}", hop.user, hop.hostname, hop.port);
                if let Some(other) = self.lines.get(&(server.clone(), key.clone())) {
                    // sshd honours the first line that holds a key and ignores the rest.
                    println!(
                        "# this key already has a line on {server}, for tunnel {other}: sshd \
                         uses only the first, so merge the two lines' options into one, or give \
                         each tunnel its own identity file"
                    );
                } else {
                    self.lines
                        .insert((server, key.clone()), tunnel.name.clone());
                }
                println!("{}", grant.line(&key, &tunnel.name, &self.hostname));
            }
        }
    }

    /// The public keys (`ssh-ed25519 AAAA...`, without comment) of the hop's identity files,
    /// created where missing.
    fn public_keys(&mut self, tunnel: &Tunnel, hop: &Hop) -> Vec<String> {
        if hop.identity_files.is_empty() {
            println!(
                "# no identity_files: nothing to create (agent keys are the agent's to make); \
                 put the agent key in place of KEY"
            );
        }
        let mut out = Vec::new();
        for id in &hop.identity_files {
            let IdentityFile::Path(path) = id else {
                self.problem(
                    tunnel,
                    hop,
                    &format!(
                        "{id}: keygen cannot create a systemd credential; create the key with \
                         ssh-keygen -t ed25519, store it with systemd-creds, and paste its .pub \
                         with the options shown"
                    ),
                );
                continue;
            };
            let key = match self.keys.get(path) {
                Some(key) => key.clone(),
                None => {
                    let key = self.public_key(tunnel, hop, path);
                    self.keys.insert(path.clone(), key.clone());
                    key
                }
            };
            out.extend(key);
        }
        out
    }

    fn public_key(&mut self, tunnel: &Tunnel, hop: &Hop, path: &Path) -> Option<String> {
        let without_comment = |line: &str| line.split(' ').take(2).collect::<Vec<_>>().join(" ");
        if path.symlink_metadata().is_ok() {
            return match identity::load(&IdentityFile::Path(path.to_owned()), None) {
                Ok(loaded) => match loaded.key.public_key().to_openssh() {
                    Ok(line) => Some(without_comment(&line)),
                    Err(err) => {
                        self.problem(tunnel, hop, &format!("{}: {err}", path.display()));
                        None
                    }
                },
                Err(err) => {
                    self.problem(tunnel, hop, &err.to_string());
                    None
                }
            };
        }
        if self.root && self.owner.is_none() {
            self.problem(
                tunnel,
                hop,
                &format!(
                    "{} does not exist, and tunneld keygen runs as root: say who will own it \
                     with --owner USER (tunneld for the packaged service, or root to keep it \
                     root's)",
                    path.display()
                ),
            );
            return None;
        }
        let comment = format!("tunneld:{}@{}", tunnel.name, self.hostname);
        match keygen::create(path, &comment, self.owner) {
            Ok(line) => {
                eprintln!("tunneld: created {} and its .pub", path.display());
                Some(without_comment(&line))
            }
            Err(err) => {
                self.problem(tunnel, hop, &err.to_string());
                None
            }
        }
    }

    fn problem(&mut self, tunnel: &Tunnel, hop: &Hop, what: &str) {
        self.problems += 1;
        eprintln!(
            "{}: tunnels.{}: {}: {what}",
            self.config.display(),
            tunnel.name,
            hop.label
        );
    }
}

/// `--owner USER`: the user's uid and primary group.
fn owner_of(name: &str) -> Result<Owner, String> {
    match nix::unistd::User::from_name(name) {
        Ok(Some(user)) => Ok(Owner {
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
        }),
        Ok(None) => Err(format!("--owner {name}: no such user")),
        Err(err) => Err(format!("--owner {name}: cannot look the user up: {err}")),
    }
}
