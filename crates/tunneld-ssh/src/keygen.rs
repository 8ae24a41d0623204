//! Creating an identity file (`tunneld keygen`): a new ed25519 key in OpenSSH format, and its
//! `.pub` beside it.
//!
//! Each file appears whole or not at all: it is written to a temporary file in the same
//! directory (mode 0600, owned as asked), then linked into place, which fails rather than
//! replace a file that exists (`persist_noclobber`). An existing key is never touched.

use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use russh::keys::PrivateKey;
use russh::keys::ssh_key::LineEnding;
use russh::keys::ssh_key::private::{Ed25519Keypair, KeypairData};
use zeroize::Zeroizing;

/// Who owns the files created: a uid and gid (`--owner USER` of a root caller).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Owner {
    /// The user id.
    pub uid: u32,
    /// The group id.
    pub gid: u32,
}

/// Why a key could not be created.
#[derive(Debug, thiserror::Error)]
pub enum KeygenError {
    /// The `.pub` of a missing private key exists: it belongs to some other key, and writing
    /// a new one there would replace it.
    #[error(
        "{} exists but {} does not; refusing to replace it (remove it, or name another identity \
         file)",
        public.display(),
        private.display()
    )]
    StrayPublicKey {
        /// The private key file to be created.
        private: PathBuf,
        /// The `.pub` in the way.
        public: PathBuf,
    },
    /// The directory the key goes in does not exist: keygen does not guess its owner and mode.
    #[error(
        "cannot create {}: the directory {} does not exist (create it first, for instance \
         owned by root, group tunneld, mode 0750)",
        path.display(),
        dir.display()
    )]
    NoDirectory {
        /// The key file.
        path: PathBuf,
        /// Its directory.
        dir: PathBuf,
    },
    /// The OS random generator failed: no key was made.
    #[error("cannot create {}: the system's random generator failed: {error}", path.display())]
    Random {
        /// The key file.
        path: PathBuf,
        /// getrandom's error.
        error: getrandom::Error,
    },
    /// ssh-key could not encode the key (not expected for ed25519).
    #[error("cannot create {}: {error}", path.display())]
    Encode {
        /// The key file.
        path: PathBuf,
        /// ssh-key's error.
        error: russh::keys::ssh_key::Error,
    },
    /// Writing, owning or linking a file failed.
    #[error("cannot create {}: {error}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        error: io::Error,
    },
}

/// The public key file of a private key file: `KEY.pub`, as ssh-keygen names it.
pub fn public_path(private: &Path) -> PathBuf {
    let mut name = private.as_os_str().to_owned();
    name.push(".pub");
    PathBuf::from(name)
}

/// Creates a new ed25519 key at `path` (mode 0600) and `path.pub` (mode 0644), both owned by
/// `owner` when given, with `comment` in both. Returns the public key line
/// (`ssh-ed25519 AAAA... comment`). Fails, changing nothing, when either file exists.
pub fn create(path: &Path, comment: &str, owner: Option<Owner>) -> Result<String, KeygenError> {
    let public = public_path(path);
    if public.symlink_metadata().is_ok() {
        return Err(KeygenError::StrayPublicKey {
            private: path.to_owned(),
            public,
        });
    }
    let dir = directory(path);
    if !dir.is_dir() {
        return Err(KeygenError::NoDirectory {
            path: path.to_owned(),
            dir: dir.to_owned(),
        });
    }
    let key = generate(path, comment)?;
    let encode = |error| KeygenError::Encode {
        path: path.to_owned(),
        error,
    };
    let private_text = key.to_openssh(LineEnding::LF).map_err(encode)?;
    let public_line = key.public_key().to_openssh().map_err(encode)?;
    write_new(path, private_text.as_bytes(), 0o600, owner)?;
    write_new(&public, format!("{public_line}\n").as_bytes(), 0o644, owner)?;
    Ok(public_line)
}

/// ssh-key makes the key pair from 32 bytes of the OS random generator (an ed25519 private key
/// is that seed). `PrivateKey::random` would take the same generator but can only panic when
/// it fails; `getrandom::fill` says so.
fn generate(path: &Path, comment: &str) -> Result<PrivateKey, KeygenError> {
    let mut seed = Zeroizing::new([0u8; 32]);
    getrandom::fill(seed.as_mut()).map_err(|error| KeygenError::Random {
        path: path.to_owned(),
        error,
    })?;
    let keypair = KeypairData::Ed25519(Ed25519Keypair::from_seed(&seed));
    PrivateKey::new(keypair, comment).map_err(|error| KeygenError::Encode {
        path: path.to_owned(),
        error,
    })
}

fn directory(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// Writes `bytes` to a new file at `path`: a temporary file in the same directory, its mode and
/// owner set, synced, then linked into place without replacing anything.
fn write_new(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    owner: Option<Owner>,
) -> Result<(), KeygenError> {
    let failed = |error: io::Error| KeygenError::Write {
        path: path.to_owned(),
        error,
    };
    let mut file = tempfile::NamedTempFile::new_in(directory(path)).map_err(failed)?;
    if let Some(owner) = owner {
        std::os::unix::fs::fchown(file.as_file(), Some(owner.uid), Some(owner.gid))
            .map_err(failed)?;
    }
    file.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(failed)?;
    file.write_all(bytes).map_err(failed)?;
    file.as_file().sync_all().map_err(failed)?;
    file.persist_noclobber(path)
        .map_err(|error| failed(error.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_created_key_parses_and_its_pub_file_matches_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("id");
        let line = create(&path, "tunneld:db@pi", None).expect("created");
        assert!(line.starts_with("ssh-ed25519 AAAA"), "{line}");
        assert!(line.ends_with(" tunneld:db@pi"), "{line}");
        let text = std::fs::read_to_string(&path).expect("read");
        let key = russh::keys::decode_secret_key(&text, None).expect("parses");
        assert_eq!(
            key.public_key().to_openssh().expect("encode"),
            line,
            "the .pub is the private key's public half"
        );
        let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&public_path(&path)), 0o644);
        assert_eq!(
            std::fs::read_to_string(public_path(&path)).expect("read"),
            format!("{line}\n")
        );
    }

    #[test]
    fn an_existing_file_is_never_replaced() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("id");
        std::fs::write(&path, "keep me").expect("write");
        let err = create(&path, "c", None).expect_err("exists");
        assert!(
            matches!(&err, KeygenError::Write { error, .. } if error.kind() == io::ErrorKind::AlreadyExists),
            "{err}"
        );
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "keep me");
        assert_eq!(std::fs::read_dir(dir.path()).expect("list").count(), 1);

        let other = dir.path().join("other");
        std::fs::write(public_path(&other), "stale").expect("write");
        let err = create(&other, "c", None).expect_err("stray .pub");
        assert_eq!(
            err.to_string(),
            format!(
                "{0}.pub exists but {0} does not; refusing to replace it (remove it, or name \
                 another identity file)",
                other.display()
            )
        );
        assert!(!other.exists());

        let nowhere = dir.path().join("missing/id");
        let err = create(&nowhere, "c", None).expect_err("no directory");
        assert!(matches!(err, KeygenError::NoDirectory { .. }), "{err}");
    }
}
