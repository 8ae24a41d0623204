//! What every forwarder of a tunnel shares: the tunnel's current connection, the bounds of a
//! forwarded connection, shutdown; and the accept loop of the listening forwarders.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use super::pipe::PipeLimits;
use crate::connection::Connection;

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
/// Running out of descriptors pauses the loop instead of spinning (see `accept_error_pause`).
pub(crate) async fn accept_loop<F, Fut>(
    listener: TcpListener,
    spec: &str,
    ctx: ForwardContext,
    mut serve: F,
) where
    F: FnMut(TcpStream, SocketAddr, ForwardContext) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listen = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| spec.to_string());
    let mut exhaustion = ExhaustionLog::default();
    loop {
        let accepted = tokio::select! {
            () = ctx.cancel.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, client)) => {
                ctx.tracker.spawn(serve(stream, client, ctx.clone()));
            }
            Err(err) => {
                if !accept_error_pause(&err, &listen, &mut exhaustion, &ctx.cancel).await {
                    return;
                }
            }
        }
    }
}

/// Rate-limits the "out of file descriptors" warning: one line, then one summary a minute.
#[derive(Default)]
struct ExhaustionLog {
    last: Option<Instant>,
    suppressed: u64,
}

/// Handles an accept error. Running out of file descriptors is logged and retried after a pause
/// (never a busy loop); other errors (a client that reset before accept) are passed over.
/// Returns false when cancelled meanwhile.
async fn accept_error_pause(
    err: &io::Error,
    listen: &str,
    log: &mut ExhaustionLog,
    cancel: &CancellationToken,
) -> bool {
    let exhausted = matches!(
        nix::errno::Errno::from_raw(err.raw_os_error().unwrap_or(0)),
        nix::errno::Errno::EMFILE
            | nix::errno::Errno::ENFILE
            | nix::errno::Errno::ENOBUFS
            | nix::errno::Errno::ENOMEM
    );
    let pause = if exhausted {
        let now = Instant::now();
        if log.last.is_none_or(|t| now - t >= Duration::from_secs(60)) {
            warn!(listen, error = %err, suppressed = log.suppressed, "cannot accept: out of resources; pausing this listener");
            log.last = Some(now);
            log.suppressed = 0;
        } else {
            log.suppressed += 1;
        }
        Duration::from_millis(500)
    } else {
        debug!(listen, error = %err, "accept failed");
        Duration::from_millis(10)
    };
    tokio::select! {
        () = cancel.cancelled() => false,
        () = tokio::time::sleep(pause) => true,
    }
}
