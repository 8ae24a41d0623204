//! The russh client `Handler`: verifies the host key, records what was negotiated, refuses
//! every channel the server opens that this tunnel did not ask for, and follows the host keys
//! that an OpenSSH server announces after login (`host_keys.rs`).

mod host_keys;

use std::sync::{Arc, Mutex, OnceLock, Weak};

use russh::client::{ChannelOpenHandle, DisconnectReason, Handle, Msg, Session};
use russh::keys::ssh_key::HashAlg;
use russh::keys::{PublicKey, PublicKeyOrCertificate};
use russh::{Channel, ChannelOpenFailure};
use tokio_util::sync::{CancellationToken, DropGuard};
use tracing::{debug, info, warn};
use tunneld_config::HostKeyPolicy;

use crate::algorithms::{Negotiated, compression_name};
use crate::known_hosts::{HostKeyError, KnownHosts, VerifiedBy};
use crate::routes::Routes;

/// What the handler learns that the connection needs to know.
#[derive(Default)]
pub(crate) struct Shared {
    pub(crate) negotiated: Mutex<Option<Negotiated>>,
    /// Why the session ended, when russh told us.
    pub(crate) end_reason: Mutex<Option<EndReason>>,
    /// The description of the latest channel-open failure. russh's error keeps only the reason
    /// code, and "connect failed" covers both a refused and an unreachable target; the text
    /// ("Connection refused") tells them apart. Opens failing at the very same moment may see
    /// each other's text: the SOCKS reply code is all it decides.
    pub(crate) last_open_failure: Mutex<Option<String>>,
    /// Read-only, under `accept-new`: the key of a host that no file names, which a daemon
    /// would learn (`ssh-ed25519 SHA256:...`).
    pub(crate) would_learn: Mutex<Option<String>>,
    /// The session's handle, once authenticated, for asking the server to prove the host keys
    /// it announced. Weak: a strong handle owned by the handler would keep the session running
    /// after the connection let go of it.
    handle: OnceLock<Weak<Handle<ClientHandler>>>,
    /// Wakes whoever waits for `handle`.
    handle_set: tokio::sync::Notify,
}

impl Shared {
    /// Makes the session's handle available to the handler (see `handle`).
    pub(crate) fn set_handle(&self, handle: &Arc<Handle<ClientHandler>>) {
        if self.handle.set(Arc::downgrade(handle)).is_ok() {
            self.handle_set.notify_one();
        }
    }
}

/// Why a session ended, as reported to `Handler::disconnected`.
#[derive(Debug)]
pub(crate) enum EndReason {
    /// The server sent SSH_MSG_DISCONNECT.
    ServerDisconnect(String),
    /// The session loop failed.
    Error(russh::Error),
}

/// The error type of the handler: russh's, or a refused host key. russh hands the handler's
/// error back from `connect_stream` as it is, so the host key's verdict reaches the caller.
#[derive(Debug)]
pub(crate) enum HandlerError {
    Russh(russh::Error),
    HostKey(HostKeyError),
}

impl From<russh::Error> for HandlerError {
    fn from(err: russh::Error) -> Self {
        HandlerError::Russh(err)
    }
}

/// Which server this handler talks to, for host key checks and messages.
pub(crate) struct ServerIdentity {
    pub(crate) host: String,
    pub(crate) port: u16,
    /// The known_hosts files as read for this attempt (they also ordered the host key
    /// algorithms).
    pub(crate) known_hosts: Arc<KnownHosts>,
    pub(crate) policy: HostKeyPolicy,
    /// Whether to follow the host keys the server announces after login (`update_host_keys`).
    pub(crate) update_host_keys: bool,
    /// Write nothing to known_hosts: under `accept-new`, an unknown host is accepted and its
    /// key noted in [`Shared::would_learn`] instead of learned.
    pub(crate) read_only: bool,
}

