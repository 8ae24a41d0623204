//! accept-new: recording a host key in a known_hosts file that several processes may share.
//!
//! The entry is appended under an exclusive lock on the known_hosts file itself (`lock.rs`),
//! after reading and checking the file again under that lock: two processes learning the same
//! host write it once, and one that finds a different key written meanwhile refuses. Appending
//! (rather than a temporary file renamed over the old one) keeps the file's inode, owner, mode
//! and ACLs; only removing a line needs a rewrite, which `update.rs` does by a rename.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use russh::keys::PublicKey;
use russh::keys::ssh_key::public::KeyData;

use super::lock::lock_current;
use super::{HostKeyError, KnownHosts, lookup_name};

/// Where a learned key ended up.
pub(super) struct Learned {
    /// Its 1-based line number.
    pub(super) line: usize,
    /// False when another process had added the same key before we got the lock.
    pub(super) written: bool,
}

/// Records `key` for `host:port` in `path` (under `accept-new`), as OpenSSH's accept-new with
/// `HashKnownHosts no` does: `host keytype base64` for port 22, `[host]:port keytype base64`
/// otherwise. Takes an exclusive lock on the file, reads it again and re-checks under the lock:
/// a key that another process added meanwhile is not written twice, and a different key (or a
/// revocation) that appeared meanwhile is refused with the same error [`super::verify`] gives.
/// Creates the file (mode 0644) and its parent directory (mode 0700) when missing; an existing
/// file keeps its mode. Returns the 1-based line the key is on.
///
/// Blocking: waits for the lock while another process holds it.
pub fn learn(path: &Path, host: &str, port: u16, key: &PublicKey) -> Result<usize, HostKeyError> {
    learn_key(path, &lookup_name(host, port), key.key_data()).map(|learned| learned.line)
}

/// [`learn`] for a lookup name.
pub(super) fn learn_key(path: &Path, name: &str, key: &KeyData) -> Result<Learned, HostKeyError> {
    let write_error = |error| HostKeyError::Write {
        name: name.to_owned(),
        path: path.to_owned(),
        error,
    };
    let entry = PublicKey::new(key.clone(), "")
        .to_openssh()
        .map_err(|error| write_error(io::Error::other(error)))?;

    create_parent(path).map_err(write_error)?;
    let existed = path.symlink_metadata().is_ok();
    // O_APPEND: every write lands at the end of the file whatever the offset, and one write
    // puts the whole line there, so a reader that does not lock sees no interleaving.
    // Released when `file` is closed at the end of this function, on every path. The lock is
    // on the file the path names once we hold it: a host key update may have renamed a new
    // file over the one we opened first.
    let mut file = lock_current(
        path,
        OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o644),
    )
    .map_err(write_error)?;

    let mut content = Vec::new();
    file.read_to_end(&mut content)
        .map_err(|error| HostKeyError::Read {
            path: path.to_owned(),
            error,
        })?;
    if let Some(line) = KnownHosts::parse(path, &content).check_key(name, key)? {
        return Ok(Learned {
            line: line.number,
            written: false,
        });
    }

    // A last line without its newline (an editor, or a write cut short) must not have ours glued
    // to it.
    let unterminated = content.last().is_some_and(|&byte| byte != b'\n');
    let line =
        content.iter().filter(|&&byte| byte == b'\n').count() + 1 + usize::from(unterminated);
    let mut bytes = Vec::with_capacity(name.len() + entry.len() + 3);
    if unterminated {
        bytes.push(b'\n');
    }
    bytes.extend_from_slice(name.as_bytes());
    bytes.push(b' ');
    bytes.extend_from_slice(entry.as_bytes());
    bytes.push(b'\n');
    if let Err(error) = file.write_all(&bytes).and_then(|()| file.sync_data()) {
        // Cut off whatever part of the line got written (disk full), so that the next writer
        // does not append to half a line. Best effort: the write error is the one to report.
        let _ = file.set_len(content.len() as u64);
        return Err(write_error(error));
    }
    if !existed {
        // Make the new directory entry durable too; the file's own data already is.
        sync_parent(path);
    }
    Ok(Learned {
        line,
        written: true,
    })
}

/// Creates the directory known_hosts lives in, private to the service user like ~/.ssh.
fn create_parent(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => {
            DirBuilder::new().recursive(true).mode(0o700).create(dir)
        }
        _ => Ok(()),
    }
}

/// fsync of the parent directory. Failure is only logged: the entry is written, and at worst a
/// crash in the next moments loses a key that accept-new will learn again.
pub(super) fn sync_parent(path: &Path) {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    if let Err(error) = File::open(dir).and_then(|dir| dir.sync_all()) {
        tracing::debug!(dir = %dir.display(), %error, "cannot fsync the known_hosts directory");
    }
}
