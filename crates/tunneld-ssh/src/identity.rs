//! Private keys to authenticate with: where a key file is (`credential:NAME`), whether it is
//! private enough to use, and parsing it.
//!
//! Key files are read again on every connection attempt, so a problem here fails that attempt
//! with a reason (and the tunnel retries), never the daemon; `tunneld check` reports the same
//! problems as errors. Nothing here prompts: an encrypted key is refused with advice.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use russh::keys::ssh_key::{Fingerprint, HashAlg};
use russh::keys::{Algorithm, PrivateKey};
use tunneld_config::IdentityFile;
use zeroize::Zeroizing;

use crate::private_file::{self, PrivateFileError, PrivateFileKind, PrivateFileProblem};

mod short_scalar;

/// A private key read from an identity file.
#[derive(Clone)]
pub struct LoadedKey {
    /// Where it came from, as the configuration names it (for messages).
    pub source: IdentityFile,
    /// The file it was read from (`credential:NAME` resolved).
    pub path: PathBuf,
    /// The key.
    pub key: Arc<PrivateKey>,
}

impl fmt::Debug for LoadedKey {
    // Never the key material: the source, the type and the public fingerprint identify it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadedKey")
            .field("source", &self.source.to_string())
            .field("algorithm", &self.key.algorithm().as_str())
            .field(
                "fingerprint",
                &self
                    .key
                    .public_key()
                    .fingerprint(HashAlg::Sha256)
                    .to_string(),
            )
            .finish_non_exhaustive()
    }
}

/// What `tunneld check` learned about an identity file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckOutcome {
    /// The key exists, is private, and parses.
    Usable {
        /// The file (`credential:NAME` resolved).
        path: PathBuf,
        /// Its type.
        algorithm: Algorithm,
        /// Its SHA256 fingerprint.
        fingerprint: Fingerprint,
    },
    /// It cannot be checked here (a `credential:NAME` outside the service, where
    /// `$CREDENTIALS_DIRECTORY` is not set); the reason says so. Not a failure.
    Unverifiable(String),
}

/// Why an identity file cannot be used.
///
/// I/O errors are part of the message rather than `source()`, so that printing the message says
/// everything once.
#[derive(thiserror::Error, Debug)]
pub enum KeyError {
    /// The file is missing, unreadable, or not private.
    #[error(transparent)]
    File(#[from] PrivateFileError),
    /// It needs a passphrase, and tunneld never prompts.
    #[error(
        "{} is encrypted with a passphrase; tunneld cannot prompt for it: use a key without a \
         passphrase (readable only by the service user), or load it into an ssh-agent and set \
         use_agent = true",
        path.display()
    )]
    Encrypted {
        /// The key file.
        path: PathBuf,
    },
    /// It is not a private key that tunneld can use.
    #[error("{} is not a usable private key: {reason}", path.display())]
    Invalid {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// `credential:NAME`, but `$CREDENTIALS_DIRECTORY` is not set (not running under systemd
    /// with `LoadCredential=`).
    #[error(
        "credential:{name} needs $CREDENTIALS_DIRECTORY (set by systemd for a unit with \
         LoadCredential=), which is not set"
    )]
    NoCredentialsDirectory {
        /// The credential's name.
        name: String,
    },
}

impl KeyError {
    /// Whether retrying cannot help until someone acts (puts the key in place, fixes its mode,
    /// replaces it). Only I/O failures other than "permission denied" may go away by themselves.
    pub fn is_permanent(&self) -> bool {
        match self {
            KeyError::File(error) => error.is_permanent(),
            _ => true,
        }
    }
}

/// The file an identity names: the path itself, or `credential:NAME` as
/// `credentials_dir/NAME`. `credentials_dir` is the value of `$CREDENTIALS_DIRECTORY` (passed
/// in rather than read here, for tests); unset or empty means there is none.
pub fn resolve(id: &IdentityFile, credentials_dir: Option<&Path>) -> Result<PathBuf, KeyError> {
    match id {
        IdentityFile::Path(path) => Ok(path.clone()),
        IdentityFile::Credential(name) => {
            let Some(dir) = credentials_dir.filter(|dir| !dir.as_os_str().is_empty()) else {
                return Err(KeyError::NoCredentialsDirectory { name: name.clone() });
            };
            // The configuration checks names; this only makes sure that no name can ever reach
            // outside the credentials directory.
            if name.is_empty() || name.contains('/') || name == "." || name == ".." {
                return Err(KeyError::Invalid {
                    path: dir.join(name),
                    reason: format!("credential name {name:?} is not a file name"),
                });
            }
            Ok(dir.join(name))
        }
    }
}

