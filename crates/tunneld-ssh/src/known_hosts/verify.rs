//! What a connection calls: the check, then the host key policy for a host that no file names.

use std::path::Path;

use russh::keys::PublicKeyOrCertificate;
use russh::keys::ssh_key::HashAlg;
use tunneld_config::HostKeyPolicy;

use super::{HostKeyError, HostsFile, KnownHosts, Line, learn, lookup_name};

/// How [`verify`] came to trust a server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VerifiedBy {
    /// Its key is on this line of known_hosts.
    KnownHost {
        /// The file the line is in.
        file: HostsFile,
        /// 1-based line number.
        line: usize,
    },
    /// Its certificate is signed by the CA on this `@cert-authority` line.
    CertificateAuthority {
        /// The file the line is in.
        file: HostsFile,
        /// 1-based line number.
        ca_line: usize,
    },
    /// `accept-new`: it was unknown and its key is now on this line of the learned file (written
    /// by this call, or by another process a moment before).
    Learned {
        /// 1-based line number.
        line: usize,
    },
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
    /// apply `policy` to a host that neither file names (refuse under `strict`, [`learn`] into
    /// the learned file under `accept-new`, which reads that file again under its lock, logging
    /// "learned host key for ..." at info). A changed, revoked or otherwise refused key is an
    /// error whatever the policy. The global file is never written.
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
                let ca = self.check_certificate(&name, host, certificate, crate::dates::now())?;
                self.log_trusted(&name, ca, "host certificate");
                return Ok(VerifiedBy::CertificateAuthority {
                    file: ca.file,
                    ca_line: ca.number,
                });
            }
            PublicKeyOrCertificate::PublicKey { key, .. } => key,
        };
        if let Some(line) = self.check_key(&name, key.key_data())? {
            self.log_trusted(&name, line, "host key");
            return Ok(VerifiedBy::KnownHost {
                file: line.file,
                line: line.number,
            });
        }
        match policy {
            HostKeyPolicy::Strict => Err(HostKeyError::Unknown {
                name,
                path: path.to_owned(),
                global: self.global.clone(),
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

    /// Says at debug which file and line trusted the server.
    fn log_trusted(&self, name: &str, line: &Line, what: &str) {
        let path = self.path_of(line.file).display();
        tracing::debug!(
            known_hosts = %path,
            line = line.number,
            "{what} of {name} trusted by {path} line {}",
            line.number
        );
    }
}
