//! Why a host key was refused, in words an operator acts on.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use russh::keys::Algorithm;

use crate::dates::utc;

/// A host key that cannot be trusted, or a known_hosts file that cannot be used.
///
/// The I/O variants include their `io::Error` in the message rather than as `source()`, so that
/// printing the message (state, logs, `STATUS=`) says everything once. Fingerprints are kept as
/// text (`SHA256:...`, boxed in the largest variant): they are only ever shown, and ssh-key's
/// `Fingerprint` (room for SHA-512) would make every `Result` carrying this error large.
#[derive(thiserror::Error, Debug)]
pub enum HostKeyError {
    /// known_hosts exists but cannot be read.
    #[error("cannot read known_hosts {}: {error}", path.display())]
    Read {
        /// The known_hosts file.
        path: PathBuf,
        /// What reading it said.
        error: io::Error,
    },
    /// accept-new could not record a new host key.
    #[error("cannot add the host key of {name} to {}: {error}", path.display())]
    Write {
        /// The lookup name (`host`, or `[host]:port` when the port is not 22).
        name: String,
        /// The known_hosts file.
        path: PathBuf,
        /// What creating, locking or writing it said.
        error: io::Error,
    },
    /// Neither known_hosts file names the host and the policy is `strict`.
    #[error("{}", unknown(name, path, global.as_deref()))]
    Unknown {
        /// The lookup name.
        name: String,
        /// The learned known_hosts file.
        path: PathBuf,
        /// The global known_hosts file of pinned keys, when one was read.
        global: Option<PathBuf>,
    },
    /// known_hosts has a key of the same type for this host, and it is a different key.
    #[error(
        "HOST KEY CHANGED for {name}: {} line {line} has {algorithm} {known}, server offered \
         {offered}; refusing",
        path.display()
    )]
    Changed {
        /// The lookup name.
        name: String,
        /// The known_hosts file.
        path: PathBuf,
        /// The line of the known key.
        line: usize,
        /// The key type of both keys.
        algorithm: Algorithm,
        /// SHA256 fingerprint of the known key (`SHA256:...`).
        known: Box<str>,
        /// SHA256 fingerprint of the key the server offered.
        offered: Box<str>,
    },
    /// known_hosts has keys for this host, but none of the type the server offered. Refused
    /// rather than learned: the connection prefers the known types, so an honest server offers
    /// one of them.
    #[error(
        "{} has {known} for {name} at line {line} but the server offered {offered}; refusing",
        path.display()
    )]
    OtherKeyType {
        /// The lookup name.
        name: String,
        /// The known_hosts file.
        path: PathBuf,
        /// The line of the (first) known key.
        line: usize,
        /// Its type.
        known: Algorithm,
        /// The type the server offered.
        offered: Algorithm,
    },
    /// The key the server offered (or the key inside its certificate) is marked `@revoked`.
    #[error("host key of {name} is marked @revoked in {} line {line}; refusing", path.display())]
    Revoked {
        /// The lookup name.
        name: String,
        /// The known_hosts file.
        path: PathBuf,
        /// The `@revoked` line.
        line: usize,
    },
    /// The certificate authority that signed the server's certificate is marked `@revoked`.
    #[error(
        "the certificate authority {ca} that signed the host certificate of {name} is marked \
         @revoked in {} line {line}; refusing",
        path.display()
    )]
    CertificateAuthorityRevoked {
        /// The lookup name.
        name: String,
        /// The known_hosts file.
        path: PathBuf,
        /// The `@revoked` line.
        line: usize,
        /// SHA256 fingerprint of the CA key (`SHA256:...`).
        ca: String,
    },
    /// The server presented a certificate that no `@cert-authority` line for this host vouches
    /// for. Plain key lines never trust a certificate.
    #[error(
        "{name} presented a host certificate (signed by {signed_by}) but no @cert-authority line \
         in {} matches it; refusing",
        either(path, global.as_deref())
    )]
    NoCertificateAuthority {
        /// The lookup name.
        name: String,
        /// The learned known_hosts file.
        path: PathBuf,
        /// The global known_hosts file, when one was read.
        global: Option<PathBuf>,
        /// SHA256 fingerprint of the CA key that signed the certificate (`SHA256:...`).
        signed_by: String,
    },
    /// The certificate is signed by a trusted CA but is not valid for this host now.
    #[error(
        "host certificate of {name} (CA at {} line {ca_line}) is not valid: {problem}; refusing",
        path.display()
    )]
    InvalidCertificate {
        /// The lookup name.
        name: String,
        /// The known_hosts file.
        path: PathBuf,
        /// The `@cert-authority` line of the CA that signed it.
        ca_line: usize,
        /// What is wrong with it.
        problem: CertificateProblem,
    },
}

/// `learned`, or `learned or global`: the files a lookup searched.
fn either(learned: &Path, global: Option<&Path>) -> String {
    match global {
        Some(global) => format!("{} or {}", learned.display(), global.display()),
        None => learned.display().to_string(),
    }
}

/// The message of [`HostKeyError::Unknown`]: where the key was looked for, and where to pin it.
fn unknown(name: &str, learned: &Path, global: Option<&Path>) -> String {
    let searched = either(learned, global);
    match global {
        Some(global) => format!(
            "host key of {name} is not in {searched} (policy strict); pin it in {}",
            global.display()
        ),
        None => format!("host key of {name} is not in {searched} (policy strict)"),
    }
}

impl HostKeyError {
    /// Whether retrying cannot help until someone acts (edits known_hosts, renews a certificate,
    /// fixes the server): every refusal of a key. Failing to read or write the file is not
    /// permanent; a disk or a permission can come back.
    pub fn is_permanent(&self) -> bool {
        !matches!(self, HostKeyError::Read { .. } | HostKeyError::Write { .. })
    }
}

/// What is wrong with a host certificate signed by a trusted CA.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CertificateProblem {
    /// It is a user certificate.
    NotHostCertificate,
    /// Its validity starts later (unix seconds).
    NotYetValid {
        /// `valid after`, in seconds since the epoch.
        valid_after: u64,
    },
    /// Its validity has ended (unix seconds).
    Expired {
        /// `valid before`, in seconds since the epoch.
        valid_before: u64,
    },
    /// Its principals do not include the host name.
    WrongPrincipal {
        /// The host name that was looked for (without the port).
        host: String,
        /// The principals it is valid for.
        principals: Vec<String>,
    },
    /// It has critical options; none are defined for host certificates, so OpenSSH refuses them.
    CriticalOptions {
        /// Their names.
        names: Vec<String>,
    },
    /// Its signature does not verify with the CA key it names.
    BadSignature,
}

impl fmt::Display for CertificateProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CertificateProblem::NotHostCertificate => {
                f.write_str("it is a user certificate, not a host certificate")
            }
            CertificateProblem::NotYetValid { valid_after } => {
                write!(f, "not valid before {}", utc(*valid_after))
            }
            CertificateProblem::Expired { valid_before } => {
                write!(f, "expired at {}", utc(*valid_before))
            }
            CertificateProblem::WrongPrincipal { host, principals } => write!(
                f,
                "its principals ({}) do not include {host}",
                principals.join(", ")
            ),
            CertificateProblem::CriticalOptions { names } => {
                write!(f, "unsupported critical options ({})", names.join(", "))
            }
            CertificateProblem::BadSignature => {
                f.write_str("its signature does not verify with the CA key")
            }
        }
    }
}
