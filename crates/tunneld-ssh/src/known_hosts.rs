//! Host key verification against an OpenSSH known_hosts file, with OpenSSH's semantics.
//!
//! russh's own known_hosts helper ignores `@revoked`, breaks on tabs, has no wildcards and appends
//! without a lock, so this module parses each line with `ssh-key`'s entry parser and applies the
//! rules of OpenSSH's `hostfile.c` itself:
//!
//! - a server is looked up as `host` on port 22 and `[host]:port` otherwise ([`lookup_name`]);
//! - host fields are comma-separated patterns with `*`, `?` and `!` negation (a negated match
//!   excludes the line), compared without regard to case, or a single hashed name `|1|salt|hash`;
//! - `@revoked` refuses a key whatever else matches; `@cert-authority` lines only vouch for
//!   certificates and plain lines only for plain keys;
//! - a different key of the same type is a changed key and is refused loudly, with the file and
//!   the line;
//! - a malformed line is skipped with a warning, never a failure of the whole file.
//!
//! [`verify`] is what a connection calls; [`learn`] is how `accept-new` records a key. Both do
//! blocking file I/O (and `learn` waits for a lock): call them from `spawn_blocking`.

mod cert;
mod error;
mod learn;
mod pattern;

use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use russh::keys::ssh_key::known_hosts::{Entry, HostPatterns, Marker};
use russh::keys::ssh_key::public::KeyData;
use russh::keys::ssh_key::{Certificate, HashAlg};
use russh::keys::{Algorithm, PublicKeyOrCertificate};
use tunneld_config::HostKeyPolicy;

pub use error::{CertificateProblem, HostKeyError};
pub use learn::learn;
pub use pattern::lookup_name;

/// The parsed lines of one known_hosts file.
#[derive(Clone, Debug)]
pub struct KnownHosts {
    path: PathBuf,
    lines: Vec<Line>,
}

/// One usable line of the file.
#[derive(Clone, Debug)]
struct Line {
    /// 1-based, counting every line of the file (comments and blank lines too), as editors do.
    number: usize,
    marker: Option<Marker>,
    hosts: HostPatterns,
    key: KeyData,
}

impl Line {
    fn names(&self, name: &str) -> bool {
        match &self.hosts {
            HostPatterns::Patterns(patterns) => pattern::patterns_match(patterns, name),
            HostPatterns::HashedName { salt, hash } => pattern::hashed_match(salt, hash, name),
        }
    }
}

/// What known_hosts says about the key or certificate a server presented, when it does not
/// refuse it (refusals are [`HostKeyError`]s).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The key is on this line (a plain, unmarked line).
    Known {
        /// 1-based line number.
        line: usize,
    },
    /// No line names this host at all: the caller applies its [`HostKeyPolicy`]. Never returned
    /// for a certificate.
    Unknown,
    /// The certificate is valid and signed by the CA on this `@cert-authority` line.
    CertificateTrusted {
        /// 1-based line number of the `@cert-authority` line.
        ca_line: usize,
    },
}

/// How [`verify`] came to trust a server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VerifiedBy {
    /// Its key is on this line of known_hosts.
    KnownHost {
        /// 1-based line number.
        line: usize,
    },
    /// Its certificate is signed by the CA on this `@cert-authority` line.
    CertificateAuthority {
        /// 1-based line number.
        ca_line: usize,
    },
    /// `accept-new`: it was unknown and its key is now on this line (written by this call, or by
    /// another process a moment before).
    Learned {
        /// 1-based line number.
        line: usize,
    },
}

impl KnownHosts {
    /// Reads and parses the file. A missing file is an empty set (accept-new creates it); a file
    /// that exists but cannot be read is an error. Malformed lines are skipped with a warning
    /// naming `file:line`.
    pub fn load(path: &Path) -> Result<KnownHosts, HostKeyError> {
        match std::fs::read(path) {
            Ok(content) => Ok(KnownHosts::parse(path, &content)),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(KnownHosts {
                path: path.to_owned(),
                lines: Vec::new(),
            }),
            Err(error) => Err(HostKeyError::Read {
                path: path.to_owned(),
                error,
            }),
        }
    }

    /// Parses known_hosts content (bytes, so that one line of stray binary or Latin-1 costs only
    /// that line). `path` is for messages.
    fn parse(path: &Path, content: &[u8]) -> KnownHosts {
        let mut lines = Vec::new();
        // Split on '\n' ourselves (rather than `Entry`'s own iterator) to keep line numbers.
        for (index, raw) in content.split(|&byte| byte == b'\n').enumerate() {
            let number = index + 1;
            match parse_line(raw) {
                Ok(None) => {}
                Ok(Some(entry)) => lines.push(Line {
                    number,
                    marker: entry.marker().copied(),
                    hosts: entry.host_patterns().clone(),
                    key: entry.public_key().key_data().clone(),
                }),
                Err(reason) => tracing::warn!(
                    known_hosts = %path.display(),
                    line = number,
                    "{}:{number}: skipping malformed known_hosts line: {reason}",
                    path.display()
                ),
            }
        }
        KnownHosts {
            path: path.to_owned(),
            lines,
        }
    }

