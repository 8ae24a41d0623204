//! tunneld's lifecycle: one supervised task per tunnel (connect, forward, classify the failure,
//! back off, again), each tunnel's state on a watch channel, shutdown.
//!
//! The entry point takes its configuration and a cancellation token (`Supervisor::start`), so
//! tests drive it directly, in process.

pub mod backoff;
mod board;
mod connector;
mod counters;
mod failure_log;
#[cfg(test)]
mod fixtures;
pub mod health;
mod listeners;
mod outcome;
mod record;
mod remote;
mod retries;
mod snapshot;
mod startup;
mod state;
mod state_name;
mod threads;
mod tunnel;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};
use tunneld_config::{Change, Config, Tunnel, diff};

use crate::counters::TunnelCounters;
use crate::health::Liveness;
use crate::record::Record;
use crate::threads::Threads;

pub use connector::{Attempt, Connector, SshConnector};
pub use health::Report;
pub use outcome::{Applied, UnknownTunnels};
pub use snapshot::{
    ForwardKind, ForwardSnapshot, ForwardStateName, LastError, Snapshot, StateName, TunnelSnapshot,
    Viewer,
};
pub use state::{ListenerState, ListenerStatus, RemoteState, RemoteStatus, TunnelState};

/// How long a reload waits for a stopped tunnel to release its listeners.
const STOP_WAIT: Duration = Duration::from_secs(5);

/// A running tunnel, owned by the supervisor.
struct TunnelHandle {
    tunnel: Arc<Tunnel>,
    state: watch::Receiver<TunnelState>,
    /// Stops this tunnel alone (a child of the supervisor's token).
    cancel: CancellationToken,
    liveness: Arc<Liveness>,
    retry_now: Arc<Notify>,
    /// Bumped to make the tunnel connect again now (`Supervisor::reconnect`).
    reconnect: watch::Sender<u64>,
}

/// Runs every tunnel of a configuration.
pub struct Supervisor {
    tunnels: BTreeMap<String, TunnelHandle>,
    /// What the running tunnels show of themselves, readable from other tasks.
    viewer: Viewer,
    tracker: TaskTracker,
    shutdown: CancellationToken,
    connector: Arc<dyn Connector>,
    grace: Duration,
    /// The threads the tunnels run on; `None`: the runtime the supervisor was started in.
    threads: Option<Threads>,
}

impl Supervisor {
    /// Starts one task per tunnel of `config`, each tunnel on one thread of a pool of up to
    /// one thread per CPU (`threads.rs` says why). Everything stops when `shutdown` is
    /// cancelled. Must be called inside a tokio runtime.
    pub fn start(config: &Config, shutdown: CancellationToken) -> Supervisor {
        Self::start_inner(
            config,
            shutdown,
            Arc::new(SshConnector),
            health::DEFAULT_GRACE,
            Some(Threads::per_cpu()),
        )
    }

    /// [`Supervisor::start`] with another connector, and the grace beyond a step's own bound
    /// after which a tunnel counts as wedged (tests use both). The tunnels run in the caller's
    /// runtime, so that tests with paused time pause theirs too.
    pub fn start_with(
        config: &Config,
        shutdown: CancellationToken,
        connector: Arc<dyn Connector>,
        grace: Duration,
    ) -> Supervisor {
        Self::start_inner(config, shutdown, connector, grace, None)
    }

    fn start_inner(
        config: &Config,
        shutdown: CancellationToken,
        connector: Arc<dyn Connector>,
        grace: Duration,
        threads: Option<Threads>,
    ) -> Supervisor {
        let mut supervisor = Supervisor {
            tunnels: BTreeMap::new(),
            viewer: Viewer::default(),
            tracker: TaskTracker::new(),
            shutdown,
            connector,
            grace,
            threads,
        };
        // Not all at once: sshd's MaxStartups would drop most of a large batch (`startup.rs`).
        let count = config.tunnels.len();
        for (index, tunnel) in config.tunnels.iter().enumerate() {
            supervisor.spawn(tunnel.clone(), startup::delay(index, count));
        }
        supervisor
    }

    /// Starts `tunnel`'s task; its first attempt waits `first_attempt_after`.
    fn spawn(&mut self, tunnel: Tunnel, first_attempt_after: Duration) {
        let tunnel = Arc::new(tunnel);
        let (state_tx, state_rx) = watch::channel(TunnelState::Starting);
        let cancel = self.shutdown.child_token();
        let liveness = Arc::new(Liveness::new());
        let retry_now = Arc::new(Notify::new());
        let (reconnect, reconnect_rx) = watch::channel(0);
        let record = Arc::new(Record::new(SystemTime::now()));
        let counters = Arc::new(TunnelCounters::new(&tunnel));
        let wiring = tunnel::Wiring {
            state: state_tx,
            cancel: cancel.clone(),
            connector: self.connector.clone(),
            liveness: liveness.clone(),
            retry_now: retry_now.clone(),
            reconnect: reconnect_rx,
            record: record.clone(),
            first_attempt_after,
            counters: counters.clone(),
        };
        let running = tunnel::run(tunnel.clone(), wiring);
        match self.threads.as_ref().and_then(Threads::place) {
            Some((thread, placed)) => {
                self.tracker.spawn_on(
                    async move {
                        let _placed = placed;
                        running.await
                    },
                    &thread,
                );
            }
            None => {
                self.tracker.spawn(running);
            }
        }
        self.viewer.insert(snapshot::View {
            tunnel: tunnel.clone(),
            state: state_rx.clone(),
            record,
            counters,
        });
        self.tunnels.insert(
            tunnel.name.clone(),
            TunnelHandle {
                tunnel,
                state: state_rx,
                cancel,
                liveness,
                retry_now,
                reconnect,
            },
        );
    }

