//! One established SSH connection: dialled (directly or through jump hosts), verified,
//! authenticated, and watched until it ends.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use russh::client::{Handle, Msg};
use russh::{Channel, ChannelOpenFailure, Disconnect};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};
use tunneld_config::{Hop, Keepalive, RemoteForward};

use crate::algorithms::{self, Negotiated};
use crate::auth;
use crate::dial;
use crate::error::{FailureKind, SshError, Stage, protocol_kind};
use crate::forward::remote::{IncomingForward, Routes, request_address};
use crate::handler::{ClientHandler, EndReason, HandlerError, ServerIdentity, Shared};
use crate::known_hosts::KnownHosts;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// How far an attempt to establish a connection has come, reported as it happens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Opening the TCP connection (or the channel through the previous hop) and handshaking.
    Connecting {
        /// The server, as messages name it.
        peer: String,
    },
    /// The host key was accepted; authenticating.
    Authenticating {
        /// The server, as messages name it.
        peer: String,
    },
}

/// Receives [`Progress`] reports.
pub type ProgressFn = dyn Fn(Progress) + Send + Sync;

/// One SSH session to one server.
struct Session {
    handle: Handle<ClientHandler>,
    shared: Arc<Shared>,
    ended: CancellationToken,
    /// Remote forward routes (the target session only).
    routes: Option<Arc<Routes>>,
    /// Where forwarded connections arrive, until the tunnel takes it.
    incoming: std::sync::Mutex<Option<mpsc::UnboundedReceiver<IncomingForward>>>,
    /// `label (host:port)`, for messages.
    peer: String,
    /// The configuration's name for the server.
    label: String,
    /// Its position in a jump chain (from 1), or `None` when dialled directly.
    hop: Option<usize>,
}

/// An established, authenticated SSH connection that carries a tunnel's forwards.
pub struct Connection {
    id: u64,
    target: Session,
    /// The sessions to the jump hosts, outermost first. Kept alive for as long as the target
    /// session runs inside their channels.
    jumps: Vec<Session>,
    negotiated: Negotiated,
    keepalive: Keepalive,
    channel_open_timeout: Duration,
    label: String,
    /// Cancelled when any session of the chain ends (the target's, or a jump host's).
    chain_ended: CancellationToken,
}

/// Why a forwarded connection could not be opened through the server.
#[derive(Debug, thiserror::Error)]
pub enum ChannelOpenError {
    /// The server answered no.
    #[error("connection to {target} via {server} refused by the server ({})", describe_failure(.reason, .description.as_deref()))]
    Refused {
        /// `host:port` that was asked for.
        target: String,
        /// The server's label.
        server: String,
        /// The server's reason.
        reason: ChannelOpenFailure,
        /// The server's words, when it gave any ("Connection refused").
        description: Option<String>,
    },
    /// The server did not answer in time (it may be waiting on its own TCP connect).
    #[error("connection to {target} via {server}: no answer from the server within {}s", .after.as_secs())]
    Timeout {
        /// `host:port` that was asked for.
        target: String,
        /// The server's label.
        server: String,
        /// The timeout that ran out.
        after: Duration,
    },
    /// The SSH connection is gone.
    #[error("connection to {target} via {server}: the SSH connection closed")]
    Closed {
        /// `host:port` that was asked for.
        target: String,
        /// The server's label.
        server: String,
    },
}

/// Why the server did not grant a remote forward.
#[derive(Debug, thiserror::Error)]
pub enum RemoteForwardError {
    /// The server refuses remote forwarding altogether (a port-0 request is refused too):
    /// retrying cannot help until its configuration changes.
    #[error(
        "{server} refuses remote port forwarding of {spec} (AllowTcpForwarding / PermitListen / permitlisten)"
    )]
    Policy {
        /// The server's label.
        server: String,
        /// The forward as written.
        spec: String,
    },
    /// This port is refused while others would be granted: most often the server still holds
    /// it for a previous session that it has not expired yet; or another process uses it there,
    /// or this port number alone is not permitted.
    #[error(
        "remote port {port} still held by a previous session on the server (or in use there); retrying"
    )]
    PortBusy {
        /// The port asked for.
        port: u16,
    },
    /// The server did not answer in time.
    #[error("{server} did not answer the request for remote port {port} within {}s", .after.as_secs())]
    Timeout {
        /// The server's label.
        server: String,
        /// The port asked for.
        port: u16,
        /// The timeout that ran out.
        after: Duration,
    },
    /// The SSH connection is gone.
    #[error("the SSH connection closed")]
    Closed,
}

