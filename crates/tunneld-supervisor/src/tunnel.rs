//! One tunnel's supervised life: bind its listeners once, then connect, serve, classify the
//! failure, back off, and connect again, until cancelled.
//!
//! A forward that fails (a listener that cannot be bound, a remote forward the server refuses)
//! does not take the others down: it is retried on its own and the tunnel shows as degraded.
//! Only with `exit_on_forward_failure` does it fail the whole tunnel, as OpenSSH's
//! ExitOnForwardFailure does.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::{AbortOnDropHandle, TaskTracker};
use tracing::{Instrument, info, info_span};
use tunneld_config::Tunnel;
use tunneld_ssh::forward::{ForwardContext, PipeLimits, serve_remote};
use tunneld_ssh::{Connection, Progress, TunnelError};

use crate::backoff::{Backoff, jitter_unit};
use crate::board::Board;
use crate::connector::Connector;
use crate::counters::TunnelCounters;
use crate::failure_log::FailureLog;
use crate::health::{HEARTBEAT, Liveness};
use crate::listeners;
use crate::record::Record;
use crate::remote::{self, OnRefusal};
use crate::state::{ListenerState, TunnelState};

/// What a tunnel's task is given by the supervisor.
pub(crate) struct Wiring {
    pub(crate) state: watch::Sender<TunnelState>,
    pub(crate) cancel: CancellationToken,
    pub(crate) connector: Arc<dyn Connector>,
    pub(crate) liveness: Arc<Liveness>,
    /// Cuts a backoff short (a reload retries failing tunnels at once).
    pub(crate) retry_now: Arc<Notify>,
    /// Bumped by the operator's `reconnect`: drop the connection (or cut the backoff short) and
    /// connect again now.
    pub(crate) reconnect: watch::Receiver<u64>,
    /// The history that snapshots show; the board keeps it.
    pub(crate) record: Arc<Record>,
    /// The wait before the first attempt, so that tunnels started together do not all dial at
    /// once (`startup.rs`). Listeners are bound before it.
    pub(crate) first_attempt_after: Duration,
    /// What the forwards carry and the round trip to the server, kept across connections.
    pub(crate) counters: Arc<TunnelCounters>,
}

