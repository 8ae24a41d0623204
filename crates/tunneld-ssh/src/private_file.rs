//! Reading a file that must be private, as OpenSSH insists for keys: private keys and the users
//! files of SOCKS forwards. Each caller turns the failure into its own error and message.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Why a private file could not be read.
#[derive(Debug)]
pub(crate) enum PrivateFileError {
    Missing,
    Unreadable(io::Error),
    NotRegular,
    /// Readable or writable by group or others: the permission bits found.
    TooOpen(u32),
    /// Larger than the caller's limit.
    TooLarge,
}

/// Opens `path`, checks what was opened (fstat, so the file checked is the file read even if the
/// path changes meanwhile: a regular file, no group or other bits), and reads at most `max`
/// bytes of it.
pub(crate) fn read(path: &Path, max: u64) -> Result<Vec<u8>, PrivateFileError> {
    let unreadable = |error: io::Error| {
        if error.kind() == io::ErrorKind::NotFound {
            PrivateFileError::Missing
        } else {
            PrivateFileError::Unreadable(error)
        }
    };
    let file = File::open(path).map_err(unreadable)?;
    let metadata = file.metadata().map_err(unreadable)?;
    if !metadata.is_file() {
        return Err(PrivateFileError::NotRegular);
    }
    let mode = metadata.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(PrivateFileError::TooOpen(mode));
    }
    let mut bytes = Vec::new();
    file.take(max.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(unreadable)?;
    if bytes.len() as u64 > max {
        // The caller may hold secrets in such files: do not leave them in freed memory.
        bytes.fill(0);
        return Err(PrivateFileError::TooLarge);
    }
    Ok(bytes)
}