/// Resolves, checks and parses an identity file: it must exist, be a regular file (symlinks are
/// followed), be neither readable nor writable by group or others, and hold an unencrypted
/// private key (OpenSSH format, or PEM: PKCS#1, SEC1, PKCS#8). Blocking file I/O.
pub fn load(id: &IdentityFile, credentials_dir: Option<&Path>) -> Result<LoadedKey, KeyError> {
    let path = resolve(id, credentials_dir)?;
    // Wiped when dropped (russh and ssh-key keep their own copies of the key, zeroized on drop).
    let bytes = match private_file::read(&path, PrivateFileKind::Key) {
        Ok(bytes) => Zeroizing::new(bytes),
        // A `.pub` file is mode 0644 as ssh-keygen writes it: that it is the public half is
        // the mistake to report, not its mode (chmod 600 would only lead to this message).
        Err(error)
            if matches!(error.problem, PrivateFileProblem::TooOpen(_))
                && private_file::peek(&path, PEEK)
                    .is_some_and(|head| std::str::from_utf8(&head).is_ok_and(looks_public)) =>
        {
            return Err(KeyError::Invalid {
                path,
                reason: PUBLIC_KEY.to_owned(),
            });
        }
        Err(error) => return Err(error.into()),
    };
    let parsed = parse(&path, &bytes);
    Ok(LoadedKey {
        source: id.clone(),
        path,
        key: Arc::new(parsed?),
    })
}

/// What `tunneld check` does with an identity file: the checks of [`load`]. A
/// `credential:NAME` without `$CREDENTIALS_DIRECTORY` is [`CheckOutcome::Unverifiable`]
/// rather than an error, since only the service gets that directory.
pub fn check(id: &IdentityFile, credentials_dir: Option<&Path>) -> Result<CheckOutcome, KeyError> {
    match load(id, credentials_dir) {
        Ok(loaded) => Ok(CheckOutcome::Usable {
            algorithm: loaded.key.algorithm(),
            fingerprint: loaded.key.public_key().fingerprint(HashAlg::Sha256),
            path: loaded.path,
        }),
        Err(KeyError::NoCredentialsDirectory { name }) => Ok(CheckOutcome::Unverifiable(format!(
            "credential:{name} is read from $CREDENTIALS_DIRECTORY, which systemd sets only for \
             the service; not checked here"
        ))),
        Err(error) => Err(error),
    }
}

/// Parses key text with russh, which reads OpenSSH and PEM private keys. Encryption is detected
/// before russh is asked: it reports `KeyIsEncrypted` only for the OpenSSH format and fails on
/// encrypted PEM with a decoding error that would not say "passphrase".
fn parse(path: &Path, bytes: &[u8]) -> Result<PrivateKey, KeyError> {
    let invalid = |reason: String| KeyError::Invalid {
        path: path.to_owned(),
        reason,
    };
    let text = std::str::from_utf8(bytes)
        .map_err(|_| invalid("not text (private keys are OpenSSH or PEM text)".to_owned()))?;
    if looks_encrypted(text) {
        return Err(KeyError::Encrypted {
            path: path.to_owned(),
        });
    }
    let decoded = russh::keys::decode_secret_key(text, None).or_else(|error| {
        // A valid ECDSA key that ssh-key cannot read as written (short_scalar.rs).
        short_scalar::padded(text)
            .and_then(|padded| russh::keys::decode_secret_key(&padded, None).ok())
            .ok_or(error)
    });
    match decoded {
        Ok(key) => Ok(key),
        Err(russh::keys::Error::KeyIsEncrypted) => Err(KeyError::Encrypted {
            path: path.to_owned(),
        }),
        Err(error) if !text.contains("-----BEGIN ") => Err(invalid(no_private_key(text, &error))),
        Err(error) => Err(invalid(error.to_string())),
    }
}

