//! Keeping a tunnel's remote forwards granted on its current connection.
//!
//! After a reconnect the server often still holds a remote port for the dead session, until it
//! expires it (about twice ClientAliveInterval x ClientAliveCountMax with OpenSSH, and only
//! while that session is idle). autossh tears the connection down and backs off; tunneld keeps
//! the new connection, serves every other forward, and asks again every couple of seconds until
//! the port is free.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{info, warn};
use tunneld_config::RemoteForward;
use tunneld_ssh::{Connection, RemoteForwardError, TunnelError};

use crate::backoff::{jitter_below, jitter_unit};
use crate::state::{RemoteState, TunnelState};

/// Between two requests for a port the server still holds: never more than 2 s apart.
const RETRY_BUSY: Duration = Duration::from_millis(1500);

/// How often a forward that is still waiting is summarised in the log.
const SUMMARY_EVERY: Duration = Duration::from_secs(60);

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

/// Requests `forward` (the `index`th remote forward) until the server grants it. Returns the
/// error that must fail the tunnel (forwarding refused by policy), or `Ok` once granted or when
/// the connection is gone (the tunnel notices that by itself).
pub(crate) async fn keep(
    connection: Arc<impl Requests>,
    forward: Arc<RemoteForward>,
    index: usize,
    state: watch::Sender<TunnelState>,
) -> Result<(), TunnelError> {
    let started = Instant::now();
    let mut attempts = 0u64;
    let mut last_summary: Option<Instant> = None;
    loop {
        attempts += 1;
        let reason = match connection.request_remote(&forward).await {
            Ok(port) => {
                if attempts > 1 {
                    info!(forward = %forward.spec, port, waited_secs = started.elapsed().as_secs(), attempts, "remote port is ours again; forwarding");
                } else {
                    info!(forward = %forward.spec, port, "remote forward listening on the server");
                }
                set(&state, index, RemoteState::Listening { port });
                return Ok(());
            }
            Err(RemoteForwardError::Closed) => return Ok(()),
            Err(err @ RemoteForwardError::Policy { .. }) => return Err(TunnelError::Remote(err)),
            Err(err) => err.to_string(),
        };
        let now = Instant::now();
        match last_summary {
            None => {
                warn!(forward = %forward.spec, error = %reason, "remote forward not granted; retrying on this connection")
            }
            Some(at) if now - at >= SUMMARY_EVERY => warn!(
                forward = %forward.spec,
                error = %reason,
                waiting_secs = started.elapsed().as_secs(),
                attempts,
                "remote forward still not granted; still retrying"
            ),
            Some(_) => {}
        }
        if last_summary.is_none_or(|at| now - at >= SUMMARY_EVERY) {
            last_summary = Some(now);
        }
        set(&state, index, RemoteState::Waiting { reason });
        let pause = jitter_below(RETRY_BUSY, jitter_unit());
        tokio::select! {
            () = connection.ended() => return Ok(()),
            () = tokio::time::sleep(pause) => {}
        }
    }
}

fn set(state: &watch::Sender<TunnelState>, index: usize, new: RemoteState) {
    state.send_if_modified(|current| match current {
        TunnelState::Up { remote, .. } => match remote.get_mut(index) {
            Some(status) if status.state != new => {
                status.state = new;
                true
            }
            _ => false,
        },
        _ => false,
    });
}

#[cfg(test)]
mod tests;
