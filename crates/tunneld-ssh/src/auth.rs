//! Public key authentication, in OpenSSH's order: for each identity file, its certificates (the
//! `KEY-cert.pub` beside it, then those of `certificate_files` that certify it), then the key
//! itself; then, with `use_agent`, the agent's keys, each after its certificates.
//!
//! `signer.rs` signs certificate offers with the hash the server prefers, `agent.rs` speaks to
//! the agent, and `reminder.rs` warns while a certificate in use nears its end.

mod agent;
mod reminder;
mod signer;

use std::path::PathBuf;

use russh::client::{AuthResult, Handle};
use russh::keys::ssh_key::Certificate;
use russh::keys::{HashAlg, PrivateKeyWithHashAlg};
use russh::{MethodKind, MethodSet};
use tokio_util::sync::CancellationToken;
use tunneld_config::Hop;

use crate::certificate::{self, describe, judge};
use crate::dates;
use crate::error::{Peer, TunnelError};
use crate::handler::ClientHandler;
use crate::quiet::step;
use agent::AgentAttempt;
use signer::FileKey;

/// Authenticates `hop.user`, reading the key and certificate files again (so a key or a renewed
/// certificate that arrives after start is used without a restart). Never prompts: an encrypted
/// key is an error. A certificate is offered whatever this machine's clock says of it; when the
/// server refuses, the error says what the clock thought. `ended` is the session's end, which
/// stops the reminder about a certificate that logged in.
pub(crate) async fn authenticate(
    handle: &mut Handle<ClientHandler>,
    hop: &Hop,
    peer: &Peer,
    ended: &CancellationToken,
) -> Result<(), TunnelError> {
    let credentials_dir = std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from);
    let found = certificate::gather(hop, credentials_dir.as_deref());
    for (id, err) in &found.key_problems {
        step!(warn, peer = %peer, key = %id, error = %err, "cannot use key");
    }
    for (_, err) in &found.certificate_problems {
        step!(warn, peer = %peer, error = %err, "cannot use certificate");
    }
    let now = dates::now();

    let mut tried = Vec::new();
    let any_rsa = found
        .identities
        .iter()
        .any(|identity| identity.key.key.algorithm().is_rsa());
    let rsa_hash = rsa_hash(handle, any_rsa).await?;
    'identities: for identity in &found.identities {
        let key = &identity.key;
        for file in &identity.certificates {
            let name = file.path.display().to_string();
            tried.push(offer_label(&name, &file.certificate, &hop.user, now));
            let result = handle
                .authenticate_certificate_with(
                    &hop.user,
                    file.certificate.clone(),
                    rsa_hash,
                    &mut FileKey(key.key.clone()),
                )
                .await
                .map_err(|source| protocol(peer, source.into_russh()))?;
            match accepted(result) {
                Some(true) => {
                    step!(info, peer = %peer, user = %hop.user, certificate = %name, key = %key.source, "authenticated with a certificate");
                    reminder::watch(name, peer.clone(), &file.certificate, ended.clone());
                    return Ok(());
                }
                Some(false) => {}
                None => break 'identities,
            }
        }
        tried.push(key.source.to_string());
        let offer = PrivateKeyWithHashAlg::new(key.key.clone(), rsa_hash);
        let result = handle
            .authenticate_publickey(&hop.user, offer)
            .await
            .map_err(|source| protocol(peer, source))?;
        match accepted(result) {
            Some(true) => {
                step!(info, peer = %peer, user = %hop.user, key = %key.source, "authenticated");
                return Ok(());
            }
            Some(false) => {}
            None => break,
        }
    }

    let attempt = AgentAttempt {
        hop,
        peer,
        unpaired: &found.unpaired,
        now,
        ended,
    };
    if hop.use_agent {
        if attempt.authenticate(handle, &mut tried).await? {
            return Ok(());
        }
    } else {
        attempt.warn_unpaired(false);
    }

    if tried.is_empty() && !found.key_problems.is_empty() {
        return Err(TunnelError::NoUsableKey {
            user: hop.user.clone(),
            peer: peer.clone(),
            problems: found.key_problems.into_iter().map(|(_, err)| err).collect(),
        });
    }
    Err(TunnelError::AuthRefused {
        user: hop.user.clone(),
        peer: peer.clone(),
        tried,
    })
}

/// How an offered certificate is named in `tried`: `NAME (certificate "id" serial 1, valid
/// ..., principals: ...)`, plus what this machine's clock and the user make of it, so that a
/// refusal explains itself.
fn offer_label(name: &str, certificate: &Certificate, user: &str, now: u64) -> String {
    let mut label = format!("{name} ({}", describe(certificate));
    for finding in judge(certificate, user, now) {
        label.push_str("; ");
        label.push_str(&finding.to_string());
    }
    label.push(')');
    label
}

/// `Some(true)`: in. `Some(false)`: this key was refused, try the next. `None`: the server will
/// not take public keys any more (or wants a second factor tunneld cannot give).
fn accepted(result: AuthResult) -> Option<bool> {
    match result {
        AuthResult::Success => Some(true),
        AuthResult::Failure {
            remaining_methods,
            partial_success,
        } => {
            if partial_success {
                step!(
                    warn,
                    "the server accepted the key but requires a further authentication step; tunneld only does public keys"
                );
                return None;
            }
            publickey_allowed(&remaining_methods).then_some(false)
        }
    }
}

fn publickey_allowed(methods: &MethodSet) -> bool {
    methods.is_empty() || methods.contains(&MethodKind::PublicKey)
}

/// The signature hash to use with RSA keys, asked only when an RSA key will be offered (the
/// question can wait up to a second for the server's extension info).
async fn rsa_hash(
    handle: &Handle<ClientHandler>,
    have_rsa: bool,
) -> Result<Option<HashAlg>, TunnelError> {
    if !have_rsa {
        return Ok(None);
    }
    Ok(handle
        .best_supported_rsa_hash()
        .await
        .ok()
        .flatten()
        .flatten())
}

fn protocol(peer: &Peer, source: russh::Error) -> TunnelError {
    TunnelError::Protocol {
        peer: peer.clone(),
        source,
    }
}