/// Runs `tunnel` until cancelled, publishing its state.
pub(crate) async fn run(tunnel: Arc<Tunnel>, wiring: Wiring) {
    let span = info_span!("tunnel", tunnel = %tunnel.name);
    let board = Arc::new(Board::new(
        wiring.state.clone(),
        wiring.liveness.clone(),
        wiring.record.clone(),
        &tunnel,
    ));
    Supervised {
        backoff: Backoff::new(
            tunnel.backoff.min,
            tunnel.backoff.max,
            tunnel.backoff.max_network,
        ),
        tunnel,
        wiring,
        board,
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
    /// Publishes the state; shared with what keeps each forward.
    board: Arc<Board>,
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
            limits: PipeLimits::default(),
            tracker: forwards.clone(),
            cancel: self.wiring.cancel.clone(),
        };

        if self.bind_and_serve(&forwards, &ctx).await && self.wait_for_turn().await {
            self.connect_loop(&connection_tx, &forwards, &ctx).await;
        }

        // Shutdown: the listeners and forwarded connections share our token; wait for them.
        connection_tx.send_replace(None);
        forwards.close();
        forwards.wait().await;
        self.publish(TunnelState::Stopped);
        info!("stopped");
    }

    /// Binds the listeners and starts serving them; they are bound once and outlive every
    /// connection. With `exit_on_forward_failure`, all of them must bind before the tunnel
    /// connects (retried with backoff); otherwise what binds serves and the rest is retried in
    /// the background. False when cancelled.
    async fn bind_and_serve(&mut self, forwards: &TaskTracker, ctx: &ForwardContext) -> bool {
        let listening = listeners::of(&self.tunnel, &self.wiring.counters);
        if !self.tunnel.exit_on_forward_failure {
            let max = self.tunnel.backoff.max;
            let os = Arc::new(listeners::Os);
            listeners::bind_each(listening, &self.board, forwards, ctx, max, os).await;
            return true;
        }
        loop {
            match listeners::bind_all(&listening, forwards, ctx).await {
                Ok(()) => return true,
                Err(err) => {
                    if !self.fail(&err).await {
                        return false;
                    }
                }
            }
        }
    }

    /// Waits out the start-up spread (`startup.rs`). False when cancelled.
    async fn wait_for_turn(&self) -> bool {
        let wait = self.wiring.first_attempt_after;
        if wait.is_zero() {
            return true;
        }
        tokio::select! {
            () = self.wiring.cancel.cancelled() => false,
            () = tokio::time::sleep(wait) => true,
        }
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
            let board = self.board.clone();
            let progress = move |step: Progress| {
                board.publish(match step {
                    Progress::Connecting { peer } => TunnelState::Connecting {
                        attempt: attempt_no,
                        peer: peer.to_string(),
                    },
                    Progress::Authenticating { peer } => TunnelState::Authenticating {
                        attempt: attempt_no,
                        peer: peer.to_string(),
                    },
                    // Only a read-only connection reports it; the daemon's learn.
                    Progress::WouldLearn { .. } => return,
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
            let listening = self.board.listeners();
            for (forward, status) in self.tunnel.local.iter().zip(&listening) {
                if status.state == ListenerState::Listening {
                    info!(forward = %forward.spec, "forwarding");
                }
            }
            // A reconnect asked for while connecting is served by this very connection.
            self.wiring.reconnect.borrow_and_update();
            let peer = connection.peer().to_string();
            let negotiated = connection.negotiated().clone();
            self.board.connected(connection.id(), peer, negotiated);

            // Remote forwards: serve what the server forwards, and ask for every port.
            let mut keepers = JoinSet::new();
            if let Some(incoming) = connection.take_incoming() {
                let counters = self.wiring.counters.remotes();
                forwards.spawn(serve_remote(incoming, counters, ctx.clone()).in_current_span());
            }
            let counters = self.wiring.counters.clone();
            let _measuring = AbortOnDropHandle::new(tokio::spawn(
                measure_rtt(connection.clone(), counters).in_current_span(),
            ));
            let on_refusal = if self.tunnel.exit_on_forward_failure {
                OnRefusal::Fail
            } else {
                OnRefusal::RetryAfter(self.tunnel.backoff.max)
            };
            for (index, forward) in self.tunnel.remote.iter().enumerate() {
                let keep = remote::keep(
                    connection.clone(),
                    Arc::new(forward.clone()),
                    index,
                    self.board.clone(),
                    on_refusal,
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
                    ended = connection.closed() => break Some(ended),
                    Ok(()) = self.wiring.reconnect.changed() => {
                        info!(connection = connection.id(), "reconnecting now, as asked");
                        connection.disconnect("reconnecting, as the operator asked").await;
                        break None;
                    }
                    Some(kept) = keepers.join_next() => {
                        if let Ok(Err(refused)) = kept {
                            // Only with exit_on_forward_failure: a forward the server will not
                            // grant fails the whole tunnel.
                            connection.disconnect("a remote forward was refused").await;
                            break Some(refused);
                        }
                    }
                }
            };
            keepers.abort_all();
            self.wiring.counters.set_rtt(None);
            connection_tx.send_replace(None);
            self.backoff.connection_lasted(up_at.elapsed());
            // Asked for, not a failure: no backoff, not counted as a reconnect by failure.
            if let Some(ended) = ended
                && !self.fail(&ended).await
            {
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
        self.board
            .record()
            .failed(err, std::time::SystemTime::now());
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
            Ok(()) = self.wiring.reconnect.changed() => {
                info!("retrying now, as asked");
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
        self.board.publish(state);
    }
}

/// Measures the round trip to the server at the keepalives' cadence, for as long as the
/// connection lasts (the caller aborts it then). Nothing when keepalives are off: then tunneld
/// sends nothing unasked.
async fn measure_rtt(connection: Arc<Connection>, counters: Arc<TunnelCounters>) {
    let Some(every) = connection.keepalive_interval() else {
        return;
    };
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Some(rtt) = connection.round_trip(every).await {
            counters.set_rtt(Some(rtt));
        }
    }
}

#[cfg(test)]
mod tests;
