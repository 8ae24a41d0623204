//! One tunnel's supervised life: bind its listeners once, then connect, serve, classify the
//! failure, back off, and connect again, until cancelled.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, info, info_span};
use tunneld_config::{DynamicForward, LocalForward, Tunnel};
use tunneld_ssh::forward::{
    ForwardContext, PipeLimits, listen, serve_dynamic, serve_local, serve_remote,
};
use tunneld_ssh::socks::users::Credentials;
use tunneld_ssh::{Connection, Progress, TunnelError};

use crate::connector::Connector;
use crate::health::{HEARTBEAT, Liveness};

use crate::backoff::{Backoff, jitter_unit};
use crate::failure_log::FailureLog;
use crate::remote;
use crate::state::{RemoteState, RemoteStatus, TunnelState};

/// What a tunnel's task is given by the supervisor.
pub(crate) struct Wiring {
    pub(crate) state: watch::Sender<TunnelState>,
    pub(crate) cancel: CancellationToken,
    pub(crate) connector: Arc<dyn Connector>,
    pub(crate) liveness: Arc<Liveness>,
    /// Cuts a backoff short (a reload retries failing tunnels at once).
    pub(crate) retry_now: Arc<Notify>,
}

/// Runs `tunnel` until cancelled, publishing its state.
pub(crate) async fn run(tunnel: Arc<Tunnel>, wiring: Wiring) {
    let span = info_span!("tunnel", tunnel = %tunnel.name);
    Supervised {
        backoff: Backoff::new(
            tunnel.backoff.min,
            tunnel.backoff.max,
            tunnel.backoff.max_network,
        ),
        tunnel,
        wiring,
        failures: 0,
        log: FailureLog::default(),
    }
    .run()
    .instrument(span)
    .await;
}

struct Supervised {
    tunnel: Arc<Tunnel>,
    wiring: Wiring,
    backoff: Backoff,
    failures: u32,
    log: FailureLog,
}

impl Supervised {
    async fn run(mut self) {
        let forwards = TaskTracker::new();
        let (connection_tx, connection_rx) = watch::channel(None);
        let ctx = ForwardContext {
            connection: connection_rx,
            wait_for_connection: self.tunnel.target.connect_timeout,
            limits: pipe_limits(&self.tunnel),
            tracker: forwards.clone(),
            cancel: self.wiring.cancel.clone(),
        };

        if self.bind_and_serve(&forwards, &ctx).await {
            self.connect_loop(&connection_tx, &forwards, &ctx).await;
        }

        // Shutdown: the listeners and forwarded connections share our token; wait for them.
        connection_tx.send_replace(None);
        forwards.close();
        forwards.wait().await;
        self.publish(TunnelState::Stopped);
        info!("stopped");
    }

    /// Binds every listener (retrying with backoff until they all bind) and starts serving
    /// them. Listeners are bound once and outlive every connection. False when cancelled.
    async fn bind_and_serve(&mut self, forwards: &TaskTracker, ctx: &ForwardContext) -> bool {
        let (locals, socks) = loop {
            match bind_all(&self.tunnel).await {
                Ok(listeners) => break listeners,
                Err(err) => {
                    if !self.fail(&err).await {
                        return false;
                    }
                }
            }
        };
        for (forward, listener) in locals {
            forwards.spawn(serve_local(listener, forward, ctx.clone()).in_current_span());
        }
        for (forward, listener) in socks {
            forwards.spawn(serve_dynamic(listener, forward, ctx.clone()).in_current_span());
        }
        true
    }

