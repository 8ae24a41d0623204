//! Host key verification against OpenSSH known_hosts files, with OpenSSH's semantics.
//!
//! A hop has two files, read together as one list as OpenSSH reads `UserKnownHostsFile` and
//! `GlobalKnownHostsFile`: `known_hosts`, the learned keys that `accept-new` appends to, then
//! `global_known_hosts`, the keys an operator pinned, which tunneld never writes. Every line
//! remembers its file, so that every message names the file and line it is about.
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
//! - a key on a plain line of either file is known, even if another line has a different key
//!   of its type (OpenSSH's `check_key_in_hostkeys`: a match anywhere wins); otherwise a
//!   different key of the same type, in either file, is a changed key and is refused loudly,
//!   with the file and the line;
//! - a malformed line is skipped with a warning, never a failure of the whole file.
//!
//! [`verify`] is what a connection calls; [`learn`] is how `accept-new` records a key;
//! [`KnownHosts::update_host_keys`] follows a server that rotates its keys (`update.rs`). They do
//! blocking file I/O (and the writers wait for a lock): call them from `spawn_blocking`.

mod cert;
mod error;
mod learn;
mod lock;
mod pattern;
mod read;
mod update;
mod verify;

use std::path::{Path, PathBuf};

use russh::keys::ssh_key::known_hosts::{HostPatterns, Marker};
use russh::keys::ssh_key::public::KeyData;
use russh::keys::ssh_key::{Certificate, HashAlg};
use russh::keys::{Algorithm, PublicKeyOrCertificate};

pub use error::{CertificateProblem, HostKeyError};
pub use learn::learn;
pub use pattern::lookup_name;
use read::{parse_lines, read_lines};
pub use update::{Change, Skipped, Updated};
pub use verify::{VerifiedBy, verify};

/// The parsed lines of a hop's known_hosts files: the learned file's, then the global file's.
#[derive(Clone, Debug)]
pub struct KnownHosts {
    /// The learned file (`known_hosts`), which accept-new appends to.
    learned: PathBuf,
    /// The pinned keys (`global_known_hosts`), when read.
    global: Option<PathBuf>,
    lines: Vec<Line>,
}

/// Which of a hop's two known_hosts files a line is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostsFile {
    /// `known_hosts`: learned keys, and where accept-new writes. The only file of
    /// [`KnownHosts::load`].
    Learned,
    /// `global_known_hosts`: pinned keys, never written by tunneld.
    Global,
}

/// One usable line of a file.
#[derive(Clone, Debug)]
struct Line {
    file: HostsFile,
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
        /// The file the line is in.
        file: HostsFile,
        /// 1-based line number.
        line: usize,
    },
    /// No line names this host at all: the caller applies its
    /// [`HostKeyPolicy`](tunneld_config::HostKeyPolicy). Never returned for a certificate.
    Unknown,
    /// The certificate is valid and signed by the CA on this `@cert-authority` line.
    CertificateTrusted {
        /// The file the line is in.
        file: HostsFile,
        /// 1-based line number of the `@cert-authority` line.
        ca_line: usize,
    },
}

impl KnownHosts {
    /// Reads and parses one file, as the learned file with no global one. A missing file is an
    /// empty set (accept-new creates it); a file that exists but cannot be read is an error.
    /// Malformed lines are skipped with a warning naming `file:line`.
    pub fn load(path: &Path) -> Result<KnownHosts, HostKeyError> {
        Ok(KnownHosts {
            learned: path.to_owned(),
            global: None,
            lines: read_lines(path, HostsFile::Learned)?,
        })
    }

    /// Reads and parses a hop's two files: `learned` (its `known_hosts`) and `global` (its
    /// `global_known_hosts`), each as [`KnownHosts::load`] reads one: missing is empty,
    /// unreadable is an error naming the file. The global file is only ever read.
    pub fn load_with_global(learned: &Path, global: &Path) -> Result<KnownHosts, HostKeyError> {
        let mut known = KnownHosts::load(learned)?;
        // The same file named twice is read once: its lines would only repeat.
        if global != learned {
            known.lines.extend(read_lines(global, HostsFile::Global)?);
            known.global = Some(global.to_owned());
        }
        Ok(known)
    }

    /// Parses the content of a learned file, as [`KnownHosts::load`] does once it has read it
    /// (malformed lines skipped with a warning). `path` is for messages. Public so that the
    /// parser can be fuzzed without files.
    pub fn parse(path: &Path, content: &[u8]) -> KnownHosts {
        KnownHosts {
            learned: path.to_owned(),
            global: None,
            lines: parse_lines(path, HostsFile::Learned, content),
        }
    }