pub(crate) struct ClientHandler {
    server: ServerIdentity,
    shared: Arc<Shared>,
    /// The remote forwards requested on this session; `None` on a jump hop, which carries no
    /// forwards of its own and refuses every forwarded connection.
    routes: Option<Arc<Routes>>,
    /// How the server's key was trusted, and the key: what an update of its host keys starts
    /// from.
    trusted: Option<(VerifiedBy, PublicKey)>,
    /// Whether the server has announced its host keys already (OpenSSH sends them once).
    announced: bool,
    /// Cancelled when russh drops the handler, which it does when the session loop ends.
    /// `disconnected` is not always called (pitfall 8), a drop always happens.
    _ended: DropGuard,
    /// Shared by every session of a jump chain: cancelled when any of them ends.
    _chain_ended: DropGuard,
}

impl ClientHandler {
    pub(crate) fn new(
        server: ServerIdentity,
        shared: Arc<Shared>,
        routes: Option<Arc<Routes>>,
        ended: CancellationToken,
        chain_ended: CancellationToken,
    ) -> Self {
        ClientHandler {
            server,
            shared,
            routes,
            trusted: None,
            announced: false,
            _ended: ended.drop_guard(),
            _chain_ended: chain_ended.drop_guard(),
        }
    }

    fn refuse(&self, what: &str, reply: ChannelOpenHandle) -> impl Future<Output = ()> + use<> {
        warn!(
            peer = %self.server.host,
            channel = what,
            "refusing a channel the server opened that this tunnel did not ask for"
        );
        reply.reject(ChannelOpenFailure::AdministrativelyProhibited)
    }
}

/// russh's key type is not `Clone`; the check runs on a blocking thread and needs its own copy.
fn owned(key: &PublicKeyOrCertificate) -> PublicKeyOrCertificate {
    match key {
        PublicKeyOrCertificate::PublicKey { key, hash_alg } => PublicKeyOrCertificate::PublicKey {
            key: key.clone(),
            hash_alg: *hash_alg,
        },
        PublicKeyOrCertificate::Certificate(cert) => {
            PublicKeyOrCertificate::Certificate(cert.clone())
        }
    }
}