    async fn connect_loop(
        &mut self,
        connection_tx: &watch::Sender<Option<Arc<Connection>>>,
        forwards: &TaskTracker,
        ctx: &ForwardContext,
    ) {
        loop {
            let attempt_no = self.failures + 1;
            // Until the connector reports its first step, the attempt is at the first hop.
            let first_hop = self.tunnel.jump.first().unwrap_or(&self.tunnel.target);
            self.publish(TunnelState::Connecting {
                attempt: attempt_no,
                peer: first_hop.label.clone(),
            });
            let state = self.wiring.state.clone();
            let liveness = self.wiring.liveness.clone();
            let progress = move |step: Progress| {
                liveness.entered();
                state.send_replace(match step {
                    Progress::Connecting { peer } => TunnelState::Connecting {
                        attempt: attempt_no,
                        peer: peer.to_string(),
                    },
                    Progress::Authenticating { peer } => TunnelState::Authenticating {
                        attempt: attempt_no,
                        peer: peer.to_string(),
                    },
                });
            };
            let establish = tunneld_ssh::quietly(
                self.log.quiet(),
                self.wiring.connector.connect(&self.tunnel, &progress),
            );
            let attempt = tokio::select! {
                () = self.wiring.cancel.cancelled() => return,
                attempt = establish => attempt,
            };
            let connection = match attempt {
                Ok(connection) => Arc::new(connection),
                Err(err) => {
                    if !self.fail(&err).await {
                        return;
                    }
                    continue;
                }
            };

            let up_at = Instant::now();
            self.recovered();
            connection_tx.send_replace(Some(connection.clone()));
            self.publish(TunnelState::Up {
                connection: connection.id(),
                peer: connection.peer().to_string(),
                since: SystemTime::now(),
                negotiated: connection.negotiated().clone(),
                remote: self
                    .tunnel
                    .remote
                    .iter()
                    .map(|forward| RemoteStatus {
                        spec: forward.spec.clone(),
                        state: RemoteState::Requesting,
                    })
                    .collect(),
            });
            for forward in &self.tunnel.local {
                info!(forward = %forward.spec, "forwarding");
            }
            info!(connection = connection.id(), "tunnel up");

            // Remote forwards: serve what the server forwards, and ask for every port.
            let mut keepers = JoinSet::new();
            if let Some(incoming) = connection.take_incoming() {
                forwards.spawn(serve_remote(incoming, ctx.clone()).in_current_span());
            }
            for (index, forward) in self.tunnel.remote.iter().enumerate() {
                let keep = remote::keep(
                    connection.clone(),
                    Arc::new(forward.clone()),
                    index,
                    self.wiring.state.clone(),
                );
                keepers.spawn(keep.in_current_span());
            }

            let mut heartbeat = tokio::time::interval(HEARTBEAT);
            let ended = loop {
                tokio::select! {
                    _ = heartbeat.tick() => self.wiring.liveness.beat(),
                    () = self.wiring.cancel.cancelled() => {
                        connection.disconnect("tunneld is stopping").await;
                        return;
                    }
                    ended = connection.closed() => break ended,
                    Some(kept) = keepers.join_next() => {
                        if let Ok(Err(refused)) = kept {
                            // Never "up but forwarding nothing": a forward the server will not
                            // grant fails the whole tunnel.
                            connection.disconnect("a remote forward was refused").await;
                            break refused;
                        }
                    }
                }
            };
            keepers.abort_all();
            connection_tx.send_replace(None);
            self.backoff.connection_lasted(up_at.elapsed());
            if !self.fail(&ended).await {
                return;
            }
        }
    }

    /// Records a failure, publishes it, and waits out the backoff. False when cancelled.
    async fn fail(&mut self, err: &TunnelError) -> bool {
        self.failures += 1;
        let permanent = err.is_permanent();
        let (cost, delay) = self.backoff.next_delay(err, jitter_unit());
        self.log.failed(err, cost, delay);
        let reason = err.to_string();
        self.publish(TunnelState::BackingOff {
            reason,
            kind: err.kind(),
            permanent,
            retry_in: delay,
            retry_at: Instant::now() + delay,
            failures: self.failures,
        });
        tokio::select! {
            () = self.wiring.cancel.cancelled() => false,
            () = tokio::time::sleep(delay) => true,
            () = self.wiring.retry_now.notified() => {
                info!("retrying now");
                true
            }
        }
    }

    /// The tunnel is up again.
    fn recovered(&mut self) {
        self.failures = 0;
        self.log.recovered();
    }

    fn publish(&self, state: TunnelState) {
        self.wiring.liveness.entered();
        self.wiring.state.send_replace(state);
    }
}

type Bound<F> = Vec<(Arc<F>, TcpListener)>;

/// Binds the listeners of every local and dynamic forward (all or none), and checks that the
/// users file of each authenticated SOCKS forward can be used.
async fn bind_all(
    tunnel: &Tunnel,
) -> Result<(Bound<LocalForward>, Bound<DynamicForward>), TunnelError> {
    let mut locals = Vec::new();
    for forward in &tunnel.local {
        let forward = Arc::new(forward.clone());
        for listener in listen::bind(&forward.bind, forward.port).await? {
            log_listening(&forward.spec, &listener);
            locals.push((forward.clone(), listener));
        }
    }
    let mut socks = Vec::new();
    for forward in &tunnel.dynamic {
        if let Some(path) = forward.auth_file.clone() {
            tokio::task::spawn_blocking(move || Credentials::load(&path).map(drop))
                .await
                .map_err(|source| TunnelError::TaskFailed {
                    what: "checking the SOCKS users file",
                    source,
                })??;
        }
        let forward = Arc::new(forward.clone());
        for listener in listen::bind(&forward.bind, forward.port).await? {
            log_listening(&forward.spec, &listener);
            socks.push((forward.clone(), listener));
        }
    }
    Ok((locals, socks))
}

fn log_listening(spec: &str, listener: &TcpListener) {
    if let Ok(addr) = listener.local_addr() {
        info!(forward = %spec, listen = %addr, "listening");
    }
}

/// A client that stops reading may stall the whole session while its buffer is full (see
/// `tunneld_ssh::forward::pipe`), so it gets well under the keepalive budget to catch up.
fn pipe_limits(tunnel: &Tunnel) -> PipeLimits {
    let defaults = PipeLimits::default();
    let stall_limit = match tunnel.keepalive.dead_peer_budget() {
        Some(budget) => (budget / 4).clamp(Duration::from_secs(1), defaults.stall_limit),
        None => defaults.stall_limit,
    };
    PipeLimits {
        stall_limit,
        ..defaults
    }
}

#[cfg(test)]
mod tests;
