//! Host keys that rotate: OpenSSH's `UpdateHostKeys`, for the learned known_hosts file only.
//!
//! After a login verified by a key on a plain line of the learned file, an OpenSSH server
//! announces every host key it has (`hostkeys-00@openssh.com`). The keys it announces that the
//! file does not have for the host are added (after the server proved it holds them), and the
//! file's keys for the host that it no longer announces are removed. The rules follow OpenSSH's
//! `clientloop.c`, and where it would skip the whole update so does this, only more strictly:
//!
//! - only lines that name exactly this host (its lookup name, written out or hashed) are ever
//!   changed; a line that names it through a pattern or a list of names, or an `@revoked` or
//!   `@cert-authority` line for it, means the file is managed by hand, and nothing is done;
//! - an announced or outgoing key that the file also lists under another name stops the update
//!   (the same server under two names would otherwise drift apart);
//! - the key this connection was verified with must be announced and still be in the file;
//! - a key `@revoked` for the host in either file, or already pinned for it in the global file,
//!   is never added; the global file is never written.
//!
//! The new file is written beside the old one and renamed over it under the writers' lock
//! (`lock.rs`), so that a reader sees the old file or the new one, never a part of either. A
//! symlinked file is replaced where the link points, and the new file keeps the old one's mode
//! and (when allowed) owner.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use russh::keys::PublicKey;
use russh::keys::ssh_key::HashAlg;
use russh::keys::ssh_key::known_hosts::{HostPatterns, Marker};
use russh::keys::ssh_key::public::KeyData;

use super::learn::sync_parent;
use super::lock::lock_current;
use super::{HostKeyError, HostsFile, KnownHosts, Line, lookup_name};

/// Why an announcement changes nothing, in words for a debug line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped(pub String);

impl std::fmt::Display for Skipped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What an announcement changes in the learned file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Plan {
    /// Announced keys the file does not have for the host, in the server's order.
    pub(super) add: Vec<KeyData>,
    /// The lines (1-based) of keys for the host that the server no longer announces, with them.
    pub(super) remove: Vec<(usize, KeyData)>,
}

/// One key added or removed, for the log and the tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// Its line: in the new file for an added key, in the old one for a removed key.
    pub line: usize,
    /// `ssh-ed25519`, ...
    pub algorithm: String,
    /// `SHA256:...`.
    pub fingerprint: String,
}

/// What [`KnownHosts::update_host_keys`] did to the learned file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Updated {
    /// Keys written, each on a line of its own at the end of the file.
    pub added: Vec<Change>,
    /// Lines taken out.
    pub removed: Vec<Change>,
}

impl KnownHosts {
    /// The announced keys that an update would add for `host:port`, which the server must
    /// prove it holds before [`KnownHosts::update_host_keys`] writes them (empty when there
    /// are only keys to remove); or why the announcement changes nothing. Reads the learned
    /// file as it is now, without the lock.
    pub fn host_keys_to_prove(
        &self,
        host: &str,
        port: u16,
        verified: &PublicKey,
        announced: &[PublicKey],
    ) -> Result<Vec<PublicKey>, Skipped> {
        let path = self.path();
        let content = match std::fs::read(path) {
            Ok(content) => content,
            Err(error) => return Err(Skipped(format!("cannot read {}: {error}", path.display()))),
        };
        let plan = self.plan(
            &content,
            &lookup_name(host, port),
            verified.key_data(),
            &key_data(announced),
        )?;
        if plan.add.is_empty() && plan.remove.is_empty() {
            // The usual case: no need to take the lock.
            return Err(Skipped("no key to add or remove".to_owned()));
        }
        Ok(plan
            .add
            .into_iter()
            .map(|key| PublicKey::new(key, ""))
            .collect())
    }

