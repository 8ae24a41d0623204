//! Host keys that rotate, on the session's side: what the handler does with the host keys an
//! OpenSSH server announces after login (`hostkeys-00@openssh.com`), like OpenSSH's
//! `UpdateHostKeys`. What changes in known_hosts, and the rules for it, are in
//! `known_hosts/update.rs`.
//!
//! russh 0.65 parses the announcement and hands the keys to
//! `Handler::openssh_ext_host_keys_announced`; it neither asks for nor checks a proof by itself.
//! `Handle::hostkeys_prove` sends `hostkeys-prove-00@openssh.com` for the keys given and checks
//! each signature over this session's id (the `Session` method that its documentation suggests
//! instead is private to russh). A handle must not be awaited inside the callback, so the work
//! runs in a task, which reaches the session through the weak handle that the connection sets
//! once authenticated.
//!
//! As in OpenSSH, an update happens only after a login verified by a key that the learned file
//! already had: not for a key learned by accept-new in this very connection, not for a host
//! certificate, and not for a key pinned in the global file.

use std::sync::Arc;
use std::time::Duration;

use russh::client::Handle;
use russh::keys::{Algorithm, PublicKey};
use tracing::{Instrument, debug, warn};

use super::{ClientHandler, Shared};
use crate::known_hosts::{HostsFile, KnownHosts, VerifiedBy, lookup_name};

/// How long the proof may take. sshd answers at once; a server that does not is not waited
/// for, and the known keys stay as they are.
const PROOF_TIMEOUT: Duration = Duration::from_secs(30);

/// Called with the keys the server announced.
pub(super) fn announced(handler: &mut ClientHandler, keys: Vec<PublicKey>) {
    let server = &handler.server;
    let name = lookup_name(&server.host, server.port);
    if !server.update_host_keys {
        debug!("{name} announced its host keys; not followed (update_host_keys = false)");
        return;
    }
    if std::mem::replace(&mut handler.announced, true) {
        debug!("{name} announced its host keys again; ignored");
        return;
    }
    let Some((by, verified)) = handler.trusted.clone() else {
        return;
    };
    let why_not = match by {
        VerifiedBy::KnownHost {
            file: HostsFile::Learned,
            ..
        } => None,
        VerifiedBy::KnownHost {
            file: HostsFile::Global,
            ..
        } => Some("its key is pinned in global_known_hosts, which tunneld never writes"),
        VerifiedBy::CertificateAuthority { .. } => Some("it was verified by a host certificate"),
        VerifiedBy::Learned { .. } => Some(
            "its key was learned by accept-new in this connection, and only a key known before \
             the login can vouch for others",
        ),
    };
    if let Some(why) = why_not {
        debug!("{name} announced its host keys; not followed: {why}");
        return;
    }
    // Only keys of the types tunneld accepts as host keys, as OpenSSH keeps those its
    // HostKeyAlgorithms allow: a key it would never be offered must not stay behind either.
    let keys: Vec<PublicKey> = keys.into_iter().filter(accepted).collect();
    let work = Update {
        known: server.known_hosts.clone(),
        host: server.host.clone(),
        port: server.port,
        name,
        verified,
        announced: keys,
        shared: handler.shared.clone(),
    };
    tokio::spawn(work.run().instrument(tracing::Span::current()));
}

/// Whether tunneld accepts host keys of this type.
fn accepted(key: &PublicKey) -> bool {
    let algorithm = key.algorithm();
    russh::Preferred::DEFAULT
        .key
        .iter()
        .any(|known| match known {
            Algorithm::Rsa { .. } => matches!(algorithm, Algorithm::Rsa { .. }),
            known => *known == algorithm,
        })
}

/// One announcement, followed on a task of its own.
struct Update {
    known: Arc<KnownHosts>,
    host: String,
    port: u16,
    name: String,
    verified: PublicKey,
    announced: Vec<PublicKey>,
    shared: Arc<Shared>,
}

impl Update {
    async fn run(self) {
        let to_prove = {
            let (known, host, port) = (self.known.clone(), self.host.clone(), self.port);
            let (verified, announced) = (self.verified.clone(), self.announced.clone());
            let span = tracing::Span::current();
            tokio::task::spawn_blocking(move || {
                span.in_scope(|| known.host_keys_to_prove(&host, port, &verified, &announced))
            })
            .await
        };
        let to_prove = match to_prove {
            Ok(Ok(keys)) => keys,
            Ok(Err(skipped)) => {
                debug!("host keys of {} not updated: {skipped}", self.name);
                return;
            }
            Err(join) => {
                warn!("host keys of {} not updated: {join}", self.name);
                return;
            }
        };
        let proven = if to_prove.is_empty() {
            // Only removals: the login's key vouches for them, as in OpenSSH.
            Vec::new()
        } else {
            match self.prove(&to_prove).await {
                Ok(()) => to_prove,
                Err(why) => {
                    warn!(
                        "{} announced {} new host key(s) but {why}; known_hosts left as it is",
                        self.name,
                        to_prove.len()
                    );
                    return;
                }
            }
        };
        let Update {
            known,
            host,
            port,
            name,
            verified,
            announced,
            ..
        } = self;
        let span = tracing::Span::current();
        let outcome = tokio::task::spawn_blocking(move || {
            span.in_scope(|| known.update_host_keys(&host, port, &verified, &announced, &proven))
        })
        .await;
        match outcome {
            // Each change is logged where it is made.
            Ok(Ok(Ok(_))) => {}
            Ok(Ok(Err(skipped))) => debug!("host keys of {name} not updated: {skipped}"),
            Ok(Err(error)) => warn!("host keys of {name} not updated: {error}"),
            Err(join) => warn!("host keys of {name} not updated: {join}"),
        }
    }

    /// Asks the server to prove that it holds the private halves of `keys`.
    async fn prove(&self, keys: &[PublicKey]) -> Result<(), String> {
        let Some(handle) = self.handle().await else {
            return Err("the session ended before it could prove them".to_owned());
        };
        match tokio::time::timeout(PROOF_TIMEOUT, handle.hostkeys_prove(keys.to_vec())).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(russh::Error::RequestDenied)) => {
                Err("it refused to prove it holds them".to_owned())
            }
            Ok(Err(russh::Error::WrongServerSig)) => {
                Err("its proof that it holds them does not verify".to_owned())
            }
            Ok(Err(error)) => Err(format!("its proof failed: {error}")),
            Err(_) => Err(format!(
                "it did not prove it holds them within {PROOF_TIMEOUT:?}"
            )),
        }
    }

    /// The session's handle, once the connection has set it; `None` when the session is gone.
    async fn handle(&self) -> Option<Arc<Handle<ClientHandler>>> {
        let wait = async {
            loop {
                if let Some(weak) = self.shared.handle.get() {
                    return weak.upgrade();
                }
                self.shared.handle_set.notified().await;
            }
        };
        tokio::time::timeout(PROOF_TIMEOUT, wait)
            .await
            .ok()
            .flatten()
    }
}