fn describe_failure(reason: &ChannelOpenFailure, description: Option<&str>) -> String {
    match reason {
        ChannelOpenFailure::AdministrativelyProhibited => {
            "administratively prohibited: AllowTcpForwarding / permitopen".to_string()
        }
        ChannelOpenFailure::ConnectFailed => match description {
            Some(text) if !text.is_empty() => format!("connect failed: {text}"),
            _ => "connect failed".to_string(),
        },
        ChannelOpenFailure::UnknownChannelType => "unknown channel type".to_string(),
        ChannelOpenFailure::ResourceShortage => "resource shortage".to_string(),
        ChannelOpenFailure::Other { code, reason } => format!("{reason} (code {code})"),
    }
}

/// One hop being dialled.
struct Dial<'a> {
    hop: &'a Hop,
    /// Its position in a jump chain, for messages.
    index: Option<usize>,
    /// Keepalives run on the session that carries the forwards (the target) only.
    keepalive: Option<&'a Keepalive>,
    progress: &'a ProgressFn,
    chain_ended: &'a CancellationToken,
}

impl Dial<'_> {
    async fn direct(&self) -> Result<Session, SshError> {
        let (hop, keepalive, progress) = (self.hop, self.keepalive, self.progress);
        let peer = peer_of(hop);
        progress(Progress::Connecting { peer: peer.clone() });
        let deadline = Instant::now() + hop.connect_timeout;
        info!(peer = %peer, "connecting");
        let tcp = dial::connect_tcp(
            &hop.hostname,
            hop.port,
            &peer,
            deadline,
            hop.connect_timeout,
        )
        .await?;
        let user_timeout = keepalive.and_then(Keepalive::stuck_link_budget);
        dial::tune(&tcp, user_timeout);
        self.handshake(dial::QuickAckStream::new(tcp), peer, deadline)
            .await
    }

    async fn through(&self, previous: &Session) -> Result<Session, SshError> {
        let (hop, progress) = (self.hop, self.progress);
        let peer = peer_of(hop);
        progress(Progress::Connecting { peer: peer.clone() });
        let deadline = Instant::now() + hop.connect_timeout;
        info!(peer = %peer, via = %previous.peer, "connecting through jump host");
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
        .map_err(|_| SshError::Timeout {
            peer: peer.clone(),
            stage: Stage::Connect,
            after: hop.connect_timeout,
        })?
        .map_err(|err| match err {
            russh::Error::ChannelOpenFailure(reason) => SshError::Through {
                via: previous.label.clone(),
                target: format!("{}:{}", hop.hostname, hop.port),
                reason,
            },
            other => SshError::Closed {
                peer: peer.clone(),
                reason: format!("{} could not connect to it: {other}", previous.label),
                kind: FailureKind::Network,
            },
        })?;
        self.handshake(channel.into_stream(), peer, deadline).await
    }

    async fn handshake<S>(
        &self,
        stream: S,
        peer: String,
        deadline: Instant,
    ) -> Result<Session, SshError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (hop, keepalive, progress) = (self.hop, self.keepalive, self.progress);
        let timeout = |stage| SshError::Timeout {
            peer: peer.clone(),
            stage,
            after: hop.connect_timeout,
        };
        let known = {
            let (learned, global) = (hop.known_hosts.clone(), hop.global_known_hosts.clone());
            tokio::task::spawn_blocking(move || KnownHosts::load_with_global(&learned, &global))
                .await
                .map_err(|err| SshError::Closed {
                    peer: peer.clone(),
                    reason: format!("reading known_hosts did not complete: {err}"),
                    kind: FailureKind::Config,
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
        let config = Arc::new(algorithms::client_config(keepalive, preferred));
        let shared = Arc::new(Shared::default());
        let ended = CancellationToken::new();
        // Only the session that carries the forwards (the one with keepalives) takes forwarded
        // connections; a jump hop refuses them all.
        let (routes, incoming) = match keepalive {
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
            },
            shared.clone(),
            routes.clone(),
            ended.clone(),
            self.chain_ended.clone(),
        );
        let connected = tokio::time::timeout_at(
            deadline,
            russh::client::connect_stream(config, stream, handler),
        )
        .await
        .map_err(|_| timeout(Stage::Handshake))?;
        let mut handle = match connected {
            Ok(handle) => handle,
            Err(HandlerError::HostKey) => {
                let err = shared.host_key_error.lock().ok().and_then(|mut e| e.take());
                return Err(match err {
                    Some(err) => SshError::HostKey(err),
                    None => SshError::Closed {
                        peer,
                        reason: "host key refused".to_string(),
                        kind: FailureKind::HostKey,
                    },
                });
            }
            Err(HandlerError::Russh(source)) => return Err(SshError::Protocol { peer, source }),
        };
        progress(Progress::Authenticating { peer: peer.clone() });
        tokio::time::timeout_at(deadline, auth::authenticate(&mut handle, hop, &peer))
            .await
            .map_err(|_| timeout(Stage::Authentication))??;
        Ok(Session {
            handle,
            shared,
            ended,
            routes,
            incoming: std::sync::Mutex::new(incoming),
            peer,
            label: hop.label.clone(),
            hop: self.index,
        })
    }
}