    /// Brings the learned file's keys for `host:port` in line with the server's announcement:
    /// under the writers' lock, reads the file again, adds the announced keys it lacks that are
    /// in `proven`, removes the ones the server no longer announces, and replaces the file
    /// atomically. Logs each change at info. `Ok(Err(_))` says why nothing was done.
    ///
    /// Blocking: waits for the lock while another process holds it.
    pub fn update_host_keys(
        &self,
        host: &str,
        port: u16,
        verified: &PublicKey,
        announced: &[PublicKey],
        proven: &[PublicKey],
    ) -> Result<Result<Updated, Skipped>, HostKeyError> {
        let path = self.path();
        let name = lookup_name(host, port);
        let write_error = |error| HostKeyError::Write {
            name: name.clone(),
            path: path.to_owned(),
            error,
        };
        let mut file = lock_current(path, OpenOptions::new().read(true)).map_err(write_error)?;
        let mut content = Vec::new();
        file.read_to_end(&mut content)
            .map_err(|error| HostKeyError::Read {
                path: path.to_owned(),
                error,
            })?;
        let mut plan = match self.plan(&content, &name, verified.key_data(), &key_data(announced)) {
            Ok(plan) => plan,
            Err(skipped) => return Ok(Err(skipped)),
        };
        // A key that became new since it was proven (someone removed its line meanwhile) waits
        // for the next connection's proof.
        let proven = key_data(proven);
        plan.add.retain(|key| proven.contains(key));
        if plan.add.is_empty() && plan.remove.is_empty() {
            return Ok(Err(Skipped("no key to add or remove".to_owned())));
        }
        let (bytes, added_lines) = rewrite(&content, &name, &plan);
        replace(path, &file, &bytes).map_err(write_error)?;
        drop(file);

        let updated = Updated {
            added: plan
                .add
                .iter()
                .zip(added_lines)
                .map(|(key, line)| change(line, key))
                .collect(),
            removed: plan
                .remove
                .iter()
                .map(|(line, key)| change(*line, key))
                .collect(),
        };
        for added in &updated.added {
            tracing::info!(
                known_hosts = %path.display(),
                line = added.line,
                fingerprint = %added.fingerprint,
                "added host key of {name}: {} {} at {}:{} (announced by the server, which \
                 proved it holds it, after a login verified by a known key)",
                added.algorithm,
                added.fingerprint,
                path.display(),
                added.line
            );
        }
        for removed in &updated.removed {
            tracing::info!(
                known_hosts = %path.display(),
                line = removed.line,
                fingerprint = %removed.fingerprint,
                "removed host key of {name}: {} {} from {}:{} (the server no longer offers it)",
                removed.algorithm,
                removed.fingerprint,
                path.display(),
                removed.line
            );
        }
        Ok(Ok(updated))
    }

    /// What the announcement of `announced` changes in the learned file `content` for `name`.
    /// The global file's lines are those read with this `KnownHosts`.
    pub(super) fn plan(
        &self,
        content: &[u8],
        name: &str,
        verified: &KeyData,
        announced: &[KeyData],
    ) -> Result<Plan, Skipped> {
        let skip = |why: String| Err(Skipped(why));
        let path = self.path().display();
        for (i, key) in announced.iter().enumerate() {
            if announced[..i].contains(key) {
                return skip("the server announced the same key twice".to_owned());
            }
        }
        if !announced.contains(verified) {
            return skip("the server did not announce the key it logged in with".to_owned());
        }
        let learned = KnownHosts::parse(self.path(), content);
        let mut kept: Vec<&KeyData> = Vec::new();
        let mut remove: Vec<(usize, KeyData)> = Vec::new();
        for line in learned.lines.iter().filter(|line| line.names(name)) {
            if line.marker.is_some() {
                return skip(format!(
                    "{path}:{} has an @revoked or @cert-authority line for {name}",
                    line.number
                ));
            }
            if !names_only(line, name) {
                return skip(format!(
                    "{path}:{} names {name} through a pattern or a list of names",
                    line.number
                ));
            }
            if announced.contains(&line.key) {
                kept.push(&line.key);
            } else {
                remove.push((line.number, line.key.clone()));
            }
        }
        if !kept.contains(&verified) {
            return skip(format!(
                "the key this connection was verified with is no longer in {path}"
            ));
        }
        // The same key under another name: changing it here would leave that name behind.
        let outgoing: Vec<&KeyData> = remove.iter().map(|(_, key)| key).collect();
        if let Some(line) = learned.lines.iter().find(|line| {
            !line.names(name) && (announced.contains(&line.key) || outgoing.contains(&&line.key))
        }) {
            return skip(format!(
                "{path}:{} has one of the keys of {name} under another name",
                line.number
            ));
        }
        let global: Vec<&Line> = self
            .lines
            .iter()
            .filter(|line| line.file == HostsFile::Global && line.names(name))
            .collect();
        let mut add = Vec::new();
        for key in announced {
            if kept.contains(&key) {
                continue;
            }
            if global
                .iter()
                .any(|line| line.key == *key && line.marker.is_none())
            {
                continue;
            }
            if let Some(line) = global
                .iter()
                .find(|line| line.key == *key && line.marker == Some(Marker::Revoked))
            {
                tracing::warn!(
                    "{name} announced a host key marked @revoked in {}:{}; not adding it",
                    self.path_of(HostsFile::Global).display(),
                    line.number
                );
                continue;
            }
            add.push(key.clone());
        }
        Ok(Plan { add, remove })
    }
}

