//! What a running daemon shows of itself, read at one instant: the one source that `tunneld
//! status` (the control socket) and the Prometheus metrics both read, so that they never
//! disagree.
//!
//! Plain values only; the wire formats (JSON on the control socket, the metrics exposition) are
//! the business of whoever serves them.

mod forwards;

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use tokio::sync::watch;

use tunneld_config::Tunnel;
use tunneld_ssh::FailureKind;

use crate::counters::TunnelCounters;
use crate::state::{TunnelState, not_up};
use forwards::{counted, forwards};

/// What the supervisor shares of one running tunnel with whoever takes snapshots.
#[derive(Clone)]
pub(crate) struct View {
    pub(crate) tunnel: Arc<Tunnel>,
    pub(crate) state: watch::Receiver<TunnelState>,
    pub(crate) counters: Arc<TunnelCounters>,
}

/// Takes [`Snapshot`]s of the running tunnels from any task (`Supervisor::viewer`).
#[derive(Clone, Default)]
pub struct Viewer {
    views: Arc<RwLock<BTreeMap<String, View>>>,
}

impl Viewer {
    /// Every running tunnel as it is now, in name order.
    pub fn snapshot(&self) -> Snapshot {
        let now = SystemTime::now();
        let views = self.views.read().unwrap_or_else(PoisonError::into_inner);
        let tunnels = views
            .values()
            .map(|view| {
                let mut tunnel = of(&view.tunnel, &view.state.borrow(), now);
                counted(&mut tunnel, &view.counters);
                tunnel
            })
            .collect();
        Snapshot { tunnels }
    }

    pub(crate) fn insert(&self, view: View) {
        let mut views = self.views.write().unwrap_or_else(PoisonError::into_inner);
        views.insert(view.tunnel.name.clone(), view);
    }

    pub(crate) fn remove(&self, name: &str) {
        let mut views = self.views.write().unwrap_or_else(PoisonError::into_inner);
        views.remove(name);
    }
}

/// Every tunnel of the daemon, in name order.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    /// One entry per running tunnel, sorted by name.
    pub tunnels: Vec<TunnelSnapshot>,
}

/// One tunnel.
#[derive(Clone, Debug, PartialEq)]
pub struct TunnelSnapshot {
    /// The tunnel's name.
    pub name: String,
    /// Where it is in its life.
    pub state: StateName,
    /// When it entered that state.
    pub since: SystemTime,
    /// The current SSH connection's id while up or degraded; a new connection gets a new id.
    pub connection: Option<u64>,
    /// The server: the one connected to, or the one being dialled.
    pub peer: Option<String>,
    /// Why it is not up, in words (the backoff's reason, or each forward that is not up).
    pub reason: Option<String>,
    /// While backing off: how long until the next attempt.
    pub retry_in: Option<Duration>,
    /// The most recent failure, kept after the tunnel recovers.
    pub last_error: Option<LastError>,
    /// How many times a failure made the tunnel connect again, by the failure's class.
    pub reconnects: Vec<(FailureKind, u64)>,
    /// The round trip of the last keepalive that was answered.
    pub keepalive_rtt: Option<Duration>,
    /// When the last connection came up.
    pub last_connect: Option<SystemTime>,
    /// Each forward, in the order of the configuration: local, then remote, then dynamic.
    pub forwards: Vec<ForwardSnapshot>,
}

impl TunnelSnapshot {
    /// All reconnects, whatever their class.
    pub fn reconnects_total(&self) -> u64 {
        self.reconnects.iter().map(|(_, n)| n).sum()
    }
}

/// The state of a tunnel, as `tunneld status` and the metrics name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StateName {
    /// Every forward is up.
    Up,
    /// Connected; some forwards are not up.
    Degraded,
    /// Dialling (or about to: listeners are bound before the first attempt).
    Connecting,
    /// The host key was accepted; authenticating.
    Authenticating,
    /// Waiting before the next attempt.
    BackingOff,
    /// Stopped for good.
    Stopped,
}

impl StateName {
    /// Every state, in this order (metrics publish one series per state).
    pub const ALL: [StateName; 6] = [
        StateName::Up,
        StateName::Degraded,
        StateName::Connecting,
        StateName::Authenticating,
        StateName::BackingOff,
        StateName::Stopped,
    ];

    /// The name on the wire: `up`, `degraded`, `connecting`, `authenticating`, `backing-off`,
    /// `stopped`. Never renamed.
    pub fn as_str(self) -> &'static str {
        match self {
            StateName::Up => "up",
            StateName::Degraded => "degraded",
            StateName::Connecting => "connecting",
            StateName::Authenticating => "authenticating",
            StateName::BackingOff => "backing-off",
            StateName::Stopped => "stopped",
        }
    }
}