impl russh::client::Handler for ClientHandler {
    type Error = HandlerError;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let host = self.server.host.clone();
        let port = self.server.port;
        let known = self.server.known_hosts.clone();
        let read_only = self.server.read_only;
        // Read-only, the key is checked as under `strict`, which never writes.
        let policy = if read_only {
            HostKeyPolicy::Strict
        } else {
            self.server.policy
        };
        let would_learn = read_only && self.server.policy == HostKeyPolicy::AcceptNew;
        let key = owned(key);
        let key_copy = owned(&key);
        // Under accept-new known_hosts is locked, read again and written: keep that off the
        // runtime's threads.
        let span = tracing::Span::current();
        let verdict = tokio::task::spawn_blocking(move || {
            span.in_scope(|| known.verify(policy, &host, port, &key).map(|by| (by, key)))
        })
        .await;
        match verdict {
            Ok(Ok((by, key))) => {
                if let PublicKeyOrCertificate::PublicKey { key, .. } = key {
                    self.trusted = Some((by, key));
                }
                Ok(true)
            }
            Ok(Err(HostKeyError::Unknown { .. })) if would_learn => {
                if let (PublicKeyOrCertificate::PublicKey { key, .. }, Ok(mut slot)) =
                    (key_copy, self.shared.would_learn.lock())
                {
                    let fingerprint = key.fingerprint(HashAlg::Sha256);
                    *slot = Some(format!("{} {fingerprint}", key.algorithm()));
                }
                Ok(true)
            }
            Ok(Err(err)) => Err(HandlerError::HostKey(err)),
            Err(join) => Err(HandlerError::Russh(russh::Error::IO(
                std::io::Error::other(format!("host key check did not complete: {join}")),
            ))),
        }
    }

    async fn kex_done(
        &mut self,
        _shared_secret: Option<&[u8]>,
        names: &russh::Names,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        let negotiated = Negotiated {
            cipher: names.cipher.as_ref().to_string(),
            compression: compression_name(&names.client_compression).to_string(),
        };
        debug!(cipher = %negotiated.cipher, compression = %negotiated.compression, "key exchange done");
        if let Ok(mut slot) = self.shared.negotiated.lock() {
            *slot = Some(negotiated);
        }
        Ok(())
    }

    async fn channel_open_failure(
        &mut self,
        _channel: russh::ChannelId,
        _reason: ChannelOpenFailure,
        description: &str,
        _language: &str,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Ok(mut slot) = self.shared.last_open_failure.lock() {
            *slot = Some(description.to_string());
        }
        Ok(())
    }

    async fn server_channel_open_forwarded_tcpip(
        &mut self,
        channel: Channel<Msg>,
        connected_address: &str,
        connected_port: u32,
        originator_address: &str,
        originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        match &self.routes {
            Some(routes) => {
                let originator = format!("{originator_address}:{originator_port}");
                routes
                    .dispatch(
                        channel,
                        reply,
                        connected_address,
                        connected_port,
                        originator,
                    )
                    .await;
            }
            None => {
                let what = format!("forwarded-tcpip for {connected_address}:{connected_port}");
                self.refuse(&what, reply).await;
            }
        }
        Ok(())
    }

    /// A connection to a socket the server listens on for us (streamlocal-forward): only the
    /// sockets this tunnel asked for are taken.
    async fn server_channel_open_forwarded_streamlocal(
        &mut self,
        channel: Channel<Msg>,
        socket_path: &str,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        match &self.routes {
            Some(routes) => routes.dispatch_socket(channel, reply, socket_path).await,
            None => {
                let what = format!("forwarded-streamlocal for {socket_path}");
                self.refuse(&what, reply).await;
            }
        }
        Ok(())
    }

    async fn server_channel_open_agent_forward(
        &mut self,
        _channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.refuse("auth-agent", reply).await;
        Ok(())
    }

    async fn server_channel_open_session(
        &mut self,
        _channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.refuse("session", reply).await;
        Ok(())
    }

    async fn server_channel_open_direct_tcpip(
        &mut self,
        _channel: Channel<Msg>,
        _host_to_connect: &str,
        _port_to_connect: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.refuse("direct-tcpip", reply).await;
        Ok(())
    }

    async fn server_channel_open_direct_streamlocal(
        &mut self,
        _channel: Channel<Msg>,
        _socket_path: &str,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.refuse("direct-streamlocal", reply).await;
        Ok(())
    }

    async fn server_channel_open_x11(
        &mut self,
        _channel: Channel<Msg>,
        _originator_address: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.refuse("x11", reply).await;
        Ok(())
    }

    async fn openssh_ext_host_keys_announced(
        &mut self,
        keys: Vec<PublicKey>,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        host_keys::announced(self, keys);
        Ok(())
    }

    async fn disconnected(
        &mut self,
        reason: DisconnectReason<Self::Error>,
    ) -> Result<(), Self::Error> {
        let (end, result) = match reason {
            DisconnectReason::ReceivedDisconnect(info) => {
                info!(peer = %self.server.host, reason = ?info.reason_code, message = %info.message, "server closed the connection");
                (
                    Some(EndReason::ServerDisconnect(if info.message.is_empty() {
                        format!("{:?}", info.reason_code)
                    } else {
                        info.message
                    })),
                    Ok(()),
                )
            }
            DisconnectReason::Error(HandlerError::Russh(err)) => {
                let text = err.to_string();
                (
                    Some(EndReason::Error(err)),
                    Err(HandlerError::Russh(russh::Error::IO(
                        std::io::Error::other(text),
                    ))),
                )
            }
            DisconnectReason::Error(other) => (None, Err(other)),
        };
        if let (Some(end), Ok(mut slot)) = (end, self.shared.end_reason.lock()) {
            slot.get_or_insert(end);
        }
        result
    }
}
