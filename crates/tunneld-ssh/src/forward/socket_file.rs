//! The Unix socket a `local` forward listens on: bound with its configured mode, a stale file
//! left by a crash replaced, and removed again when the forward stops.

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tokio::net::UnixListener;
use tracing::{debug, info, warn};

use crate::error::TunnelError;

/// The socket file of a listener. Dropping it removes the file, unless something else has
/// replaced it since (another tunneld's, after a reload that moved the forward).
#[derive(Debug)]
pub struct SocketFile {
    path: PathBuf,
    id: (u64, u64),
}

impl SocketFile {
    /// Where the socket is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        let ours =
            std::fs::symlink_metadata(&self.path).is_ok_and(|m| (m.dev(), m.ino()) == self.id);
        if ours {
            match std::fs::remove_file(&self.path) {
                Ok(()) => debug!(path = %self.path.display(), "removed the socket file"),
                Err(err) => {
                    warn!(path = %self.path.display(), error = %err, "cannot remove the socket file")
                }
            }
        }
    }
}

/// Binds a Unix socket at `path` with permission bits `mode`.
///
/// A socket file already there is replaced only when nobody listens on it (a crash left it):
/// a live socket of another process is never taken over, and a file that is not a socket is
/// never removed.
/// The error is the tunnel's [`TunnelError::Listen`] once [`failed`] wraps it.
pub fn bind(path: &Path, mode: u32) -> io::Result<(UnixListener, SocketFile)> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_socket() => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "the path exists and is not a socket; not replacing it",
            ));
        }
        Ok(_) => match std::os::unix::net::UnixStream::connect(path) {
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    "another process listens on this socket",
                ));
            }
            Err(err) if err.kind() == io::ErrorKind::ConnectionRefused => {
                info!(path = %path.display(), "replacing a stale socket file that nobody listens on");
                std::fs::remove_file(path)?;
            }
            Err(err) => return Err(err),
        },
        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
        Err(err) => return Err(err),
    }
    let listener = UnixListener::bind(path)?;
    let meta = std::fs::symlink_metadata(path)?;
    let file = SocketFile {
        path: path.to_owned(),
        id: (meta.dev(), meta.ino()),
    };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok((listener, file))
}

/// The failure to bind the socket at `path`, as the tunnel reports it.
pub fn failed(path: &Path, source: io::Error) -> TunnelError {
    TunnelError::Listen {
        listen: path.display().to_string(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn replaces_a_stale_socket_and_never_a_live_one_or_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.sock");
        let (listener, file) = bind(&path, 0o600).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let live = bind(&path, 0o600).unwrap_err().to_string();
        assert!(live.contains("another process listens"), "{live}");
        // A crash: the listener closes and the file stays.
        drop(listener);
        std::mem::forget(file);
        let (_listener, file) = bind(&path, 0o660).unwrap();
        drop(file);
        assert!(!path.exists());
        std::fs::write(&path, b"data").unwrap();
        let plain = bind(&path, 0o600).unwrap_err().to_string();
        assert!(plain.contains("is not a socket"), "{plain}");
        assert_eq!(std::fs::read(&path).unwrap(), b"data");
    }
}