    /// The learned file (`known_hosts`), the one accept-new writes.
    pub fn path(&self) -> &Path {
        &self.learned
    }

    /// The global file (`global_known_hosts`), when it was read.
    pub fn global_path(&self) -> Option<&Path> {
        self.global.as_deref()
    }

    /// The path of `file`.
    pub fn path_of(&self, file: HostsFile) -> &Path {
        match (file, &self.global) {
            (HostsFile::Global, Some(global)) => global,
            // Lines of the global file exist only when it was read.
            _ => &self.learned,
        }
    }

    /// Host key algorithms these files have plain keys of for `host:port`, in file order, so that
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
    /// ([`Verdict::Known`], [`Verdict::CertificateTrusted`]), in neither file
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
                    Some(line) => Verdict::Known {
                        file: line.file,
                        line: line.number,
                    },
                    None => Verdict::Unknown,
                })
            }
            PublicKeyOrCertificate::Certificate(certificate) => {
                let ca = self.check_certificate(&name, host, certificate, crate::dates::now())?;
                Ok(Verdict::CertificateTrusted {
                    file: ca.file,
                    ca_line: ca.number,
                })
            }
        }
    }

    /// Lines whose host field names `name` (a lookup name), the learned file's first.
    fn matching<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a Line> {
        self.lines.iter().filter(move |line| line.names(name))
    }

    /// The path of the file `line` is in, for an error.
    fn path_at(&self, line: &Line) -> PathBuf {
        self.path_of(line.file).to_owned()
    }

    /// The `@revoked` line for `name` that has this key, in either file, if any.
    fn revoked_line(&self, name: &str, key: &KeyData) -> Option<&Line> {
        self.matching(name)
            .find(|line| line.marker == Some(Marker::Revoked) && line.key == *key)
    }

    /// A plain key: `Ok(Some(line))` when known, `Ok(None)` when neither file names the host.
    /// The files are one list, as in OpenSSH: a revocation in either refuses, a match in either
    /// wins over a different key of the same type in the other.
    fn check_key(&self, name: &str, key: &KeyData) -> Result<Option<&Line>, HostKeyError> {
        if let Some(line) = self.revoked_line(name, key) {
            return Err(HostKeyError::Revoked {
                name: name.to_owned(),
                path: self.path_at(line),
                line: line.number,
            });
        }
        let plain = || self.matching(name).filter(|line| line.marker.is_none());
        if let Some(line) = plain().find(|line| line.key == *key) {
            return Ok(Some(line));
        }
        if let Some(line) = plain().find(|line| line.key.algorithm() == key.algorithm()) {
            return Err(HostKeyError::Changed {
                name: name.to_owned(),
                path: self.path_at(line),
                line: line.number,
                algorithm: key.algorithm(),
                known: line.key.fingerprint(HashAlg::Sha256).to_string().into(),
                offered: key.fingerprint(HashAlg::Sha256).to_string().into(),
            });
        }
        if let Some(line) = plain().next() {
            return Err(HostKeyError::OtherKeyType {
                name: name.to_owned(),
                path: self.path_at(line),
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
    ) -> Result<&Line, HostKeyError> {
        if let Some(line) = self.revoked_line(name, certificate.public_key()) {
            return Err(HostKeyError::Revoked {
                name: name.to_owned(),
                path: self.path_at(line),
                line: line.number,
            });
        }
        let ca_key = certificate.signature_key();
        if let Some(line) = self.revoked_line(name, ca_key) {
            return Err(HostKeyError::CertificateAuthorityRevoked {
                name: name.to_owned(),
                path: self.path_at(line),
                line: line.number,
                ca: ca_key.fingerprint(HashAlg::Sha256).to_string(),
            });
        }
        let Some(ca_line) = self
            .matching(name)
            .find(|line| line.marker == Some(Marker::CertAuthority) && line.key == *ca_key)
        else {
            return Err(HostKeyError::NoCertificateAuthority {
                name: name.to_owned(),
                path: self.learned.clone(),
                global: self.global.clone(),
                signed_by: ca_key.fingerprint(HashAlg::Sha256).to_string(),
            });
        };
        cert::validate(certificate, host, now).map_err(|problem| {
            HostKeyError::InvalidCertificate {
                name: name.to_owned(),
                path: self.path_at(ca_line),
                ca_line: ca_line.number,
                problem,
            }
        })?;
        Ok(ca_line)
    }
}

#[cfg(test)]
mod tests;