/// Names the hop of a chain in an error: `hop 2 (db-server): ...`.
fn at_hop(index: Option<usize>, hop: &Hop, err: SshError) -> SshError {
    match index {
        Some(index) => SshError::at_hop(index, &hop.label, err),
        None => err,
    }
}

/// How messages name a server: `host:port`, or `label (host:port)` when the configuration
/// calls it by a `[hosts]` name.
fn peer_of(hop: &Hop) -> String {
    let address = if hop.hostname.contains(':') {
        format!("[{}]:{}", hop.hostname, hop.port)
    } else {
        format!("{}:{}", hop.hostname, hop.port)
    };
    if hop.label.contains(&hop.hostname) {
        address
    } else {
        format!("{} ({address})", hop.label)
    }
}

impl Connection {
    /// Connects to `target`, through `jump` hosts in order, verifying each host key and
    /// authenticating at each hop. Each hop has its own `connect_timeout`. Keepalives run on the
    /// target session, the one the forwards use.
    pub async fn establish(
        target: &Hop,
        jump: &[Hop],
        keepalive: &Keepalive,
        progress: &ProgressFn,
    ) -> Result<Connection, SshError> {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let chain_ended = CancellationToken::new();
        let chained = !jump.is_empty();
        let mut sessions: Vec<Session> = Vec::with_capacity(jump.len());
        for (i, hop) in jump.iter().enumerate() {
            let at = Dial {
                hop,
                index: chained.then_some(i + 1),
                keepalive: None,
                progress,
                chain_ended: &chain_ended,
            };
            let session = match sessions.last() {
                None => at.direct().await,
                Some(previous) => at.through(previous).await,
            }
            .map_err(|err| at_hop(at.index, hop, err))?;
            sessions.push(session);
        }
        let at = Dial {
            hop: target,
            index: chained.then_some(jump.len() + 1),
            keepalive: Some(keepalive),
            progress,
            chain_ended: &chain_ended,
        };
        let session = match sessions.last() {
            None => at.direct().await,
            Some(previous) => at.through(previous).await,
        }
        .map_err(|err| at_hop(at.index, target, err))?;
        let negotiated = session
            .shared
            .negotiated
            .lock()
            .ok()
            .and_then(|n| n.clone())
            .unwrap_or_default();
        info!(
            connection = id,
            peer = %session.peer,
            cipher = %negotiated.cipher,
            compression = %negotiated.compression,
            "connected"
        );
        Ok(Connection {
            id,
            target: session,
            jumps: sessions,
            negotiated,
            keepalive: *keepalive,
            channel_open_timeout: target.connect_timeout,
            label: target.label.clone(),
            chain_ended,
        })
    }

