//! What a tunnel asks of its live connection: channels for local and dynamic forwards, and the
//! server's listeners for remote forwards.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use russh::Channel;
use russh::client::Msg;
use tokio::sync::mpsc;
use tracing::debug;
use tunneld_config::{RemoteForward, RemoteListen, Target};

use super::Connection;
use crate::error::{ChannelOpenError, RemoteForwardError};
use crate::in_order;
use crate::routes::{IncomingForward, Routes, request_address};

impl Connection {
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
        let target = Target::Port {
            host: host.to_owned(),
            port,
        };
        self.open_channel(target, originator).await
    }

    /// Opens a channel to `target` as seen from the server: direct-tcpip for a host and port,
    /// direct-streamlocal@openssh.com for a Unix socket (which carries no originator). Bounded
    /// like [`Connection::open_direct_tcpip`].
    pub async fn open_channel(
        self: &Arc<Self>,
        target: Target,
        originator: SocketAddr,
    ) -> Result<Channel<Msg>, ChannelOpenError> {
        let shown = target.to_string();
        let (reply_tx, reply_rx) = tokio::sync::oneshot::channel();
        let connection = Arc::clone(self);
        let opening = Box::pin(async move {
            let handle = &connection.target.handle;
            let opened = match target {
                Target::Port { host, port } => {
                    handle
                        .channel_open_direct_tcpip(
                            host,
                            u32::from(port),
                            originator.ip().to_string(),
                            u32::from(originator.port()),
                        )
                        .await
                }
                Target::Socket(path) => {
                    handle
                        .channel_open_direct_streamlocal(path.to_string_lossy())
                        .await
                }
            };
            if let Err(Ok(late)) = reply_tx.send(opened) {
                debug!("the server confirmed a channel after its open timed out; closing it");
                let _ = late.eof().await;
                let _ = late.close().await;
            }
        });
        // The CHANNEL_OPEN is queued here, in the caller's order, rather than whenever the task
        // first runs (`in_order`); the task only waits for the answer.
        if let Some(rest) = in_order::first_step(opening).await {
            tokio::spawn(rest);
        }
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
                    target: shown,
                    server: self.label().to_string(),
                    reason,
                    description,
                })
            }
            Ok(Ok(Err(err))) => {
                debug!(error = %err, "channel open failed");
                Err(ChannelOpenError::Closed {
                    target: shown,
                    server: self.label().to_string(),
                })
            }
            Ok(Err(_)) => Err(ChannelOpenError::Closed {
                target: shown,
                server: self.label().to_string(),
            }),
            Err(_) => Err(ChannelOpenError::Timeout {
                target: shown,
                server: self.label().to_string(),
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
    /// it picked, for port 0; 0 for a Unix socket).
    pub async fn request_remote(
        &self,
        forward: &Arc<RemoteForward>,
    ) -> Result<u32, RemoteForwardError> {
        let Some(routes) = &self.target.routes else {
            return Err(RemoteForwardError::Closed);
        };
        let (bind, port) = match &forward.listen {
            RemoteListen::Port { bind, port } => (bind, *port),
            RemoteListen::Socket(path) => return self.request_socket(routes, forward, path).await,
        };
        let address = request_address(bind);
        routes.add(forward.clone());
        let handle = &self.target.handle;
        let asked = tokio::time::timeout(
            self.channel_open_timeout,
            handle.tcpip_forward(address.clone(), u32::from(port)),
        )
        .await;
        match asked {
            Ok(Ok(picked)) => {
                // russh returns 0 for a fixed port (pitfall 5).
                let port = if port == 0 { picked } else { u32::from(port) };
                routes.bound(forward, port);
                Ok(port)
            }
            Ok(Err(russh::Error::RequestDenied)) => {
                routes.remove(forward);
                if self.refuses_all_remote_forwards(&address).await {
                    Err(RemoteForwardError::Policy {
                        server: self.label().to_string(),
                        spec: forward.spec.clone(),
                    })
                } else {
                    Err(RemoteForwardError::PortBusy { port })
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
                    server: self.label().to_string(),
                    what: format!("port {port}"),
                    after: self.channel_open_timeout,
                })
            }
        }
    }

    /// Asks the server to listen on the Unix socket at `path` (streamlocal-forward@openssh.com).
    async fn request_socket(
        &self,
        routes: &Routes,
        forward: &Arc<RemoteForward>,
        path: &Path,
    ) -> Result<u32, RemoteForwardError> {
        let path = path.to_string_lossy().into_owned();
        routes.add(forward.clone());
        let asked = tokio::time::timeout(
            self.channel_open_timeout,
            self.target.handle.streamlocal_forward(path.clone()),
        )
        .await;
        let err = match asked {
            Ok(Ok(())) => return Ok(0),
            Ok(Err(russh::Error::RequestDenied)) => RemoteForwardError::SocketRefused {
                server: self.label().to_string(),
                path,
            },
            Ok(Err(err)) => {
                debug!(error = %err, "streamlocal-forward failed");
                RemoteForwardError::Closed
            }
            Err(_) => RemoteForwardError::Timeout {
                server: self.label().to_string(),
                what: format!("socket {path}"),
                after: self.channel_open_timeout,
            },
        };
        routes.remove(forward);
        Err(err)
    }

    /// Asks the server to stop listening for `forward` on `port` (what [`Self::request_remote`]
    /// returned), and forgets its route. Returns whether the server agreed.
    pub async fn cancel_remote(&self, forward: &Arc<RemoteForward>, port: u32) -> bool {
        if let Some(routes) = &self.target.routes {
            routes.remove(forward);
        }
        let handle = &self.target.handle;
        let cancelled = match &forward.listen {
            RemoteListen::Port { bind, .. } => {
                let address = request_address(bind);
                tokio::time::timeout(
                    self.channel_open_timeout,
                    handle.cancel_tcpip_forward(address, port),
                )
                .await
            }
            RemoteListen::Socket(path) => {
                tokio::time::timeout(
                    self.channel_open_timeout,
                    handle.cancel_streamlocal_forward(path.to_string_lossy()),
                )
                .await
            }
        };
        matches!(cancelled, Ok(Ok(())))
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
}
