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
use crate::record::{History, Record};
use crate::state::{TunnelState, not_up};
use crate::state_name::name_of;
pub use crate::state_name::{LastError, StateName};
use forwards::{counted, forwards};

/// What the supervisor shares of one running tunnel with whoever takes snapshots.
#[derive(Clone)]
pub(crate) struct View {
    pub(crate) tunnel: Arc<Tunnel>,
    pub(crate) state: watch::Receiver<TunnelState>,
    pub(crate) record: Arc<Record>,
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
                // The history first: a state published in between is newer than its `since`,
                // and `of` then counts it as entered now.
                let history = view.record.read();
                let mut tunnel = of(&view.tunnel, &view.state.borrow(), &history, now);
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

/// A tunnel as its published state and its history show it. Forward counters are the forwards'
/// business (`forwards`).
pub(crate) fn of(
    tunnel: &Tunnel,
    state: &TunnelState,
    history: &History,
    now: SystemTime,
) -> TunnelSnapshot {
    let name = name_of(state);
    let (connection, peer, reason, retry_in) = match state {
        TunnelState::Starting | TunnelState::Stopped => (None, None, None, None),
        TunnelState::Connecting { peer, .. } | TunnelState::Authenticating { peer, .. } => {
            (None, Some(peer.clone()), None, None)
        }
        TunnelState::Up {
            connection, peer, ..
        } => (Some(*connection), Some(peer.clone()), None, None),
        TunnelState::Degraded {
            connection,
            peer,
            remote,
            listeners,
            ..
        } => {
            let (why, _) = not_up(remote, listeners);
            let reason = (!why.is_empty()).then(|| why.join("; "));
            (Some(*connection), Some(peer.clone()), reason, None)
        }
        TunnelState::BackingOff {
            reason, retry_at, ..
        } => {
            let left = retry_at.saturating_duration_since(tokio::time::Instant::now());
            (None, None, Some(reason.clone()), Some(left))
        }
    };
    // The history's `since` belongs to the state it last noted; a state published after the
    // history was read was entered just now.
    let since = if history.state == name {
        history.since
    } else {
        now
    };
    TunnelSnapshot {
        name: tunnel.name.clone(),
        state: name,
        since,
        connection,
        peer,
        reason,
        retry_in,
        last_error: history.last_error.clone(),
        reconnects: history.reconnects.clone(),
        keepalive_rtt: None,
        last_connect: history.last_connect,
        forwards: forwards(tunnel, state),
    }
}
