//! User certificates, with OpenSSH's `CertificateFile` semantics: the `KEY-cert.pub` beside an
//! identity file `KEY`, certificates named in `certificate_files`, which key each one certifies,
//! and what this machine's clock says about them.
//!
//! Certificates are public, so unlike keys their files need not be private. Like keys, they are
//! read again on every connection attempt, so a renewed certificate is used without a restart.
//! A certificate is offered even when this machine's clock says it is not valid (a Raspberry Pi
//! without a real-time clock may boot with the wrong time): the server decides, and the messages
//! say what the clock thought.
//!
//! `judge.rs` says what the clock and the user make of a certificate, `pair.rs` puts each
//! certificate with its key, and `check.rs` is what `tunneld check` reports.

mod check;
mod judge;
mod pair;

use std::io;
use std::path::{Path, PathBuf};

use russh::keys::ssh_key::{Certificate, HashAlg, public::KeyData};

use crate::identity::KeyError;

pub use check::{CertificateReport, ReportLevel, check_hop};
pub use judge::{EXPIRY_WARNING, Finding, describe, judge};
pub(crate) use pair::gather;

/// Where a certificate was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// `KEY-cert.pub` beside the identity file `KEY` (found, not named).
    Beside,
    /// Named in `certificate_files`.
    Named,
}

/// A user certificate read from a file.
#[derive(Clone, Debug)]
pub struct UserCertificate {
    /// The file it was read from (`credential:NAME` resolved).
    pub path: PathBuf,
    /// How it was found.
    pub origin: Origin,
    /// The certificate.
    pub certificate: Certificate,
}

impl UserCertificate {
    /// Whether it certifies `key`: OpenSSH pairs a certificate with the key whose public half
    /// it carries.
    pub fn certifies(&self, key: &KeyData) -> bool {
        self.certificate.public_key() == key
    }

    /// The SHA256 fingerprint of the key it certifies.
    pub fn key_fingerprint(&self) -> String {
        self.certificate
            .public_key()
            .fingerprint(HashAlg::Sha256)
            .to_string()
    }
}

/// Why a certificate file cannot be used. Never fatal to an attempt: the keys are still offered.
#[derive(thiserror::Error, Debug)]
pub enum CertificateError {
    /// A named certificate's `credential:NAME` cannot be resolved.
    #[error(transparent)]
    Credential(KeyError),
    /// The file is missing or cannot be read.
    #[error("cannot read certificate {}: {error}", path.display())]
    Read {
        /// The certificate file.
        path: PathBuf,
        /// What reading it said.
        error: io::Error,
    },
    /// The file does not hold an OpenSSH certificate.
    #[error("{} is not an OpenSSH certificate: {reason}", path.display())]
    Invalid {
        /// The certificate file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// It certifies a host, not a user.
    #[error("{} is a host certificate; only a user certificate can log in", path.display())]
    HostCertificate {
        /// The certificate file.
        path: PathBuf,
    },
    /// The certificate beside a key certifies another key.
    #[error(
        "{} certifies {fingerprint}, not the key {key} beside it; it is not offered",
        path.display()
    )]
    Mismatch {
        /// The certificate file.
        path: PathBuf,
        /// The identity file it sits beside.
        key: PathBuf,
        /// The fingerprint of the key it certifies.
        fingerprint: String,
    },
    /// No identity file (and no agent key, when the agent was asked) holds the key that a named
    /// certificate certifies.
    #[error(
        "{} certifies {fingerprint}, but no identity file{} holds that key; it is not offered",
        path.display(),
        if *asked_agent { " or agent key" } else { "" }
    )]
    NoKey {
        /// The certificate file.
        path: PathBuf,
        /// The fingerprint of the key it certifies.
        fingerprint: String,
        /// Whether the agent was asked too.
        asked_agent: bool,
    },
}

/// `KEY-cert.pub` for the identity file `KEY`, where ssh looks for its certificate.
pub fn beside(key: &Path) -> PathBuf {
    let mut name = key.as_os_str().to_owned();
    name.push("-cert.pub");
    PathBuf::from(name)
}

/// Reads the certificate file at `path`. Blocking file I/O.
pub fn read(path: &Path, origin: Origin) -> Result<UserCertificate, CertificateError> {
    let text = std::fs::read_to_string(path).map_err(|error| CertificateError::Read {
        path: path.to_owned(),
        error,
    })?;
    let invalid = |reason: String| CertificateError::Invalid {
        path: path.to_owned(),
        reason,
    };
    let line = text
        .lines()
        .map(str::trim)
        .find(|line| !line.is_empty() && !line.starts_with('#'))
        .ok_or_else(|| invalid("the file is empty".to_owned()))?;
    let certificate = Certificate::from_openssh(line).map_err(|error| {
        let algorithm = line.split_whitespace().next().unwrap_or_default();
        if algorithm.contains("-cert-") {
            invalid(error.to_string())
        } else if line.starts_with("-----BEGIN ") {
            invalid("this is a private key; name its -cert.pub".to_owned())
        } else {
            invalid(format!(
                "{algorithm} is a public key, not a certificate (expected a -cert.pub written \
                 by ssh-keygen -s)"
            ))
        }
    })?;
    if !certificate.cert_type().is_user() {
        return Err(CertificateError::HostCertificate {
            path: path.to_owned(),
        });
    }
    Ok(UserCertificate {
        path: path.to_owned(),
        origin,
        certificate,
    })
}

/// The certificate beside the identity file `key`, if there is one: a missing file is not an
/// error, since most keys have none.
pub fn read_beside(key: &Path) -> Result<Option<UserCertificate>, CertificateError> {
    match read(&beside(key), Origin::Beside) {
        Err(CertificateError::Read { error, .. }) if error.kind() == io::ErrorKind::NotFound => {
            Ok(None)
        }
        other => other.map(Some),
    }
}

#[cfg(test)]
mod tests;