    /// A number that tells connections apart in logs and tests: a reconnect makes a new one.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The target server's `label port N` / `label (host:port)`.
    pub fn peer(&self) -> &str {
        &self.target.peer
    }

    /// The cipher and compression agreed with the target server.
    pub fn negotiated(&self) -> &Negotiated {
        &self.negotiated
    }

    /// Whether the connection has ended (the target's session, or a jump host's under it).
    pub fn is_closed(&self) -> bool {
        self.chain_ended.is_cancelled() || self.target.handle.is_closed()
    }

    /// Waits until the connection ends, without consuming its reason (see
    /// [`Connection::closed`]).
    pub async fn ended(&self) {
        self.chain_ended.cancelled().await;
    }

    /// Waits until the connection ends and says why. The reason is handed out once: the
    /// tunnel's supervisor asks; anything else that needs to know uses [`Connection::ended`].
    ///
    /// In a jump chain the outermost session that ended is the cause: when a jump host goes,
    /// every session inside it goes too, and blaming the target would send the operator to the
    /// wrong server.
    pub async fn closed(&self) -> SshError {
        self.chain_ended.cancelled().await;
        let session = self
            .jumps
            .iter()
            .find(|s| s.ended.is_cancelled())
            .unwrap_or(&self.target);
        let err = self.end_error(session);
        match session.hop {
            Some(index) => SshError::at_hop(index, &session.label, err),
            None => err,
        }
    }

    fn end_error(&self, session: &Session) -> SshError {
        let reason = session
            .shared
            .end_reason
            .lock()
            .ok()
            .and_then(|mut r| r.take());
        let peer = session.peer.clone();
        match reason {
            Some(EndReason::ServerDisconnect(message)) => SshError::Closed {
                peer,
                reason: format!("the server closed the connection: {message}"),
                kind: FailureKind::Network,
            },
            Some(EndReason::Error(russh::Error::KeepaliveTimeout)) => SshError::Closed {
                peer,
                reason: format!(
                    "no answer to {} keepalives in {}s",
                    self.keepalive.max,
                    self.keepalive
                        .dead_peer_budget()
                        .unwrap_or_default()
                        .as_secs()
                ),
                kind: FailureKind::Timeout,
            },
            Some(EndReason::Error(russh::Error::InactivityTimeout)) => SshError::Closed {
                peer,
                reason: format!(
                    "nothing received from the server in {}s (the link is stuck)",
                    self.keepalive
                        .stuck_link_budget()
                        .unwrap_or_default()
                        .as_secs()
                ),
                kind: FailureKind::Timeout,
            },
            Some(EndReason::Error(err)) => {
                let kind = protocol_kind(&err);
                SshError::Closed {
                    peer,
                    reason: format!("connection lost: {err}"),
                    kind,
                }
            }
            None => SshError::Closed {
                peer,
                reason: "connection closed".to_string(),
                kind: FailureKind::Network,
            },
        }
    }

    /// Opens a direct-tcpip channel to `host:port` as seen from the server, bounded by the
    /// hop's `connect_timeout` (the server may be waiting on its own TCP connect).
    ///
    /// russh sends the request at once and cannot take it back, so the open runs in a task of
    /// its own: when the server confirms only after we gave up, that task closes the channel
    /// rather than leaving it (and the server's connection to the target) open for the rest of
    /// the session.
    pub async fn open_direct_tcpip(
        self: &Arc<Self>,
        host: &str,
        port: u16,
        originator: SocketAddr,
    ) -> Result<Channel<Msg>, ChannelOpenError> {
        let target = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let (reply_tx, reply_rx) = tokio::sync::oneshot::channel();
        let connection = Arc::clone(self);
        let request = (host.to_string(), originator);
        tokio::spawn(async move {
            let (host, originator) = request;
            let opened = connection
                .target
                .handle
                .channel_open_direct_tcpip(
                    host,
                    u32::from(port),
                    originator.ip().to_string(),
                    u32::from(originator.port()),
                )
                .await;
            if let Err(Ok(late)) = reply_tx.send(opened) {
                debug!("the server confirmed a channel after its open timed out; closing it");
                let _ = late.eof().await;
                let _ = late.close().await;
            }
        });
        let opened = tokio::time::timeout(self.channel_open_timeout, reply_rx).await;
        match opened {
            Ok(Ok(Ok(channel))) => Ok(channel),
            Ok(Ok(Err(russh::Error::ChannelOpenFailure(reason)))) => {
                let description = self
                    .target
                    .shared
                    .last_open_failure
                    .lock()
                    .ok()
                    .and_then(|d| d.clone());
                Err(ChannelOpenError::Refused {
                    target,
                    server: self.label.clone(),
                    reason,
                    description,
                })
            }
            Ok(Ok(Err(err))) => {
                debug!(error = %err, "channel open failed");
                Err(ChannelOpenError::Closed {
                    target,
                    server: self.label.clone(),
                })
            }
            Ok(Err(_)) => Err(ChannelOpenError::Closed {
                target,
                server: self.label.clone(),
            }),
            Err(_) => Err(ChannelOpenError::Timeout {
                target,
                server: self.label.clone(),
                after: self.channel_open_timeout,
            }),
        }
    }

