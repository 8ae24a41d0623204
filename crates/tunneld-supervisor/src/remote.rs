//! Keeping a tunnel's remote forwards granted on its current connection.
//!
//! After a reconnect the server often still holds a remote port for the dead session, until it
//! expires it (about twice ClientAliveInterval x ClientAliveCountMax with OpenSSH, and only
//! while that session is idle). autossh tears the connection down and backs off; tunneld keeps
//! the new connection, serves every other forward, and asks again every couple of seconds until
//! the port is free.
//!
//! A forward that the server refuses by policy (`PermitListen`, `AllowTcpForwarding`), or a
//! Unix socket it refuses to listen on, is asked for again about every `backoff_max` on the
//! same connection, so that the tunnel's other
//! forwards keep serving; only with `exit_on_forward_failure` does it fail the tunnel.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};
use tunneld_config::RemoteForward;
use tunneld_ssh::{Connection, RemoteForwardError, TunnelError};

use crate::backoff::{jitter_below, jitter_unit};
use crate::board::Board;
use crate::retries::{Retries, Say};
use crate::state::RemoteState;

/// Between two requests for a port the server still holds: never more than 2 s apart.
const RETRY_BUSY: Duration = Duration::from_millis(1500);

/// What keeping a remote forward asks of a connection: a seam, so that tests can run the retry
/// loop on paused time against a server that answers as they script it.
pub(crate) trait Requests: Send + Sync {
    /// Asks the server to listen for `forward`; the port it listens on.
    fn request_remote(
        &self,
        forward: &Arc<RemoteForward>,
    ) -> impl Future<Output = Result<u32, RemoteForwardError>> + Send;

    /// Waits until the connection ends.
    fn ended(&self) -> impl Future<Output = ()> + Send;
}

impl Requests for Connection {
    fn request_remote(
        &self,
        forward: &Arc<RemoteForward>,
    ) -> impl Future<Output = Result<u32, RemoteForwardError>> + Send {
        Connection::request_remote(self, forward)
    }

    fn ended(&self) -> impl Future<Output = ()> + Send {
        Connection::ended(self)
    }
}

/// What to do when the server refuses a remote forward by policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OnRefusal {
    /// Fail the tunnel (`exit_on_forward_failure`).
    Fail,
    /// Ask again on the same connection after about this long (`backoff_max`).
    RetryAfter(Duration),
}

/// Requests `forward` (the `index`th remote forward) until the server grants it. Returns the
/// error that must fail the tunnel (a refusal by policy, with [`OnRefusal::Fail`]), or `Ok`
/// once granted or when the connection is gone (the tunnel notices that by itself).
pub(crate) async fn keep(
    connection: Arc<impl Requests>,
    forward: Arc<RemoteForward>,
    index: usize,
    board: Arc<Board>,
    on_refusal: OnRefusal,
) -> Result<(), TunnelError> {
    let mut retries = Retries::new();
    let mut refused = false;
    loop {
        retries.attempt();
        let err = match connection.request_remote(&forward).await {
            Ok(port) => {
                let (spec, attempts) = (&forward.spec, retries.attempts());
                match (attempts, refused) {
                    (1, _) => {
                        info!(forward = %spec, port, "remote forward listening on the server")
                    }
                    (_, false) => {
                        info!(forward = %spec, port, waited_secs = retries.secs(), attempts, "remote port is ours again; forwarding")
                    }
                    (_, true) => {
                        info!(forward = %spec, port, waited_secs = retries.secs(), attempts, "remote forward granted at last; forwarding")
                    }
                }
                board.set_remote(index, RemoteState::Listening { port });
                return Ok(());
            }
            Err(RemoteForwardError::Closed) => return Ok(()),
            // sshd without StreamLocalBindUnlink refuses a socket it listened on for the
            // previous connection: said as such, since nothing else changed.
            Err(RemoteForwardError::SocketRefused { path, .. }) if board.granted_before(index) => {
                RemoteForwardError::StaleSocket { path }
            }
            Err(err) => err,
        };
        // A refused socket does not come free by waiting: its file stays on the server.
        refused = matches!(
            err,
            RemoteForwardError::Policy { .. }
                | RemoteForwardError::SocketRefused { .. }
                | RemoteForwardError::StaleSocket { .. }
        );
        let reason = err.to_string();
        let (state, pause) = match (refused, on_refusal) {
            (true, OnRefusal::Fail) => return Err(TunnelError::Remote(err)),
            (true, OnRefusal::RetryAfter(after)) => (
                RemoteState::Refused {
                    reason: reason.clone(),
                },
                jitter_below(after, jitter_unit()),
            ),
            (false, _) => (
                RemoteState::Waiting {
                    reason: reason.clone(),
                },
                jitter_below(RETRY_BUSY, jitter_unit()),
            ),
        };
        match retries.failed() {
            Say::First => {
                warn!(forward = %forward.spec, error = %reason, retry_in = ?pause, "remote forward not granted; retrying on this connection")
            }
            Say::Summary => warn!(
                forward = %forward.spec,
                error = %reason,
                waiting_secs = retries.secs(),
                attempts = retries.attempts(),
                "remote forward still not granted; still retrying"
            ),
            Say::Nothing => {}
        }
        board.set_remote(index, state);
        tokio::select! {
            () = connection.ended() => return Ok(()),
            () = tokio::time::sleep(pause) => {}
        }
    }
}

#[cfg(test)]
mod tests;
