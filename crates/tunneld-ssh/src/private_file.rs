//! Reading a file that must be private, as OpenSSH insists for keys: private keys and the users
//! files of SOCKS forwards. Both report the same failures, with the same words.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use zeroize::{Zeroize, Zeroizing};

/// What a private file holds, for messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrivateFileKind {
    /// A private key (`identity_files`).
    Key,
    /// The users file of a SOCKS forward (`auth_file`).
    SocksUsers,
}

/// Why a private file could not be read.
#[derive(Debug)]
pub enum PrivateFileProblem {
    /// It does not exist.
    Missing,
    /// It exists but cannot be opened or read.
    Unreadable(io::Error),
    /// It is a directory, a device, a socket...
    NotRegular,
    /// Readable or writable by group or others: the permission bits found.
    TooOpen(u32),
    /// Larger than such a file can reasonably be.
    TooLarge,
}

/// A private file that cannot be used, and why.
///
/// I/O errors are part of the message rather than `source()`, so that printing the message says
/// everything once.
#[derive(Debug, thiserror::Error)]
#[error("{}", self.describe())]
pub struct PrivateFileError {
    /// The file.
    pub path: PathBuf,
    /// What it was read as.
    pub kind: PrivateFileKind,
    /// What is wrong.
    pub problem: PrivateFileProblem,
}

impl PrivateFileError {
    /// Whether retrying cannot help until someone acts (puts the file in place, fixes its mode,
    /// replaces it). Only I/O failures other than "permission denied" may go away by themselves.
    pub fn is_permanent(&self) -> bool {
        match &self.problem {
            PrivateFileProblem::Unreadable(error) => {
                error.kind() == io::ErrorKind::PermissionDenied
            }
            _ => true,
        }
    }

    fn describe(&self) -> String {
        let path = self.path.display();
        let not_one = match self.kind {
            PrivateFileKind::Key => "not a usable private key",
            PrivateFileKind::SocksUsers => "not a users file",
        };
        match &self.problem {
            PrivateFileProblem::Missing => format!("{path} does not exist"),
            PrivateFileProblem::Unreadable(error) => format!("cannot read {path}: {error}"),
            PrivateFileProblem::NotRegular => format!("{path} is {not_one}: not a regular file"),
            PrivateFileProblem::TooOpen(mode) => format!(
                "{path} is {} by group/others; refusing to use it",
                if mode & 0o044 != 0 {
                    "readable"
                } else {
                    "writable"
                }
            ),
            PrivateFileProblem::TooLarge => match self.kind {
                PrivateFileKind::Key => {
                    format!("{path} is {not_one}: larger than 1 MiB, so not a private key")
                }
                PrivateFileKind::SocksUsers => format!("{path} is {not_one}: larger than 1 MiB"),
            },
        }
    }
}

/// Either kind of file is at most this large: a key is a few KiB, a users file of a few
/// hundred lines too. A bigger file is a mistake, and reading all of it would waste memory.
const MAX_SIZE: u64 = 1 << 20;

/// Opens `path`, checks what was opened (fstat, so the file checked is the file read even if the
/// path changes meanwhile: a regular file, no group or other bits), and reads at most 1 MiB.
pub(crate) fn read(path: &Path, kind: PrivateFileKind) -> Result<Vec<u8>, PrivateFileError> {
    read_bytes(path).map_err(|problem| PrivateFileError {
        path: path.to_owned(),
        kind,
        problem,
    })
}

/// The first `limit` bytes of `path`, whatever its mode: only to say what a refused file is (a
/// public key named as a private one is usually mode 0644, and "readable by group/others" would
/// send its owner the wrong way). Wiped when dropped, since the file may be a private key after
/// all. `None` when it cannot be read.
pub(crate) fn peek(path: &Path, limit: u64) -> Option<Zeroizing<Vec<u8>>> {
    let mut bytes = Zeroizing::new(Vec::new());
    File::open(path)
        .ok()?
        .take(limit)
        .read_to_end(&mut bytes)
        .ok()?;
    Some(bytes)
}

fn read_bytes(path: &Path) -> Result<Vec<u8>, PrivateFileProblem> {
    let unreadable = |error: io::Error| {
        if error.kind() == io::ErrorKind::NotFound {
            PrivateFileProblem::Missing
        } else {
            PrivateFileProblem::Unreadable(error)
        }
    };
    let file = File::open(path).map_err(unreadable)?;
    let metadata = file.metadata().map_err(unreadable)?;
    if !metadata.is_file() {
        return Err(PrivateFileProblem::NotRegular);
    }
    let mode = metadata.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(PrivateFileProblem::TooOpen(mode));
    }
    let mut bytes = Vec::new();
    file.take(MAX_SIZE.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(unreadable)?;
    if bytes.len() as u64 > MAX_SIZE {
        // The caller may hold secrets in such files: do not leave them in freed memory.
        bytes.zeroize();
        return Err(PrivateFileProblem::TooLarge);
    }
    Ok(bytes)
}
