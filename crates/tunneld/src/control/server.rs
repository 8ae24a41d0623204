//! The control socket's server inside `tunneld run`: one request per connection, answered and
//! closed. Whatever a local client sends is bounded in size (`MAX_REQUEST`), in time
//! (`REQUEST_TIMEOUT` to send it, the same to read the answer) and in number (`MAX_CLIENTS` at
//! once; more are dropped), so no client can crash or wedge the daemon.
//!
//! Who may connect is decided by the file's mode (0660) and group, which the kernel checks on
//! connect. Not by SO_PEERCRED: under `PrivateUsers=yes` every peer reads as nobody.

use std::io::ErrorKind as IoErrorKind;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use tunneld_control::{
    ErrorKind, ErrorReply, MAX_REQUEST, Request, encode_error, encode_reply, parse_request,
};
use tunneld_supervisor::Viewer;

use super::Placement;
use super::status;
use crate::metrics_state::MetricsState;

/// Clients served at once; one more is dropped at once rather than queued.
const MAX_CLIENTS: usize = 16;
/// How long a client has to send its request, and then to take the answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// What only the main loop can do (it owns the supervisor): each comes with where to send the
/// answer, one line of JSON.
pub(crate) enum Ask {
    /// `reconnect`: these tunnels, or every one when empty.
    Reconnect {
        tunnels: Vec<String>,
        reply: oneshot::Sender<String>,
    },
    /// `reload`, as SIGHUP does it.
    Reload { reply: oneshot::Sender<String> },
}

/// The bound socket.
pub(crate) struct Bound {
    listener: UnixListener,
    path: PathBuf,
    /// The file's device and inode, so that only our own socket is removed at exit.
    identity: (u64, u64),
}

/// Binds the control socket at `placement`, replacing a stale one left by a crash, and refusing
/// when another daemon answers on it.
pub(crate) fn bind(placement: &Placement) -> anyhow::Result<Bound> {
    let path = &placement.socket;
    if let Some((dir, mode)) = &placement.create_dir
        && !dir.exists()
    {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(*mode)
            .create(dir)
            .with_context(|| format!("cannot create {} for the control socket", dir.display()))?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_socket() => bail!(
            "{} exists and is not a socket; remove it or set [daemon] control_socket",
            path.display()
        ),
        Ok(_) => match std::os::unix::net::UnixStream::connect(path) {
            Ok(_) => bail!(
                "another tunneld already serves the control socket {}: stop it first (or give \
                 this configuration another [daemon] control_socket)",
                path.display()
            ),
            Err(err) if err.kind() == IoErrorKind::ConnectionRefused => {
                info!(socket = %path.display(), "replacing a stale control socket");
                std::fs::remove_file(path)
                    .with_context(|| format!("cannot remove the stale {}", path.display()))?;
            }
            Err(err) => {
                return Err(err)
                    .with_context(|| format!("cannot tell whether {} is in use", path.display()));
            }
        },
        Err(err) if err.kind() == IoErrorKind::NotFound => {}
        Err(err) => return Err(err).with_context(|| format!("cannot examine {}", path.display())),
    }
    let std_listener = std::os::unix::net::UnixListener::bind(path)
        .with_context(|| format!("cannot bind the control socket {}", path.display()))?;
    // Root and the service's group; the kernel checks this mode on every connect.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .with_context(|| format!("cannot set the mode of {}", path.display()))?;
    let meta =
        std::fs::metadata(path).with_context(|| format!("cannot examine {}", path.display()))?;
    std_listener
        .set_nonblocking(true)
        .context("control socket")?;
    let listener = UnixListener::from_std(std_listener).context("control socket")?;
    info!(socket = %path.display(), "control socket ready");
    Ok(Bound {
        listener,
        path: path.clone(),
        identity: (meta.dev(), meta.ino()),
    })
}

