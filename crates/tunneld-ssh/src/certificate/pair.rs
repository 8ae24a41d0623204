//! A hop's identities: each key file with the certificates that certify it, in the order they
//! are offered, and the certificates still waiting for a key (which the agent may hold).

use std::path::Path;

use tunneld_config::{Hop, IdentityFile};

use super::{CertificateError, Origin, UserCertificate, read, read_beside};
use crate::identity::{self, KeyError, LoadedKey};

/// One key file and its certificates, offered certificates first, as OpenSSH does.
#[derive(Debug)]
pub(crate) struct Identity {
    pub(crate) key: LoadedKey,
    /// The one beside the key first, then those of `certificate_files` in their order.
    pub(crate) certificates: Vec<UserCertificate>,
}

/// What a hop's `identity_files` and `certificate_files` hold, read from disk.
#[derive(Debug, Default)]
pub(crate) struct Identities {
    /// The keys that loaded, in `identity_files` order, each with its certificates.
    pub(crate) identities: Vec<Identity>,
    /// Certificates that no loaded key certifies: named ones whose key is not among the
    /// identity files, and those beside a key file that could not be loaded (an encrypted key
    /// whose agent copy can still sign). Only an agent key can pair with them.
    pub(crate) unpaired: Vec<UserCertificate>,
    /// Why key files could not be used.
    pub(crate) key_problems: Vec<(IdentityFile, KeyError)>,
    /// Why certificate files could not be used, and how each was found.
    pub(crate) certificate_problems: Vec<(Origin, CertificateError)>,
}

/// Reads the hop's key files and certificate files, and puts each certificate with the key it
/// certifies. Blocking file I/O. `credentials_dir` as in [`identity::resolve`].
pub(crate) fn gather(hop: &Hop, credentials_dir: Option<&Path>) -> Identities {
    let mut found = Identities::default();
    for id in &hop.identity_files {
        let loaded = identity::load(id, credentials_dir);
        // ssh looks for KEY-cert.pub beside every identity file, credentials included.
        let beside = match identity::resolve(id, credentials_dir) {
            Ok(path) => read_beside(&path).unwrap_or_else(|error| {
                found.certificate_problems.push((Origin::Beside, error));
                None
            }),
            Err(_) => None,
        };
        match loaded {
            Ok(key) => {
                let mut certificates = Vec::new();
                if let Some(certificate) = beside {
                    if certificate.certifies(key.key.public_key().key_data()) {
                        certificates.push(certificate);
                    } else {
                        found.certificate_problems.push((
                            Origin::Beside,
                            CertificateError::Mismatch {
                                fingerprint: certificate.key_fingerprint(),
                                path: certificate.path,
                                key: key.path.clone(),
                            },
                        ));
                    }
                }
                found.identities.push(Identity { key, certificates });
            }
            Err(error) => {
                found.key_problems.push((id.clone(), error));
                found.unpaired.extend(beside);
            }
        }
    }
    for named in &hop.certificate_files {
        let certificate = identity::resolve(named, credentials_dir)
            .map_err(CertificateError::Credential)
            .and_then(|path| read(&path, Origin::Named));
        match certificate {
            Ok(certificate) => found.pair(certificate),
            Err(error) => found.certificate_problems.push((Origin::Named, error)),
        }
    }
    found
}

impl Identities {
    /// Puts a named certificate with the first key it certifies, after that key's other
    /// certificates; the same certificate twice (named and beside its key) is offered once.
    fn pair(&mut self, certificate: UserCertificate) {
        let owner = self
            .identities
            .iter_mut()
            .find(|identity| certificate.certifies(identity.key.key.public_key().key_data()));
        match owner {
            Some(identity) => {
                let known = identity
                    .certificates
                    .iter()
                    .any(|other| other.certificate == certificate.certificate);
                if !known {
                    identity.certificates.push(certificate);
                }
            }
            None => {
                let known = self
                    .unpaired
                    .iter()
                    .any(|other| other.certificate == certificate.certificate);
                if !known {
                    self.unpaired.push(certificate);
                }
            }
        }
    }
}