    /// The state of every tunnel, by name.
    pub fn states(&self) -> BTreeMap<String, watch::Receiver<TunnelState>> {
        self.tunnels
            .iter()
            .map(|(name, handle)| (name.clone(), handle.state.clone()))
            .collect()
    }

    /// The state of one tunnel.
    pub fn state(&self, name: &str) -> Option<watch::Receiver<TunnelState>> {
        self.tunnels.get(name).map(|handle| handle.state.clone())
    }

    /// Every tunnel as it is now: what `tunneld status` and the metrics show.
    pub fn snapshot(&self) -> Snapshot {
        self.viewer.snapshot()
    }

    /// A handle that takes [`Supervisor::snapshot`]s from any task (the control socket, the
    /// metrics server) while the supervisor itself stays with the main loop. It follows reloads.
    pub fn viewer(&self) -> Viewer {
        self.viewer.clone()
    }

    /// The tunnels being run, as configured.
    pub fn tunnels(&self) -> impl Iterator<Item = &Tunnel> {
        self.tunnels.values().map(|handle| handle.tunnel.as_ref())
    }

    /// What systemd should be told now: readiness, the STATUS line, and whether every tunnel is
    /// making progress (the watchdog).
    pub fn report(&self) -> Report {
        let views: Vec<health::TunnelView<'_>> = self
            .tunnels
            .iter()
            .map(|(name, handle)| health::TunnelView {
                name,
                state: handle.state.borrow().clone(),
                marks: handle.liveness.read(),
                attempt_bound: handle
                    .tunnel
                    .jump
                    .iter()
                    .chain(std::iter::once(&handle.tunnel.target))
                    .map(|hop| hop.connect_timeout)
                    .sum(),
            })
            .collect();
        health::report(&views, self.grace, tokio::time::Instant::now())
    }

    /// Drops the connections of the tunnels named (every tunnel, for an empty list) and connects
    /// them again now; a tunnel backing off retries at once, one that is connecting carries on.
    /// Listeners stay bound: they outlive connections. Returns the names, or, when a name is not
    /// a running tunnel, an error naming it (and nothing is reconnected).
    pub fn reconnect(&self, names: &[String]) -> Result<Vec<String>, UnknownTunnels> {
        let names: Vec<String> = if names.is_empty() {
            self.tunnels.keys().cloned().collect()
        } else {
            outcome::known(names, &self.tunnels)?
        };
        for name in &names {
            if let Some(handle) = self.tunnels.get(name) {
                info!(tunnel = %name, "reconnect asked for");
                handle.reconnect.send_modify(|n| *n = n.wrapping_add(1));
            }
        }
        Ok(names)
    }

    /// Stops one tunnel (for a reload that removed or changed it).
    pub fn stop_tunnel(&mut self, name: &str) -> bool {
        match self.tunnels.remove(name) {
            Some(handle) => {
                self.viewer.remove(name);
                handle.cancel.cancel();
                true
            }
            None => false,
        }
    }

    /// Applies a reloaded configuration: tunnels that were removed or changed are stopped (and
    /// their listeners released) before changed and added ones start; unchanged tunnels keep
    /// running untouched, connection and forwarded connections included. Returns which tunnels
    /// were added, removed, restarted and left alone.
    pub async fn apply(&mut self, new: &Config) -> Applied {
        let old = Config {
            path: new.path.clone(),
            daemon: new.daemon.clone(),
            tunnels: self.tunnels().cloned().collect(),
        };
        let changes = diff(&old, new);
        let applied = Applied::of(&changes, new);
        let mut stopping = Vec::new();
        for change in &changes {
            let name = match change {
                Change::Removed(name) => name,
                Change::Changed(tunnel) => &tunnel.name,
                Change::Added(_) => continue,
            };
            if let Some(handle) = self.tunnels.remove(name) {
                self.viewer.remove(name);
                info!(tunnel = %name, "reload: stopping");
                handle.cancel.cancel();
                stopping.push(handle.state);
            }
        }
        for mut state in stopping {
            let stopped = state.wait_for(|s| *s == TunnelState::Stopped);
            let _ = tokio::time::timeout(STOP_WAIT, stopped).await;
        }
        // Unchanged tunnels that are failing are retried at once: the reload may have fixed
        // what they need (a key, known_hosts) even if their settings did not change.
        for handle in self.tunnels.values() {
            if matches!(*handle.state.borrow(), TunnelState::BackingOff { .. }) {
                handle.retry_now.notify_one();
            }
        }
        let starting: Vec<Tunnel> = changes
            .into_iter()
            .filter_map(|change| match change {
                Change::Added(tunnel) | Change::Changed(tunnel) => Some(tunnel),
                Change::Removed(_) => None,
            })
            .collect();
        let batch = starting.len();
        for (index, tunnel) in starting.into_iter().enumerate() {
            info!(tunnel = %tunnel.name, "reload: starting");
            self.spawn(tunnel, startup::delay(index, batch));
        }
        applied
    }

    /// Cancels everything and waits for every tunnel, listener and forwarded connection to
    /// finish, for at most `grace`. Returns false if something was still running then.
    pub async fn shutdown(self, grace: Duration) -> bool {
        self.shutdown.cancel();
        self.tracker.close();
        let finished = tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_ok();
        if !finished {
            warn!(grace = ?grace, "some tunnels did not stop in time");
        }
        finished
    }
}
