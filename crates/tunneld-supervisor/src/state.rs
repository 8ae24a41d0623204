//! The visible state of a tunnel, published on a watch channel for whoever reports health.

use std::fmt;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;
use tunneld_ssh::{FailureKind, Negotiated};

/// Where a tunnel is in its life.
#[derive(Clone, Debug, PartialEq)]
pub enum TunnelState {
    /// Binding listeners, before the first connection attempt.
    Starting,
    /// An attempt to connect (TCP and SSH handshake, host key check) is under way.
    Connecting {
        /// 1 for the first attempt since the tunnel last was up.
        attempt: u32,
        /// The server being dialled (a jump host, then the target).
        peer: String,
    },
    /// The server's host key was accepted; authenticating.
    Authenticating {
        /// 1 for the first attempt since the tunnel last was up.
        attempt: u32,
        /// The server.
        peer: String,
    },
    /// Connected, and every forward is up: each listener bound on all of its addresses, each
    /// remote forward listening on the server.
    Up {
        /// The connection's id (a reconnect makes a new one).
        connection: u64,
        /// The server, as named in messages.
        peer: String,
        /// When it came up.
        since: SystemTime,
        /// What was negotiated with the server.
        negotiated: Negotiated,
        /// Each remote forward, in the order of the configuration.
        remote: Vec<RemoteStatus>,
        /// Each local forward, then each dynamic one, in the order of the configuration.
        listeners: Vec<ListenerStatus>,
    },
    /// Connected, and the forwards that work are served, but not every forward is up: a remote
    /// forward refused or still waiting for its port or for the server's answer, or a listener
    /// that could not be bound. Each of those is retried without dropping the connection.
    Degraded {
        /// The connection's id (a reconnect makes a new one).
        connection: u64,
        /// The server, as named in messages.
        peer: String,
        /// When it came up.
        since: SystemTime,
        /// What was negotiated with the server.
        negotiated: Negotiated,
        /// Each remote forward, in the order of the configuration.
        remote: Vec<RemoteStatus>,
        /// Each local forward, then each dynamic one, in the order of the configuration.
        listeners: Vec<ListenerStatus>,
    },
    /// The last attempt or connection failed; waiting before the next attempt.
    BackingOff {
        /// What went wrong, in words an operator acts on (docs/troubleshooting.md).
        reason: String,
        /// Its class.
        kind: FailureKind,
        /// Whether retrying cannot help until someone changes something.
        permanent: bool,
        /// How long the wait is.
        retry_in: Duration,
        /// When the next attempt starts.
        retry_at: Instant,
        /// How many attempts have failed in a row.
        failures: u32,
    },
    /// Stopped for good (shutdown, or the tunnel was removed).
    Stopped,
}

/// Where one remote forward stands on the current connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteStatus {
    /// The forward as written.
    pub spec: String,
    /// Its state.
    pub state: RemoteState,
}

/// The state of one remote forward.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RemoteState {
    /// Asked for; no answer yet.
    Requesting,
    /// The server listens on this port (the one it picked, for port 0).
    Listening {
        /// The port.
        port: u32,
    },
    /// Refused for now (the port is still held by a previous session, most often); asked
    /// again every couple of seconds on the same connection.
    Waiting {
        /// Why, in words.
        reason: String,
    },
    /// Refused by the server's policy (a port-0 request is refused too); asked again about
    /// every `backoff_max` on the same connection.
    Refused {
        /// Why, in words.
        reason: String,
    },
}

impl RemoteState {
    fn is_up(&self) -> bool {
        matches!(self, RemoteState::Listening { .. })
    }
}

/// Where the listener of one local or dynamic forward stands. Listeners outlive connections, so
/// this carries over from one connection to the next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenerStatus {
    /// The forward as written.
    pub spec: String,
    /// Its state.
    pub state: ListenerState,
}

