//! What every forwarder of a tunnel shares: the tunnel's current connection, the bounds of a
//! forwarded connection, shutdown; and the accept loop of the listening forwarders.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, UnixListener};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::debug;

use super::client::ClientStream;
use super::pipe::PipeLimits;
use crate::connection::Connection;
use crate::descriptors;
use crate::in_order;

/// The current SSH connection of a tunnel, `None` while it is down. Listeners watch it so that
/// they can outlive any one connection.
pub type ConnectionWatch = watch::Receiver<Option<Arc<Connection>>>;

/// What every forwarded connection of a tunnel shares.
#[derive(Clone)]
pub struct ForwardContext {
    /// The current connection.
    pub connection: ConnectionWatch,
    /// How long a client that arrives while the tunnel is down waits for it before being closed.
    pub wait_for_connection: Duration,
    /// Per-connection bounds.
    pub limits: PipeLimits,
    /// Tracks every forwarded connection, so that shutdown can wait for them.
    pub tracker: TaskTracker,
    /// Cancelled on shutdown (or when the forward is removed).
    pub cancel: CancellationToken,
}

impl ForwardContext {
    /// The connection to use for a new client: the current one, or the next one if the tunnel
    /// is reconnecting, waiting at most `wait_for_connection` (and not past cancellation).
    pub async fn connection(&self) -> Option<Arc<Connection>> {
        let mut rx = self.connection.clone();
        let wait = rx.wait_for(|c| c.as_ref().is_some_and(|c| !c.is_closed()));
        // Shutdown must not wait out clients that wait for a tunnel that is down.
        tokio::select! {
            () = self.cancel.cancelled() => None,
            waited = tokio::time::timeout(self.wait_for_connection, wait) => match waited {
                Ok(Ok(current)) => current.clone(),
                _ => None,
            },
        }
    }
}

/// How long since `since`, in seconds to a tenth, for the log of a client that waited.
pub(crate) fn waited(since: Instant) -> String {
    format!("{:.1}", since.elapsed().as_secs_f64())
}

/// Accepts on `listener` until cancelled and runs `serve` for each client as a tracked task.
///
/// Each client takes a descriptor from the process's budget (crate::descriptors) before it is
/// accepted. At the limit the listener pauses: clients wait in the kernel's backlog (and are
/// served in order once connections close) instead of being accepted and dropped, which would
/// itself cost a descriptor per client and look like a failed target. The pause ends when any
/// counted descriptor is given back, or after [`PAUSE`] at most: never a busy loop.
pub(crate) async fn accept_loop<L, F, Fut>(
    listener: L,
    spec: &str,
    ctx: ForwardContext,
    mut serve: F,
) where
    L: Accept,
    F: FnMut(L::Stream, SocketAddr, ForwardContext) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let _listener_slot = descriptors::hold();
    let listen = listener.describe().unwrap_or_else(|| spec.to_string());
    let mut paused_since: Option<Instant> = None;
    loop {
        let slot = match descriptors::try_take() {
            Ok(slot) => slot,
            Err(exhausted) => {
                if paused_since.is_none() {
                    paused_since = Some(Instant::now());
                    descriptors::report_exhausted(&listen, exhausted, None);
                }
                if !pause(&ctx.cancel).await {
                    return;
                }
                continue;
            }
        };
        let accepted = tokio::select! {
            () = ctx.cancel.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, client)) => {
                if let Some(since) = paused_since.take() {
                    descriptors::report_resumed(&listen, since.elapsed());
                }
                // Its first step (the CHANNEL_OPEN) is taken here, before the next client is
                // accepted, so that channels open in the order clients came (`in_order`).
                let forwarded = Box::pin(serve(stream, client, ctx.clone()));
                if let Some(rest) = in_order::first_step(forwarded).await {
                    ctx.tracker.spawn(async move {
                        let _slot = slot;
                        rest.await;
                    });
                }
            }
            Err(err) if out_of_descriptors(&err) => {
                // Uncounted descriptors (or another process's, for ENFILE) used up the rest.
                drop(slot);
                if paused_since.is_none() {
                    paused_since = Some(Instant::now());
                    let exhausted = descriptors::Exhausted {
                        held: descriptors::held(),
                        limit: descriptors::limit(),
                        reserve: descriptors::reserve(descriptors::limit()),
                    };
                    descriptors::report_exhausted(&listen, exhausted, Some(&err));
                }
                if !pause(&ctx.cancel).await {
                    return;
                }
            }
            Err(err) => {
                // A client that reset before accept: nothing to wait for.
                debug!(listen, error = %err, "accept failed");
            }
        }
    }
}

/// A listening socket that forwarded connections are accepted on.
pub trait Accept: Send + 'static {
    /// A connection it accepts.
    type Stream: ClientStream;

    /// The next client, with its address (for a Unix socket, which has none,
    /// [`UNIX_ORIGINATOR`]).
    fn accept(&self) -> impl Future<Output = io::Result<(Self::Stream, SocketAddr)>> + Send;

    /// Where it listens, for messages.
    fn describe(&self) -> Option<String>;
}

/// The originator sent for a client of a Unix socket, which has no address: what OpenSSH sends
/// in its place ("to appease peers that validate it"), 127.0.0.1 port 65535.
pub const UNIX_ORIGINATOR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 65535);

impl Accept for TcpListener {
    type Stream = tokio::net::TcpStream;

    async fn accept(&self) -> io::Result<(Self::Stream, SocketAddr)> {
        TcpListener::accept(self).await
    }

    fn describe(&self) -> Option<String> {
        self.local_addr().ok().map(|a| a.to_string())
    }
}

impl Accept for UnixListener {
    type Stream = tokio::net::UnixStream;

    async fn accept(&self) -> io::Result<(Self::Stream, SocketAddr)> {
        let (stream, _) = UnixListener::accept(self).await?;
        Ok((stream, UNIX_ORIGINATOR))
    }

    fn describe(&self) -> Option<String> {
        let addr = self.local_addr().ok()?;
        addr.as_pathname().map(|p| p.display().to_string())
    }
}

/// The longest a listener at the limit waits before looking again.
const PAUSE: Duration = Duration::from_millis(500);

/// Whether an accept error means the process (or the system) is out of descriptors or memory.
fn out_of_descriptors(err: &io::Error) -> bool {
    matches!(
        nix::errno::Errno::from_raw(err.raw_os_error().unwrap_or(0)),
        nix::errno::Errno::EMFILE
            | nix::errno::Errno::ENFILE
            | nix::errno::Errno::ENOBUFS
            | nix::errno::Errno::ENOMEM
    )
}

/// Waits for a descriptor to be given back (at most [`PAUSE`]). Returns false when cancelled.
async fn pause(cancel: &CancellationToken) -> bool {
    tokio::select! {
        () = cancel.cancelled() => false,
        () = descriptors::freed(PAUSE) => true,
    }
}