/// A failure, as `last_error` shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct LastError {
    /// What went wrong, in words.
    pub message: String,
    /// Its class (its name on the wire is `FailureKind`'s Display: `network`, `auth`, ...).
    pub kind: FailureKind,
    /// When it happened.
    pub at: SystemTime,
}

/// Which way a forward goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ForwardKind {
    /// `local` (ssh -L).
    Local,
    /// `remote` (ssh -R).
    Remote,
    /// `dynamic` (ssh -D).
    Dynamic,
}

impl ForwardKind {
    /// `local`, `remote` or `dynamic`. Never renamed.
    pub fn as_str(self) -> &'static str {
        match self {
            ForwardKind::Local => "local",
            ForwardKind::Remote => "remote",
            ForwardKind::Dynamic => "dynamic",
        }
    }
}

/// The state of one forward.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForwardStateName {
    /// Serving: the listener is bound (local, dynamic), or the server listens (remote).
    Up,
    /// Asked of the server; no answer yet (remote).
    Requesting,
    /// Not serving for now, and retried: a listener that cannot be bound, a remote port still
    /// held or refused.
    Retrying,
    /// Not serving because the tunnel is not connected (remote forwards live on a connection).
    Down,
}

impl ForwardStateName {
    /// `up`, `requesting`, `retrying` or `down`.
    pub fn as_str(self) -> &'static str {
        match self {
            ForwardStateName::Up => "up",
            ForwardStateName::Requesting => "requesting",
            ForwardStateName::Retrying => "retrying",
            ForwardStateName::Down => "down",
        }
    }
}

/// One forward of a tunnel.
#[derive(Clone, Debug, PartialEq)]
pub struct ForwardSnapshot {
    /// Which way it goes.
    pub kind: ForwardKind,
    /// The forward as written in the configuration.
    pub spec: String,
    /// Where it really listens: the bound addresses of a local or dynamic listener, or the
    /// server's address and port for a remote forward (the port the server allocated, for
    /// port 0). Empty while not listening.
    pub listen: Vec<String>,
    /// Its state.
    pub state: ForwardStateName,
    /// Why it is not up, in words.
    pub reason: Option<String>,
    /// Forwarded connections open now.
    pub active: u64,
    /// Forwarded connections since the daemon started (or the tunnel last changed in a reload).
    pub connections_total: u64,
    /// Bytes the forward's clients sent into the tunnel.
    pub bytes_in: u64,
    /// Bytes that came back out to them.
    pub bytes_out: u64,
}

/// A tunnel as its published state shows it. Counters are zero (`counted` adds them) and
/// `since` is approximate here: this is the part that the state alone can tell.
pub(crate) fn of(tunnel: &Tunnel, state: &TunnelState, now: SystemTime) -> TunnelSnapshot {
    let (name, connection, peer, since, reason, retry_in) = match state {
        TunnelState::Starting => (StateName::Connecting, None, None, now, None, None),
        TunnelState::Connecting { peer, .. } => (
            StateName::Connecting,
            None,
            Some(peer.clone()),
            now,
            None,
            None,
        ),
        TunnelState::Authenticating { peer, .. } => (
            StateName::Authenticating,
            None,
            Some(peer.clone()),
            now,
            None,
            None,
        ),
        TunnelState::Up {
            connection,
            peer,
            since,
            ..
        } => (
            StateName::Up,
            Some(*connection),
            Some(peer.clone()),
            *since,
            None,
            None,
        ),
        TunnelState::Degraded {
            connection,
            peer,
            since,
            remote,
            listeners,
            ..
        } => {
            let (why, _) = not_up(remote, listeners);
            let reason = (!why.is_empty()).then(|| why.join("; "));
            (
                StateName::Degraded,
                Some(*connection),
                Some(peer.clone()),
                *since,
                reason,
                None,
            )
        }
        TunnelState::BackingOff {
            reason, retry_at, ..
        } => {
            let left = retry_at.saturating_duration_since(tokio::time::Instant::now());
            (
                StateName::BackingOff,
                None,
                None,
                now,
                Some(reason.clone()),
                Some(left),
            )
        }
        TunnelState::Stopped => (StateName::Stopped, None, None, now, None, None),
    };
    TunnelSnapshot {
        name: tunnel.name.clone(),
        state: name,
        since,
        connection,
        peer,
        reason,
        retry_in,
        last_error: None,
        reconnects: Vec::new(),
        keepalive_rtt: None,
        last_connect: None,
        forwards: forwards(tunnel, state),
    }
}