impl Bound {
    /// The socket's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Serves clients until `shutdown`, then removes the socket (if it is still ours).
    pub(crate) async fn serve(
        self,
        viewer: Viewer,
        metrics: watch::Receiver<MetricsState>,
        asks: mpsc::Sender<Ask>,
        shutdown: CancellationToken,
    ) {
        let slots = Arc::new(Semaphore::new(MAX_CLIENTS));
        let context = Arc::new(Shared {
            viewer,
            metrics,
            asks,
        });
        loop {
            let accepted = tokio::select! {
                () = shutdown.cancelled() => break,
                accepted = self.listener.accept() => accepted,
            };
            match accepted {
                Ok((stream, _)) => match slots.clone().try_acquire_owned() {
                    Ok(slot) => {
                        let context = context.clone();
                        tokio::spawn(async move {
                            serve_one(stream, &context).await;
                            drop(slot);
                        });
                    }
                    Err(_) => debug!("control socket: too many clients at once; dropping one"),
                },
                Err(err) => {
                    // Out of descriptors, most likely: let some close rather than spin.
                    warn!(error = %err, "control socket: cannot accept");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        if let Ok(meta) = std::fs::symlink_metadata(&self.path)
            && (meta.dev(), meta.ino()) == self.identity
        {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// What answering a request needs.
struct Shared {
    viewer: Viewer,
    metrics: watch::Receiver<MetricsState>,
    asks: mpsc::Sender<Ask>,
}

/// Reads one request, answers it, closes.
async fn serve_one(stream: UnixStream, context: &Shared) {
    let (read, mut write) = stream.into_split();
    let reply = match tokio::time::timeout(REQUEST_TIMEOUT, read_request(read)).await {
        Err(_) => error(
            ErrorKind::BadRequest,
            format!("no complete request within {} s", REQUEST_TIMEOUT.as_secs()),
        ),
        Ok(None) => return,
        Ok(Some(line)) => answer(&line, context).await,
    };
    let _ = tokio::time::timeout(REQUEST_TIMEOUT, write.write_all(reply.as_bytes())).await;
}

/// The request line without its newline: at most `MAX_REQUEST` bytes are buffered (one more
/// tells a line that is too long). `None` when the client sent nothing or the read failed.
async fn read_request(read: impl tokio::io::AsyncRead + Unpin) -> Option<Vec<u8>> {
    let bound = u64::try_from(MAX_REQUEST).unwrap_or(u64::MAX) + 1;
    let mut reader = BufReader::new(read.take(bound));
    let mut line = Vec::new();
    match reader.read_until(b'\n', &mut line).await {
        Ok(0) | Err(_) => None,
        Ok(_) => {
            if line.last() == Some(&b'\n') {
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
            }
            Some(line)
        }
    }
}

async fn answer(line: &[u8], context: &Shared) -> String {
    let request = match parse_request(line) {
        Ok(request) => request,
        Err(err) => return error(ErrorKind::BadRequest, err.to_string()),
    };
    match request {
        Request::Status { tunnels } => {
            let mut snapshot = context.viewer.snapshot();
            let unknown: Vec<&String> = tunnels
                .iter()
                .filter(|name| !snapshot.tunnels.iter().any(|t| &t.name == *name))
                .collect();
            if !unknown.is_empty() {
                let names: Vec<&str> = unknown.iter().map(|s| s.as_str()).collect();
                return error(
                    ErrorKind::UnknownTunnel,
                    format!("no tunnel named {}", names.join(", ")),
                );
            }
            if !tunnels.is_empty() {
                snapshot.tunnels.retain(|t| tunnels.contains(&t.name));
            }
            let metrics = context.metrics.borrow().clone();
            encode_reply(&status::reply(snapshot, &metrics))
        }
        Request::Reconnect { tunnels } => {
            let (reply, answer) = oneshot::channel();
            ask(context, Ask::Reconnect { tunnels, reply }, answer).await
        }
        Request::Reload => {
            let (reply, answer) = oneshot::channel();
            ask(context, Ask::Reload { reply }, answer).await
        }
    }
}

/// Hands `what` to the main loop and waits for its answer.
async fn ask(context: &Shared, what: Ask, answer: oneshot::Receiver<String>) -> String {
    if context.asks.send(what).await.is_err() {
        return error(ErrorKind::Busy, "the daemon is stopping".to_owned());
    }
    answer
        .await
        .unwrap_or_else(|_| error(ErrorKind::Busy, "the daemon is stopping".to_owned()))
}

/// An error reply line.
pub(crate) fn error(kind: ErrorKind, message: String) -> String {
    encode_error(&ErrorReply { kind, message })
}