/// Encrypted PEM (PKCS#8 `ENCRYPTED PRIVATE KEY`, or a `Proc-Type: 4,ENCRYPTED` header of
/// PKCS#1/SEC1) and PuTTY keys with an `Encryption:` other than `none`.
fn looks_encrypted(text: &str) -> bool {
    text.lines().map(str::trim).any(|line| {
        line == "-----BEGIN ENCRYPTED PRIVATE KEY-----"
            || line.starts_with("Proc-Type: 4,ENCRYPTED")
            || line
                .strip_prefix("Encryption:")
                .is_some_and(|value| value.trim() != "none")
    })
}

/// The reason given for a public key named as a private one (docs/troubleshooting.md).
const PUBLIC_KEY: &str = "this is a public key; name the private key file (the one without .pub)";

/// How much of a refused file is read to tell whether it is a public key: its first line is
/// enough.
const PEEK: u64 = 4096;

/// A reason for text without any PEM block: most often the `.pub` file named by mistake.
fn no_private_key(text: &str, error: &russh::keys::Error) -> String {
    if text.trim_start().starts_with("PuTTY-User-Key-File-") {
        return error.to_string();
    }
    if looks_public(text) {
        PUBLIC_KEY.to_owned()
    } else {
        "no private key in it (expected an OpenSSH or PEM private key)".to_owned()
    }
}

/// Whether `text` starts like an OpenSSH public key (or certificate) line, as in a `.pub` file.
fn looks_public(text: &str) -> bool {
    let public_prefixes = ["ssh-", "ecdsa-sha2-", "sk-ssh-", "sk-ecdsa-"];
    let first = text.trim_start();
    public_prefixes
        .iter()
        .any(|prefix| first.starts_with(prefix))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    #[test]
    fn encrypted_markers() {
        assert!(looks_encrypted(
            "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n"
        ));
        assert!(looks_encrypted(
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n"
        ));
        assert!(looks_encrypted(
            "PuTTY-User-Key-File-3: ssh-ed25519\nEncryption: aes256-cbc\n"
        ));
        assert!(!looks_encrypted(
            "PuTTY-User-Key-File-3: ssh-ed25519\nEncryption: none\n"
        ));
        assert!(!looks_encrypted(
            "-----BEGIN OPENSSH PRIVATE KEY-----\nb3Bl\n"
        ));
    }

    #[test]
    fn credential_resolution() {
        let dir = Path::new("/run/credentials/tunneld@db.service");
        let id = IdentityFile::Credential("office".to_owned());
        assert_eq!(resolve(&id, Some(dir)).unwrap(), dir.join("office"));
        assert!(matches!(
            resolve(&id, None),
            Err(KeyError::NoCredentialsDirectory { name }) if name == "office"
        ));
        assert!(matches!(
            resolve(&id, Some(Path::new(""))),
            Err(KeyError::NoCredentialsDirectory { .. })
        ));
        for bad in ["", ".", "..", "../etc/shadow", "a/b"] {
            let id = IdentityFile::Credential(bad.to_owned());
            assert!(
                matches!(resolve(&id, Some(dir)), Err(KeyError::Invalid { .. })),
                "{bad}"
            );
        }
        let plain = IdentityFile::Path(PathBuf::from("/etc/tunneld/keys/db"));
        assert_eq!(
            resolve(&plain, None).unwrap(),
            PathBuf::from("/etc/tunneld/keys/db")
        );
    }

    #[test]
    fn messages() {
        let path = PathBuf::from("/etc/tunneld/keys/db");
        let key_error = |problem| {
            KeyError::File(PrivateFileError {
                path: path.clone(),
                kind: PrivateFileKind::Key,
                problem,
            })
        };
        let too_open = key_error(PrivateFileProblem::TooOpen(0o644));
        assert_eq!(
            too_open.to_string(),
            "/etc/tunneld/keys/db is readable by group/others; refusing to use it"
        );
        let writable = key_error(PrivateFileProblem::TooOpen(0o620));
        assert_eq!(
            writable.to_string(),
            "/etc/tunneld/keys/db is writable by group/others; refusing to use it"
        );
        assert!(too_open.is_permanent());
        let transient = key_error(PrivateFileProblem::Unreadable(io::Error::from(
            io::ErrorKind::Interrupted,
        )));
        assert!(!transient.is_permanent());
    }
}
