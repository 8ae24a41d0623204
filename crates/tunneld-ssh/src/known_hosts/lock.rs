//! The exclusive lock that every writer of a learned known_hosts file takes.
//!
//! The lock is on the known_hosts file itself, so that accept-new (which appends) and the host
//! key update (which renames a new file over the old one) exclude each other. A rename leaves
//! whoever was waiting for the lock holding it on the old, now unlinked, file: so after taking
//! the lock, a writer checks that the path still names the file it locked, and opens it again
//! if not. A line appended to the old file would be lost.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// How often a writer follows a file replaced under it before giving up. Each round means
/// another writer finished a rewrite meanwhile, so this is never reached in practice.
const ATTEMPTS: usize = 100;

/// Opens `path` with `options` and takes an exclusive lock on it, waiting for other writers.
/// The lock is released when the returned file is closed.
pub(super) fn lock_current(path: &Path, options: &OpenOptions) -> io::Result<File> {
    for _ in 0..ATTEMPTS {
        let file = options.open(path)?;
        file.lock()?;
        if same_file(&file, path)? {
            return Ok(file);
        }
        // Replaced while we waited: the lock is on a file nobody reads any more.
    }
    Err(io::Error::other(
        "the file kept being replaced while waiting for its lock",
    ))
}

/// Whether `path` (following symlinks) is still the file `file` has open.
fn same_file(file: &File, path: &Path) -> io::Result<bool> {
    let open = file.metadata()?;
    match std::fs::metadata(path) {
        Ok(named) => Ok(named.dev() == open.dev() && named.ino() == open.ino()),
        // Removed meanwhile: open (and perhaps create) it again.
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(error) => Err(error),
    }
}
