//! The Prometheus endpoint, opt-in through `[daemon] metrics_listen`: bound (and bound again
//! after a reload that moves it) by a task of its own, retried while it cannot be bound, and
//! never in the way of a tunnel. Where it stands is published as a [`MetricsState`].
//!
//! `families.rs` builds the metrics from the supervisor's snapshot; `http.rs` serves them.

mod families;
mod http;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus::Registry;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::{CancellationToken, DropGuard};
use tracing::{debug, info, warn};
use tunneld_supervisor::Viewer;

use crate::metrics_state::MetricsState;

/// The first wait before binding again; it doubles up to [`RETRY_MAX`].
const RETRY_MIN: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(16);

/// The running endpoint: tell it where to listen ([`Endpoint::listen_on`]); it stops with the
/// daemon's shutdown token.
pub(crate) struct Endpoint {
    wanted: watch::Sender<Option<SocketAddr>>,
}

impl Endpoint {
    /// Starts serving the metrics of `viewer`'s tunnels on `listen` (nothing when `None`).
    /// Returns the endpoint and where it stands.
    pub(crate) fn start(
        listen: Option<SocketAddr>,
        viewer: Viewer,
        shutdown: CancellationToken,
    ) -> (Endpoint, watch::Receiver<MetricsState>) {
        let (wanted, wanted_rx) = watch::channel(listen);
        let (state, state_rx) = watch::channel(MetricsState::Off);
        let registry = Arc::new(Registry::new());
        if let Err(err) = registry.register(Box::new(families::SnapshotCollector::new(viewer))) {
            // Only a programming error in the metric names gets here.
            warn!(error = %err, "metrics: cannot set up the metrics");
        }
        tokio::spawn(keep(wanted_rx, registry, state, shutdown));
        (Endpoint { wanted }, state_rx)
    }

    /// Listens on `listen` from now on (after a reload). Nothing changes if it is the same.
    pub(crate) fn listen_on(&self, listen: Option<SocketAddr>) {
        self.wanted.send_if_modified(|wanted| {
            let changed = *wanted != listen;
            *wanted = listen;
            changed
        });
    }
}

/// A bound endpoint; dropping it stops the server.
struct Serving {
    asked: SocketAddr,
    bound: SocketAddr,
    _stop: DropGuard,
}

/// Keeps the endpoint where it is wanted until shutdown.
async fn keep(
    mut wanted: watch::Receiver<Option<SocketAddr>>,
    registry: Arc<Registry>,
    state: watch::Sender<MetricsState>,
    shutdown: CancellationToken,
) {
    let mut serving: Option<Serving> = None;
    loop {
        let asked = *wanted.borrow_and_update();
        match asked {
            None => {
                if let Some(old) = serving.take() {
                    info!(listen = %old.bound, "metrics: no longer served");
                }
                state.send_replace(MetricsState::Off);
            }
            Some(addr) if serving.as_ref().is_some_and(|s| s.asked == addr) => {}
            Some(addr) => {
                // The same port on another address: the old listener would hold it.
                if serving
                    .as_ref()
                    .is_some_and(|s| addr.port() != 0 && s.bound.port() == addr.port())
                {
                    serving = None;
                }
                let bound = tokio::select! {
                    () = shutdown.cancelled() => return,
                    bound = bind(addr, &state, serving.as_ref().map(|s| s.bound)) => bound,
                    Ok(()) = wanted.changed() => continue,
                };
                let stop = shutdown.child_token();
                let listener = bound;
                let Ok(at) = listener.local_addr() else {
                    continue;
                };
                if let Some(old) = serving.take() {
                    info!(listen = %at, previous = %old.bound, "metrics: moved");
                }
                info!(listen = %at, "metrics: serving GET /metrics");
                tokio::spawn(http::serve(listener, registry.clone(), stop.clone()));
                serving = Some(Serving {
                    asked: addr,
                    bound: at,
                    _stop: stop.drop_guard(),
                });
                state.send_replace(MetricsState::Listening(at));
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            changed = wanted.changed() => {
                if changed.is_err() {
                    // The daemon dropped its end: serve as is until shutdown.
                    shutdown.cancelled().await;
                    return;
                }
            }
        }
    }
}

/// Binds `addr`, retrying with a growing pause for as long as it fails, and publishing each
/// failure. `previous` is the address still served meanwhile, if any.
async fn bind(
    addr: SocketAddr,
    state: &watch::Sender<MetricsState>,
    previous: Option<SocketAddr>,
) -> TcpListener {
    let mut pause = RETRY_MIN;
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        match TcpListener::bind(addr).await {
            Ok(listener) => {
                if attempts > 1 {
                    info!(address = %addr, attempts, "metrics: bound at last");
                }
                return listener;
            }
            Err(err) => {
                let error = err.to_string();
                if attempts == 1 {
                    match previous {
                        Some(old) => {
                            warn!(address = %addr, error, still_serving = %old, retry_in = ?pause, "metrics: cannot listen on the new address; the old one is still served; retrying (tunnels are not affected)")
                        }
                        None => {
                            warn!(address = %addr, error, retry_in = ?pause, "metrics: cannot listen; retrying (tunnels are not affected)")
                        }
                    }
                } else {
                    debug!(address = %addr, error, attempts, "metrics: still cannot listen");
                }
                state.send_replace(MetricsState::Failed {
                    address: addr,
                    error,
                });
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(RETRY_MAX);
            }
        }
    }
}