    /// Takes the stream of connections the server forwards for this tunnel's remote forwards
    /// (once; `None` afterwards).
    pub fn take_incoming(&self) -> Option<mpsc::UnboundedReceiver<IncomingForward>> {
        self.target.incoming.lock().ok()?.take()
    }

    /// Asks the server to listen for `forward`. The route is registered first, so a connection
    /// that arrives before the answer finds it. Returns the port the server listens on (the one
    /// it picked, for port 0).
    pub async fn request_remote(
        &self,
        forward: &Arc<RemoteForward>,
    ) -> Result<u32, RemoteForwardError> {
        let Some(routes) = &self.target.routes else {
            return Err(RemoteForwardError::Closed);
        };
        let address = request_address(&forward.bind);
        routes.add(forward.clone());
        let handle = &self.target.handle;
        let asked = tokio::time::timeout(
            self.channel_open_timeout,
            handle.tcpip_forward(address.clone(), u32::from(forward.port)),
        )
        .await;
        match asked {
            Ok(Ok(picked)) => {
                // russh returns 0 for a fixed port (pitfall 5).
                let port = if forward.port == 0 {
                    picked
                } else {
                    u32::from(forward.port)
                };
                routes.bound(forward, port);
                Ok(port)
            }
            Ok(Err(russh::Error::RequestDenied)) => {
                routes.remove(forward);
                if self.refuses_all_remote_forwards(&address).await {
                    Err(RemoteForwardError::Policy {
                        server: self.label.clone(),
                        spec: forward.spec.clone(),
                    })
                } else {
                    Err(RemoteForwardError::PortBusy { port: forward.port })
                }
            }
            Ok(Err(err)) => {
                routes.remove(forward);
                debug!(error = %err, "tcpip-forward failed");
                Err(RemoteForwardError::Closed)
            }
            Err(_) => {
                routes.remove(forward);
                Err(RemoteForwardError::Timeout {
                    server: self.label.clone(),
                    port: forward.port,
                    after: self.channel_open_timeout,
                })
            }
        }
    }

    /// Whether a port-0 request on `address` is refused too (pitfall 10: russh drops sshd's
    /// debug message that would say why). Refused: forwarding is off by policy. Granted: the
    /// port asked for is busy or not permitted; the probe is cancelled at once.
    async fn refuses_all_remote_forwards(&self, address: &str) -> bool {
        let handle = &self.target.handle;
        let probe = tokio::time::timeout(
            self.channel_open_timeout,
            handle.tcpip_forward(address.to_string(), 0),
        )
        .await;
        match probe {
            Ok(Ok(port)) => {
                let _ = handle.cancel_tcpip_forward(address.to_string(), port).await;
                false
            }
            Ok(Err(russh::Error::RequestDenied)) => true,
            _ => false,
        }
    }

    /// Says goodbye to the server (best effort, bounded: used on shutdown).
    pub async fn disconnect(&self, why: &str) {
        let bye = self
            .target
            .handle
            .disconnect(Disconnect::ByApplication, why, "en");
        let _ = tokio::time::timeout(Duration::from_millis(500), bye).await;
    }
}