    /// The file this was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Host key algorithms this file has plain keys of for `host:port`, in file order, so that
    /// the connection can offer them first (like OpenSSH's `order_hostkeyalgs`): a host whose
    /// known key is RSA must not be offered ed25519 first and then be refused. An RSA key stands
    /// for the three signature algorithms that use it (`rsa-sha2-512`, `rsa-sha2-256`,
    /// `ssh-rsa`): intersect with what the connection is willing to use. Keys marked `@revoked`
    /// are left out. Empty when the host is unknown.
    pub fn known_algorithms(&self, host: &str, port: u16) -> Vec<Algorithm> {
        let name = lookup_name(host, port);
        let mut algorithms = Vec::new();
        for line in self.matching(&name).filter(|line| line.marker.is_none()) {
            if self.revoked_line(&name, &line.key).is_some() {
                continue;
            }
            let variants = match line.key.algorithm() {
                Algorithm::Rsa { .. } => vec![
                    Algorithm::Rsa {
                        hash: Some(HashAlg::Sha512),
                    },
                    Algorithm::Rsa {
                        hash: Some(HashAlg::Sha256),
                    },
                    Algorithm::Rsa { hash: None },
                ],
                algorithm => vec![algorithm],
            };
            for algorithm in variants {
                if !algorithms.contains(&algorithm) {
                    algorithms.push(algorithm);
                }
            }
        }
        algorithms
    }

    /// Whether an `@cert-authority` line names `host:port`; only then should the connection
    /// advertise host certificate algorithms (a certificate is refused without such a line).
    pub fn has_cert_authority_for(&self, host: &str, port: u16) -> bool {
        let name = lookup_name(host, port);
        self.matching(&name)
            .any(|line| line.marker == Some(Marker::CertAuthority))
    }

    /// The verdict on the key or certificate that the server at `host:port` presented: trusted
    /// ([`Verdict::Known`], [`Verdict::CertificateTrusted`]), not in the file
    /// ([`Verdict::Unknown`], for the caller's policy to decide), or refused (`Err`: revoked,
    /// changed, of another type than the known keys, or an invalid certificate).
    pub fn check(
        &self,
        host: &str,
        port: u16,
        key: &PublicKeyOrCertificate,
    ) -> Result<Verdict, HostKeyError> {
        let name = lookup_name(host, port);
        match key {
            PublicKeyOrCertificate::PublicKey { key, .. } => {
                Ok(match self.check_key(&name, key.key_data())? {
                    Some(line) => Verdict::Known { line },
                    None => Verdict::Unknown,
                })
            }
            PublicKeyOrCertificate::Certificate(certificate) => {
                let ca_line = self.check_certificate(&name, host, certificate, cert::now())?;
                Ok(Verdict::CertificateTrusted { ca_line })
            }
        }
    }

    /// Lines whose host field names `name` (a lookup name).
    fn matching<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Line> + 'a {
        self.lines.iter().filter(move |line| line.names(name))
    }

    /// The `@revoked` line for `name` that has this key, if any.
    fn revoked_line(&self, name: &str, key: &KeyData) -> Option<usize> {
        self.matching(name)
            .find(|line| line.marker == Some(Marker::Revoked) && line.key == *key)
            .map(|line| line.number)
    }

    /// A plain key: `Ok(Some(line))` when known, `Ok(None)` when the host is not in the file.
    fn check_key(&self, name: &str, key: &KeyData) -> Result<Option<usize>, HostKeyError> {
        if let Some(line) = self.revoked_line(name, key) {
            return Err(HostKeyError::Revoked {
                name: name.to_owned(),
                path: self.path.clone(),
                line,
            });
        }
        let plain = || self.matching(name).filter(|line| line.marker.is_none());
        if let Some(line) = plain().find(|line| line.key == *key) {
            return Ok(Some(line.number));
        }
        if let Some(line) = plain().find(|line| line.key.algorithm() == key.algorithm()) {
            return Err(HostKeyError::Changed {
                name: name.to_owned(),
                path: self.path.clone(),
                line: line.number,
                algorithm: key.algorithm(),
                known: line.key.fingerprint(HashAlg::Sha256).to_string().into(),
                offered: key.fingerprint(HashAlg::Sha256).to_string().into(),
            });
        }
        if let Some(line) = plain().next() {
            return Err(HostKeyError::OtherKeyType {
                name: name.to_owned(),
                path: self.path.clone(),
                line: line.number,
                known: line.key.algorithm(),
                offered: key.algorithm(),
            });
        }
        Ok(None)
    }

    /// A certificate, at `now` (unix seconds): the line of the CA that vouches for it, or why
    /// not. `host` (without the port) is what its principals must name, as in OpenSSH.
    fn check_certificate(
        &self,
        name: &str,
        host: &str,
        certificate: &Certificate,
        now: u64,
    ) -> Result<usize, HostKeyError> {
        if let Some(line) = self.revoked_line(name, certificate.public_key()) {
            return Err(HostKeyError::Revoked {
                name: name.to_owned(),
                path: self.path.clone(),
                line,
            });
        }
        let ca_key = certificate.signature_key();
        if let Some(line) = self.revoked_line(name, ca_key) {
            return Err(HostKeyError::CertificateAuthorityRevoked {
                name: name.to_owned(),
                path: self.path.clone(),
                line,
                ca: ca_key.fingerprint(HashAlg::Sha256).to_string(),
            });
        }
        let Some(ca_line) = self
            .matching(name)
            .find(|line| line.marker == Some(Marker::CertAuthority) && line.key == *ca_key)
        else {
            return Err(HostKeyError::NoCertificateAuthority {
                name: name.to_owned(),
                path: self.path.clone(),
                signed_by: ca_key.fingerprint(HashAlg::Sha256).to_string(),
            });
        };
        cert::validate(certificate, host, now).map_err(|problem| {
            HostKeyError::InvalidCertificate {
                name: name.to_owned(),
                path: self.path.clone(),
                ca_line: ca_line.number,
                problem,
            }
        })?;
        Ok(ca_line.number)
    }
}

