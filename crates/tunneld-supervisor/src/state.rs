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
    /// Connected; local and dynamic forwards are served, remote forwards as `remote` says.
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
}

impl TunnelState {
    /// Whether the tunnel is serving.
    pub fn is_up(&self) -> bool {
        matches!(self, TunnelState::Up { .. })
    }

    /// The state in words as of `now`, which counts down a backoff's "retry in".
    pub(crate) fn at(&self, now: Instant) -> StateAt<'_> {
        StateAt { state: self, now }
    }
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
            TunnelState::Up { peer, remote, .. } => {
                write!(f, "up ({peer})")?;
                for status in remote {
                    if let RemoteState::Waiting { reason } = &status.state {
                        write!(f, "; {reason}")?;
                    }
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
