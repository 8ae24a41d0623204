//! Dialling one hop: the TCP connection (or the channel through the previous hop), the SSH
//! handshake with its host key check, and authentication.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tunneld_config::{Hop, Keepalive};

use super::heard::Heard;
use super::{Progress, ProgressFn, Session};
use crate::algorithms;
use crate::auth;
use crate::error::{Peer, Stage, TunnelError};
use crate::handler::{ClientHandler, HandlerError, ServerIdentity, Shared};
use crate::known_hosts::KnownHosts;
use crate::proxy;
use crate::quiet::step;
use crate::routes::Routes;
use crate::tcp;

/// One hop being dialled.
pub(super) struct Dial<'a> {
    pub(super) hop: &'a Hop,
    /// Its position in a jump chain (from 1), or `None` when dialled directly.
    pub(super) index: Option<usize>,
    /// Keepalives run on the session that carries the forwards (the target) only.
    pub(super) keepalive: Option<&'a Keepalive>,
    pub(super) progress: &'a ProgressFn,
    pub(super) chain_ended: &'a CancellationToken,
    /// Write nothing: known_hosts is only read (`Connection::establish_read_only`).
    pub(super) read_only: bool,
}

impl Dial<'_> {
    /// Establishes the session to this hop: directly, or through the `previous` hop's session.
    /// A failure in a chain names the hop: `hop 2 (db-server): ...`.
    pub(super) async fn dial(&self, previous: Option<&Session>) -> Result<Session, TunnelError> {
        let dialled = match previous {
            None => self.direct().await,
            Some(previous) => self.through(previous).await,
        };
        dialled.map_err(|err| match self.index {
            Some(index) => TunnelError::at_hop(index, &self.hop.label, err),
            None => err,
        })
    }

    async fn direct(&self) -> Result<Session, TunnelError> {
        let hop = self.hop;
        let peer = Peer::of(hop);
        (self.progress)(Progress::Connecting { peer: peer.clone() });
        let deadline = Instant::now() + hop.connect_timeout;
        step!(info, peer = %peer, "connecting");
        let tcp = match &hop.proxy {
            Some(via) => {
                step!(info, peer = %peer, proxy = %via, "connecting through proxy");
                proxy::connect(
                    via,
                    &hop.hostname,
                    hop.port,
                    &peer,
                    deadline,
                    hop.connect_timeout,
                )
                .await?
            }
            None => {
                tcp::connect_tcp(
                    &hop.hostname,
                    hop.port,
                    &peer,
                    deadline,
                    hop.connect_timeout,
                )
                .await?
            }
        };
        let user_timeout = self.keepalive.and_then(Keepalive::stuck_link_budget);
        tcp::tune(&tcp, user_timeout);
        self.handshake(tcp::QuickAckStream::new(tcp), peer, deadline)
            .await
    }

    async fn through(&self, previous: &Session) -> Result<Session, TunnelError> {
        let hop = self.hop;
        let peer = Peer::of(hop);
        (self.progress)(Progress::Connecting { peer: peer.clone() });
        let deadline = Instant::now() + hop.connect_timeout;
        step!(info, peer = %peer, via = %previous.peer, "connecting through jump host");
        let channel = tokio::time::timeout_at(
            deadline,
            previous.handle.channel_open_direct_tcpip(
                hop.hostname.clone(),
                u32::from(hop.port),
                "127.0.0.1",
                0,
            ),
        )
        .await
        .map_err(|_| TunnelError::Timeout {
            peer: peer.clone(),
            stage: Stage::Connect,
            after: hop.connect_timeout,
        })?
        .map_err(|err| match err {
            russh::Error::ChannelOpenFailure(reason) => TunnelError::Through {
                via: previous.peer.label.clone(),
                target: peer.address.clone(),
                reason,
            },
            source => TunnelError::JumpLost {
                via: previous.peer.label.clone(),
                peer: peer.clone(),
                source,
            },
        })?;
        self.handshake(channel.into_stream(), peer, deadline).await
    }

    async fn handshake<S>(
        &self,
        stream: S,
        peer: Peer,
        deadline: Instant,
    ) -> Result<Session, TunnelError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let hop = self.hop;
        let timeout = |stage| TunnelError::Timeout {
            peer: peer.clone(),
            stage,
            after: hop.connect_timeout,
        };
        let known = {
            let (learned, global) = (hop.known_hosts.clone(), hop.global_known_hosts.clone());
            tokio::task::spawn_blocking(move || KnownHosts::load_with_global(&learned, &global))
                .await
                .map_err(|source| TunnelError::TaskFailed {
                    what: "reading known_hosts",
                    source,
                })??
        };
        // Both files are read once per attempt: they order the host key algorithms here, and the
        // handler checks the server's key against them.
        let known = Arc::new(known);
        let preferred = algorithms::preferred(
            hop,
            &known.known_algorithms(&hop.hostname, hop.port),
            known.has_cert_authority_for(&hop.hostname, hop.port),
        );
        let config = Arc::new(algorithms::client_config(hop, self.keepalive, preferred));
        let shared = Arc::new(Shared::default());
        let ended = CancellationToken::new();
        // Only the session that carries the forwards (the one with keepalives) takes forwarded
        // connections; a jump hop refuses them all.
        let (routes, incoming) = match self.keepalive {
            Some(_) => {
                let (routes, incoming) = Routes::new();
                (Some(routes), Some(incoming))
            }
            None => (None, None),
        };
        let handler = ClientHandler::new(
            ServerIdentity {
                host: hop.hostname.clone(),
                port: hop.port,
                known_hosts: known,
                policy: hop.host_key_policy,
                update_host_keys: hop.update_host_keys && !self.read_only,
                read_only: self.read_only,
            },
            shared.clone(),
            routes.clone(),
            ended.clone(),
            self.chain_ended.clone(),
        );
        // Until the server's first byte, no SSH server has taken part: a failure then is the
        // network's (a proxy or port forward in front of a server that is down), however late.
        let (stream, heard) = Heard::new(stream);
        let connected = tokio::time::timeout_at(
            deadline,
            russh::client::connect_stream(config, stream, handler),
        )
        .await;
        let heard = heard.load(Ordering::Relaxed);
        let mut handle = match connected {
            Err(_) if heard => return Err(timeout(Stage::Handshake)),
            Err(_) => return Err(timeout(Stage::Version)),
            Ok(Ok(handle)) => handle,
            Ok(Err(HandlerError::HostKey(err))) => return Err(TunnelError::HostKey(err)),
            Ok(Err(HandlerError::Russh(source))) if heard => {
                return Err(TunnelError::Protocol { peer, source });
            }
            Ok(Err(HandlerError::Russh(source))) => {
                return Err(TunnelError::ClosedBeforeVersion { peer, source });
            }
        };
        let would_learn = shared.would_learn.lock().ok().and_then(|mut w| w.take());
        if let Some(fingerprint) = would_learn {
            (self.progress)(Progress::WouldLearn {
                peer: peer.clone(),
                fingerprint,
            });
        }
        (self.progress)(Progress::Authenticating { peer: peer.clone() });
        tokio::time::timeout_at(
            deadline,
            auth::authenticate(&mut handle, hop, &peer, &ended),
        )
        .await
        .map_err(|_| timeout(Stage::Authentication))??;
        // The handler reaches the session through a weak reference, to have the server prove
        // the host keys it announces after login (`handler/host_keys.rs`).
        let handle = Arc::new(handle);
        shared.set_handle(&handle);
        Ok(Session {
            handle,
            shared,
            ended,
            routes,
            incoming: std::sync::Mutex::new(incoming),
            peer,
            hop: self.index,
        })
    }
}