/// One line: `Ok(None)` for a blank line or a comment, `Err(reason)` when malformed.
fn parse_line(raw: &[u8]) -> Result<Option<Entry>, String> {
    let text = std::str::from_utf8(raw).map_err(|_| "not UTF-8 text".to_owned())?;
    // trim() also drops the '\r' of a file edited on Windows.
    let text = text.trim();
    if text.is_empty() || text.starts_with('#') {
        return Ok(None);
    }
    // ssh-key's parser splits fields on single spaces only; OpenSSH accepts any run of spaces
    // and tabs. Rejoining changes only whitespace inside the key comment, which is unused.
    let fields: Vec<&str> = text.split_ascii_whitespace().collect();
    let needed = if text.starts_with('@') { 4 } else { 3 };
    if fields.len() < needed {
        return Err("expected [@marker] hosts keytype base64-key [comment]".to_owned());
    }
    Entry::from_str(&fields.join(" "))
        .map(Some)
        .map_err(|error| error.to_string())
}

/// [`KnownHosts::verify`] on the file as it is now.
pub fn verify(
    path: &Path,
    policy: HostKeyPolicy,
    host: &str,
    port: u16,
    key: &PublicKeyOrCertificate,
) -> Result<VerifiedBy, HostKeyError> {
    KnownHosts::load(path)?.verify(policy, host, port, key)
}

impl KnownHosts {
    /// What a connection calls with the key or certificate the server presented: check it,
    /// apply `policy` to an unknown host (refuse under `strict`, [`learn`] under `accept-new`,
    /// which reads the file again under its lock, logging "learned host key for ..." at info).
    /// A changed, revoked or otherwise refused key is an error whatever the policy.
    pub fn verify(
        &self,
        policy: HostKeyPolicy,
        host: &str,
        port: u16,
        key: &PublicKeyOrCertificate,
    ) -> Result<VerifiedBy, HostKeyError> {
        let path = self.path();
        let name = lookup_name(host, port);
        let key = match key {
            PublicKeyOrCertificate::Certificate(certificate) => {
                // Certificates are never learned: only an @cert-authority line can vouch for one.
                let ca_line = self.check_certificate(&name, host, certificate, cert::now())?;
                return Ok(VerifiedBy::CertificateAuthority { ca_line });
            }
            PublicKeyOrCertificate::PublicKey { key, .. } => key,
        };
        if let Some(line) = self.check_key(&name, key.key_data())? {
            return Ok(VerifiedBy::KnownHost { line });
        }
        match policy {
            HostKeyPolicy::Strict => Err(HostKeyError::Unknown {
                name,
                path: path.to_owned(),
            }),
            HostKeyPolicy::AcceptNew => {
                let learned = learn::learn_key(path, &name, key.key_data())?;
                let fingerprint = key.fingerprint(HashAlg::Sha256);
                if learned.written {
                    tracing::info!(
                        known_hosts = %path.display(),
                        line = learned.line,
                        %fingerprint,
                        "learned host key for {name}: {} {fingerprint} (policy accept-new)",
                        key.algorithm()
                    );
                } else {
                    tracing::debug!(
                        known_hosts = %path.display(),
                        line = learned.line,
                        "host key for {name} was added by another process meanwhile"
                    );
                }
                Ok(VerifiedBy::Learned { line: learned.line })
            }
        }
    }
}

#[cfg(test)]
mod tests;
