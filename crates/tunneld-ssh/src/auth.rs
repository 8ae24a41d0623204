//! Public key authentication: the identity files in order, then the agent's keys.

use std::path::PathBuf;

use russh::client::{AuthResult, Handle};
use russh::keys::agent::AgentIdentity;
use russh::keys::agent::client::AgentClient;
use russh::keys::{HashAlg, PrivateKeyWithHashAlg};
use russh::{MethodKind, MethodSet};
use tracing::{debug, info, warn};
use tunneld_config::Hop;

use crate::error::{Peer, TunnelError};
use crate::handler::ClientHandler;
use crate::identity::{self, LoadedKey};

/// Authenticates `hop.user`, reading the key files again (so a key that arrives or changes
/// after start is used without a restart). Never prompts: an encrypted key is an error.
pub(crate) async fn authenticate(
    handle: &mut Handle<ClientHandler>,
    hop: &Hop,
    peer: &Peer,
) -> Result<(), TunnelError> {
    let credentials_dir = std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from);
    let mut problems = Vec::new();
    let mut keys: Vec<LoadedKey> = Vec::new();
    for id in &hop.identity_files {
        match identity::load(id, credentials_dir.as_deref()) {
            Ok(key) => keys.push(key),
            Err(err) => {
                warn!(peer = %peer, key = %id, error = %err, "cannot use key");
                problems.push(err);
            }
        }
    }

    let mut tried = Vec::new();
    let rsa_hash = rsa_hash(handle, keys.iter().any(|k| k.key.algorithm().is_rsa())).await?;
    for key in &keys {
        tried.push(key.source.to_string());
        let offer = PrivateKeyWithHashAlg::new(key.key.clone(), rsa_hash);
        let result = handle
            .authenticate_publickey(&hop.user, offer)
            .await
            .map_err(|source| protocol(peer, source))?;
        match accepted(result) {
            Some(true) => {
                info!(peer = %peer, user = %hop.user, key = %key.source, "authenticated");
                return Ok(());
            }
            Some(false) => {}
            None => break,
        }
    }

    if hop.use_agent && authenticate_with_agent(handle, hop, peer, &mut tried).await? {
        return Ok(());
    }

    if tried.is_empty() && !problems.is_empty() {
        return Err(TunnelError::NoUsableKey {
            user: hop.user.clone(),
            peer: peer.clone(),
            problems,
        });
    }
    Err(TunnelError::AuthRefused {
        user: hop.user.clone(),
        peer: peer.clone(),
        tried,
    })
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
                warn!(
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

/// Offers each key of the agent; true when one was accepted.
async fn authenticate_with_agent(
    handle: &mut Handle<ClientHandler>,
    hop: &Hop,
    peer: &Peer,
    tried: &mut Vec<String>,
) -> Result<bool, TunnelError> {
    let Some(socket) = std::env::var_os("SSH_AUTH_SOCK").map(PathBuf::from) else {
        warn!(peer = %peer, "use_agent is set but SSH_AUTH_SOCK is not");
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
    let public_keys: Vec<_> = identities
        .into_iter()
        .filter_map(|identity| match identity {
            AgentIdentity::PublicKey { key, .. } => Some(key),
            AgentIdentity::Certificate { .. } => None,
        })
        .collect();
    debug!(peer = %peer, socket = %socket.display(), keys = public_keys.len(), "agent keys");
    let rsa_hash = rsa_hash(handle, public_keys.iter().any(|k| k.algorithm().is_rsa())).await?;
    for key in public_keys {
        let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
        tried.push(format!("agent key {fingerprint}"));
        let result = handle
            .authenticate_publickey_with(&hop.user, key, rsa_hash, &mut agent)
            .await
            .map_err(|err| agent_error(err.to_string()))?;
        match accepted(result) {
            Some(true) => {
                info!(peer = %peer, user = %hop.user, key = %fingerprint, agent = %socket.display(), "authenticated with an agent key");
                return Ok(true);
            }
            Some(false) => {}
            None => break,
        }
    }
    Ok(false)
}

fn protocol(peer: &Peer, source: russh::Error) -> TunnelError {
    TunnelError::Protocol {
        peer: peer.clone(),
        source,
    }
}
