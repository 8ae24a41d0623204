//! The agent's keys and certificates, and the certificate files whose key only the agent holds.

use std::path::PathBuf;

use russh::client::Handle;
use russh::keys::HashAlg;
use russh::keys::agent::AgentIdentity;
use russh::keys::agent::client::AgentClient;
use russh::keys::ssh_key::{Certificate, PublicKey};
use tokio_util::sync::CancellationToken;
use tracing::debug;
use tunneld_config::Hop;

use super::signer::AgentKey;
use super::{accepted, offer_label, reminder, rsa_hash};
use crate::certificate::{CertificateError, Origin, UserCertificate};
use crate::error::{Peer, TunnelError};
use crate::handler::ClientHandler;
use crate::quiet::step;

/// One offer made through the agent.
enum Offer<'a> {
    /// A plain key of the agent.
    Key(PublicKey),
    /// A certificate the agent holds with its key (boxed: certificates are large).
    Certificate(Box<Certificate>),
    /// A certificate file whose key the agent holds.
    File(&'a UserCertificate, PublicKey),
}

/// What the agent is asked to do for one hop.
pub(super) struct AgentAttempt<'a> {
    pub(super) hop: &'a Hop,
    pub(super) peer: &'a Peer,
    /// Certificate files that no identity file's key certifies.
    pub(super) unpaired: &'a [UserCertificate],
    pub(super) now: u64,
    pub(super) ended: &'a CancellationToken,
}

impl AgentAttempt<'_> {
    /// Offers the agent's keys, each after its certificates (the agent's own, then the files
    /// that certify it); true when one was accepted.
    pub(super) async fn authenticate(
        &self,
        handle: &mut Handle<ClientHandler>,
        tried: &mut Vec<String>,
    ) -> Result<bool, TunnelError> {
        let (hop, peer) = (self.hop, self.peer);
        let Some(socket) = std::env::var_os("SSH_AUTH_SOCK").map(PathBuf::from) else {
            step!(warn, peer = %peer, "use_agent is set but SSH_AUTH_SOCK is not");
            self.warn_unpaired(false);
            return Ok(false);
        };
        let agent_error = |reason: String| TunnelError::Agent {
            socket: socket.display().to_string(),
            reason,
        };
        let mut agent = AgentClient::connect_uds(&socket)
            .await
            .map_err(|err| agent_error(err.to_string()))?;
        let identities = agent
            .request_identities()
            .await
            .map_err(|err| agent_error(err.to_string()))?;
        let offers = self.order(identities);
        debug!(peer = %peer, socket = %socket.display(), offers = offers.len(), "agent keys and certificates");
        let rsa = offers.iter().any(|offer| match offer {
            Offer::Key(key) | Offer::File(_, key) => key.algorithm().is_rsa(),
            Offer::Certificate(certificate) => certificate.algorithm().is_rsa(),
        });
        let rsa_hash = rsa_hash(handle, rsa).await?;
        for offer in offers {
            let (name, used) = match &offer {
                Offer::Key(key) => (key.fingerprint(HashAlg::Sha256).to_string(), None),
                Offer::Certificate(certificate) => {
                    let name = format!(
                        "agent certificate {}",
                        certificate.public_key().fingerprint(HashAlg::Sha256)
                    );
                    (name, Some((**certificate).clone()))
                }
                Offer::File(file, _) => (
                    file.path.display().to_string(),
                    Some(file.certificate.clone()),
                ),
            };
            tried.push(match &used {
                Some(certificate) => offer_label(&name, certificate, &hop.user, self.now),
                None => format!("agent key {name}"),
            });
            let result = match offer {
                Offer::Key(key) => {
                    handle
                        .authenticate_publickey_with(&hop.user, key, rsa_hash, &mut agent)
                        .await
                }
                Offer::Certificate(certificate) => {
                    handle
                        .authenticate_certificate_with(
                            &hop.user,
                            *certificate,
                            rsa_hash,
                            &mut agent,
                        )
                        .await
                }
                Offer::File(file, key) => {
                    let mut signer = AgentKey {
                        agent: &mut agent,
                        key,
                    };
                    handle
                        .authenticate_certificate_with(
                            &hop.user,
                            file.certificate.clone(),
                            rsa_hash,
                            &mut signer,
                        )
                        .await
                }
            }
            .map_err(|err| agent_error(err.to_string()))?;
            match accepted(result) {
                Some(true) => {
                    match used {
                        Some(certificate) => {
                            step!(info, peer = %peer, user = %hop.user, certificate = %name, agent = %socket.display(), "authenticated with a certificate through the agent");
                            reminder::watch(name, peer.clone(), &certificate, self.ended.clone());
                        }
                        None => {
                            step!(info, peer = %peer, user = %hop.user, key = %name, agent = %socket.display(), "authenticated with an agent key");
                        }
                    }
                    return Ok(true);
                }
                Some(false) => {}
                None => break,
            }
        }
        Ok(false)
    }

    /// The agent's plain keys in its order, each after the agent's certificates of it and then
    /// the certificate files that certify it; then certificates whose plain key the agent does
    /// not list. A certificate file that no agent key signs for is left out, with a warning.
    fn order(&self, identities: Vec<AgentIdentity>) -> Vec<Offer<'_>> {
        let mut keys = Vec::new();
        let mut certificates = Vec::new();
        for identity in identities {
            match identity {
                AgentIdentity::PublicKey { key, .. } => keys.push(key),
                AgentIdentity::Certificate { certificate, .. } => certificates.push(certificate),
            }
        }
        let mut files: Vec<Option<&UserCertificate>> = self.unpaired.iter().map(Some).collect();
        let mut offers = Vec::new();
        for key in keys {
            let (mine, others) = certificates
                .into_iter()
                .partition(|certificate: &Certificate| certificate.public_key() == key.key_data());
            certificates = others;
            for certificate in mine {
                // A file holding a certificate the agent has already is offered once.
                for slot in &mut files {
                    if slot.is_some_and(|file| file.certificate == certificate) {
                        *slot = None;
                    }
                }
                offers.push(Offer::Certificate(Box::new(certificate)));
            }
            for slot in &mut files {
                if let Some(file) = slot.filter(|file| file.certifies(key.key_data())) {
                    offers.push(Offer::File(file, key.clone()));
                    *slot = None;
                }
            }
            offers.push(Offer::Key(key));
        }
        offers.extend(
            certificates
                .into_iter()
                .map(|certificate| Offer::Certificate(Box::new(certificate))),
        );
        let left: Vec<&UserCertificate> = files.into_iter().flatten().collect();
        warn_unpaired(self.peer, &left, true);
        offers
    }

    /// Warns about the certificate files no key was found for.
    pub(super) fn warn_unpaired(&self, asked_agent: bool) {
        let all: Vec<&UserCertificate> = self.unpaired.iter().collect();
        warn_unpaired(self.peer, &all, asked_agent);
    }
}

/// Warns about certificate files named in `certificate_files` that no key signs for. Those
/// beside an unusable key file were already explained by that key's own warning.
fn warn_unpaired(peer: &Peer, unpaired: &[&UserCertificate], asked_agent: bool) {
    for file in unpaired.iter().filter(|file| file.origin == Origin::Named) {
        let error = CertificateError::NoKey {
            path: file.path.clone(),
            fingerprint: file.key_fingerprint(),
            asked_agent,
        };
        step!(warn, peer = %peer, error = %error, "cannot use certificate");
    }
}