/// Whether the line names `name` and nothing else: the name written out alone (as tunneld and
/// ssh write it), or hashed.
fn names_only(line: &Line, name: &str) -> bool {
    match &line.hosts {
        HostPatterns::Patterns(patterns) => {
            matches!(patterns.as_slice(), [only] if only.eq_ignore_ascii_case(name))
        }
        HostPatterns::HashedName { .. } => true,
    }
}

/// The file with the plan's lines taken out and its keys appended, with the line number of
/// each appended key. Every other byte is kept as it was: comments, malformed lines, spacing.
pub(super) fn rewrite(content: &[u8], name: &str, plan: &Plan) -> (Vec<u8>, Vec<usize>) {
    let removed: BTreeSet<usize> = plan.remove.iter().map(|(line, _)| *line).collect();
    let mut out = Vec::with_capacity(content.len() + plan.add.len() * 128);
    let mut lines = 0;
    let pieces: Vec<&[u8]> = content.split(|&byte| byte == b'\n').collect();
    for (index, piece) in pieces.iter().enumerate() {
        let last = index + 1 == pieces.len();
        if removed.contains(&(index + 1)) {
            continue;
        }
        if last && piece.is_empty() {
            // What follows the final newline.
            break;
        }
        out.extend_from_slice(piece);
        // A last line without its newline gets one, so that ours starts on a line of its own.
        out.push(b'\n');
        lines += 1;
    }
    let mut added = Vec::with_capacity(plan.add.len());
    for key in &plan.add {
        let entry = PublicKey::new(key.clone(), "")
            .to_openssh()
            .unwrap_or_default();
        out.extend_from_slice(name.as_bytes());
        out.push(b' ');
        out.extend_from_slice(entry.as_bytes());
        out.push(b'\n');
        lines += 1;
        added.push(lines);
    }
    (out, added)
}

/// Writes `bytes` to a new file beside the one `path` names (following a symlink) and renames
/// it over that file, while `locked`, the old file, is held locked. The new file takes the old
/// one's mode, and its owner when this process may give it.
fn replace(path: &Path, locked: &File, bytes: &[u8]) -> io::Result<()> {
    let target = std::fs::canonicalize(path)?;
    let temporary = temporary_beside(&target);
    let old = locked.metadata()?;
    // A leftover of a writer that died here (this pid, a previous boot) is not anyone's data.
    let _ = std::fs::remove_file(&temporary);
    let written = (|| {
        let mut new = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temporary)?;
        if let Err(error) = std::os::unix::fs::fchown(&new, Some(old.uid()), Some(old.gid())) {
            tracing::debug!(file = %target.display(), %error, "cannot keep the owner of known_hosts");
        }
        // After the owner: chown clears set-id bits, and the mode is the old file's exactly.
        new.set_permissions(old.permissions())?;
        new.write_all(bytes)?;
        new.sync_all()?;
        std::fs::rename(&temporary, &target)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written?;
    sync_parent(&target);
    Ok(())
}

/// `.NAME.tunneld-PID.tmp` in the directory of `target`.
fn temporary_beside(target: &Path) -> PathBuf {
    let name = target
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    target.with_file_name(format!(".{name}.tunneld-{}.tmp", std::process::id()))
}

fn key_data(keys: &[PublicKey]) -> Vec<KeyData> {
    keys.iter().map(|key| key.key_data().clone()).collect()
}

fn change(line: usize, key: &KeyData) -> Change {
    Change {
        line,
        algorithm: key.algorithm().to_string(),
        fingerprint: key.fingerprint(HashAlg::Sha256).to_string(),
    }
}

#[cfg(test)]
mod tests;