/// The state of one forward's listener.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListenerState {
    /// Bound on every address of the forward, and serving.
    Listening,
    /// Some address could not be bound (the others serve); tried again, soon for a port that
    /// another program holds, about every `backoff_max` otherwise.
    Retrying {
        /// Why, in words.
        reason: String,
    },
}

impl TunnelState {
    /// Whether the tunnel is serving every one of its forwards.
    pub fn is_up(&self) -> bool {
        matches!(self, TunnelState::Up { .. })
    }

    /// Whether the tunnel is connected and serving some of its forwards, but not all.
    pub fn is_degraded(&self) -> bool {
        matches!(self, TunnelState::Degraded { .. })
    }

    /// The id of the connection the tunnel is on, when it is up or degraded.
    pub fn connection(&self) -> Option<u64> {
        match self {
            TunnelState::Up { connection, .. } | TunnelState::Degraded { connection, .. } => {
                Some(*connection)
            }
            _ => None,
        }
    }

    /// The state in words as of `now`, which counts down a backoff's "retry in".
    pub(crate) fn at(&self, now: Instant) -> StateAt<'_> {
        StateAt { state: self, now }
    }
}

/// Why each forward that is not up is not, in words, in the order of the configuration
/// (listeners first); and how many forwards there are.
pub(crate) fn not_up(
    remote: &[RemoteStatus],
    listeners: &[ListenerStatus],
) -> (Vec<String>, usize) {
    let mut why = Vec::new();
    for status in listeners {
        if let ListenerState::Retrying { reason } = &status.state {
            why.push(reason.clone());
        }
    }
    for status in remote {
        match &status.state {
            RemoteState::Listening { .. } => {}
            RemoteState::Requesting => {
                why.push(format!(
                    "remote {}: no answer from the server yet",
                    status.spec
                ));
            }
            RemoteState::Waiting { reason } | RemoteState::Refused { reason } => {
                why.push(reason.clone());
            }
        }
    }
    (why, remote.len() + listeners.len())
}

/// Whether every forward is up, which makes a connected tunnel `Up` rather than `Degraded`.
pub(crate) fn all_up(remote: &[RemoteStatus], listeners: &[ListenerStatus]) -> bool {
    remote.iter().all(|r| r.state.is_up())
        && listeners
            .iter()
            .all(|l| l.state == ListenerState::Listening)
}

impl fmt::Display for TunnelState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.at(Instant::now()).fmt(f)
    }
}

/// A [`TunnelState`] in words, as of a given instant (see [`TunnelState::at`]).
pub(crate) struct StateAt<'a> {
    state: &'a TunnelState,
    now: Instant,
}

impl fmt::Display for StateAt<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.state {
            TunnelState::Starting => f.write_str("starting"),
            TunnelState::Connecting { attempt, peer } if *attempt <= 1 => {
                write!(f, "connecting to {peer}")
            }
            TunnelState::Connecting { attempt, peer } => {
                write!(f, "connecting to {peer} (attempt {attempt})")
            }
            TunnelState::Authenticating { peer, .. } => write!(f, "authenticating to {peer}"),
            TunnelState::Up { peer, .. } => write!(f, "up ({peer})"),
            TunnelState::Degraded {
                peer,
                remote,
                listeners,
                ..
            } => {
                let (why, total) = not_up(remote, listeners);
                let up = total - why.len();
                write!(f, "degraded ({peer}), {up}/{total} forwards up")?;
                for reason in why {
                    write!(f, "; {reason}")?;
                }
                Ok(())
            }
            TunnelState::BackingOff {
                reason,
                permanent,
                retry_at,
                ..
            } => {
                let left = retry_at.saturating_duration_since(self.now);
                let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
                if *permanent {
                    write!(
                        f,
                        "{reason}; will not succeed until fixed, retry in {secs}s"
                    )
                } else {
                    write!(f, "{reason}; retry in {secs}s")
                }
            }
            TunnelState::Stopped => f.write_str("stopped"),
        }
    }
}
