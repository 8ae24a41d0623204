//! Why a tunnel failed: its connection could not be established or kept, or a forward could not
//! be set up. Every failure is a variant, so that its class ([`FailureKind`]) follows from its
//! type, never from its message.
//!
//! This module sits below everything that raises these errors: it names identities, host keys
//! and the SOCKS users file, never the connection or the forwarders.

mod forward;
mod kind;
mod peer;

use std::net::SocketAddr;
use std::time::Duration;

pub use forward::{ChannelOpenError, RemoteForwardError};
pub(crate) use kind::protocol_kind;
pub use kind::{FailureKind, Lookup, Reach, Stage};
pub use peer::Peer;

use crate::identity::KeyError;
use crate::known_hosts::HostKeyError;
use crate::socks::users::AuthFileError;

/// Why a tunnel is not up: its SSH connection (one hop of it, in a jump chain) failed or ended,
/// or one of its forwards could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    /// The host name did not resolve.
    #[error("cannot resolve {host}: {source}")]
    Resolve {
        /// The name that was looked up.
        host: String,
        /// Whether the name does not exist, or got no answer for now (from the resolver's code).
        lookup: Lookup,
        /// The resolver's error.
        source: std::io::Error,
    },
    /// Every address of the host refused or failed the TCP connection.
    #[error("cannot connect to {peer}: {}", describe_attempts(.attempts))]
    Connect {
        /// The server.
        peer: Peer,
        /// Each address tried and why it failed.
        attempts: Vec<(SocketAddr, std::io::Error)>,
    },
    /// The proxy in front of the first hop (`proxy`) could not be reached, refused to connect
    /// to the server, or answered something else.
    #[error("proxy {proxy} {reason}")]
    Proxy {
        /// The server behind the proxy.
        peer: Peer,
        /// The proxy, as `http://host:port` or `socks5://host:port`.
        proxy: String,
        /// What it did: `refused CONNECT db.example.com:22: HTTP/1.1 403 Forbidden`.
        reason: String,
    },
    /// A step took longer than `connect_timeout`.
    #[error("{peer}: timed out after {}s during {stage}", .after.as_secs_f32())]
    Timeout {
        /// The server.
        peer: Peer,
        /// The step that was interrupted.
        stage: Stage,
        /// The timeout that ran out.
        after: Duration,
    },
    /// The server's host key was refused.
    #[error(transparent)]
    HostKey(#[from] HostKeyError),
    /// No usable key: every identity file failed to load and there is no agent.
    #[error("no usable key for {user}@{peer}: {}", join_errors(.problems))]
    NoUsableKey {
        /// The user to authenticate as.
        user: String,
        /// The server.
        peer: Peer,
        /// Why each key could not be used.
        problems: Vec<KeyError>,
    },
    /// The server refused every key that was offered.
    #[error("authentication refused for {user}@{peer} (tried: {})", if .tried.is_empty() { "no keys".to_string() } else { .tried.join(", ") })]
    AuthRefused {
        /// The user to authenticate as.
        user: String,
        /// The server.
        peer: Peer,
        /// The keys that were offered, in order.
        tried: Vec<String>,
    },
    /// The SSH agent could not be used.
    #[error("ssh-agent at {socket}: {reason}")]
    Agent {
        /// The agent's socket.
        socket: String,
        /// What went wrong.
        reason: String,
    },
    /// The connection closed before the server sent a single byte: no SSH server took part (a
    /// proxy or a port forward in front of a server that is down, `MaxStartups`, TCP wrappers).
    #[error("{peer}: closed before the server sent its SSH version: {source}")]
    ClosedBeforeVersion {
        /// The server.
        peer: Peer,
        /// russh's error.
        source: russh::Error,
    },
    /// The SSH protocol failed (the server closed the connection, a packet was corrupt, no common
    /// algorithm...).
    #[error("{peer}: {source}")]
    Protocol {
        /// The server.
        peer: Peer,
        /// russh's error.
        source: russh::Error,
    },
    /// A listener of a forward could not be bound.
    #[error("listen {listen}: {source}")]
    Listen {
        /// The address that could not be bound.
        listen: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The server did not grant a remote forward.
    #[error(transparent)]
    Remote(#[from] RemoteForwardError),
    /// A failure at one hop of a jump chain (hops count from 1; the target is the last).
    #[error("hop {index} ({label}): {error}")]
    AtHop {
        /// The hop's position in the chain.
        index: usize,
        /// The hop's name in the configuration.
        label: String,
        /// What went wrong there.
        error: Box<TunnelError>,
    },
    /// The previous hop could not open the channel to the next one.
    #[error("{}", describe_through(.via, .target, .reason))]
    Through {
        /// The previous hop's name.
        via: String,
        /// `host:port` it was asked to connect to.
        target: String,
        /// Its answer.
        reason: russh::ChannelOpenFailure,
    },
    /// The users file of a SOCKS forward cannot be used.
    #[error(transparent)]
    SocksUsers(#[from] AuthFileError),
    /// The previous hop's session failed while it opened the channel to the next one.
    #[error("{peer}: {via} could not connect to it: {source}")]
    JumpLost {
        /// The previous hop's name.
        via: String,
        /// The hop it was asked to connect to.
        peer: Peer,
        /// russh's error.
        source: russh::Error,
    },
    /// The server stopped answering keepalives.
    #[error("{peer}: no answer to {count} keepalives in {}s", .budget.as_secs())]
    KeepaliveTimeout {
        /// The server.
        peer: Peer,
        /// How many keepalives went unanswered.
        count: u32,
        /// The time they had.
        budget: Duration,
    },
    /// Nothing arrived from the server for longer than the keepalives allow: the link is stuck
    /// (the server may be up, but what it sends does not reach us).
    #[error("{peer}: nothing received from the server in {}s (the link is stuck)", .budget.as_secs())]
    StuckLink {
        /// The server.
        peer: Peer,
        /// How long nothing arrived.
        budget: Duration,
    },
    /// The server closed the connection (SSH_MSG_DISCONNECT).
    #[error("{peer}: the server closed the connection: {message}")]
    ServerDisconnect {
        /// The server.
        peer: Peer,
        /// The server's words, or its reason code when it gave none.
        message: String,
    },
    /// The established connection failed: the transport broke or a packet was bad.
    #[error("{peer}: connection lost: {source}")]
    Transport {
        /// The server.
        peer: Peer,
        /// russh's error.
        source: russh::Error,
    },
    /// The connection ended and russh said nothing of why.
    #[error("{peer}: connection closed")]
    Dropped {
        /// The server.
        peer: Peer,
    },
    /// A task of tunneld's own ended before it finished its work (it panicked: a bug).
    #[error("{what} did not complete: {source}")]
    TaskFailed {
        /// What the task was doing.
        what: &'static str,
        /// How it ended.
        source: tokio::task::JoinError,
    },
}

fn describe_attempts(attempts: &[(SocketAddr, std::io::Error)]) -> String {
    if attempts.is_empty() {
        return "the name resolved to no address".to_string();
    }
    attempts
        .iter()
        .map(|(addr, err)| format!("{addr}: {err}"))
        .collect::<Vec<_>>()
        .join("; ")
}

fn describe_through(via: &str, target: &str, reason: &russh::ChannelOpenFailure) -> String {
    match reason {
        russh::ChannelOpenFailure::ConnectFailed => format!("connection refused by {via}"),
        russh::ChannelOpenFailure::AdministrativelyProhibited => {
            format!("{via} refuses port forwarding to {target} (AllowTcpForwarding / permitopen)")
        }
        other => format!("{via} could not connect to {target}: {other:?}"),
    }
}

fn join_errors(problems: &[KeyError]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl TunnelError {
    /// Names the hop of a chain where `error` happened: `hop 2 (db-server): ...`. The label is
    /// said once: the inner error names its peer by address alone.
    pub(crate) fn at_hop(index: usize, label: &str, mut error: TunnelError) -> TunnelError {
        if let Some(peer) = error.peer_mut() {
            peer.address_only();
        }
        TunnelError::AtHop {
            index,
            label: label.to_string(),
            error: Box::new(error),
        }
    }

    fn peer_mut(&mut self) -> Option<&mut Peer> {
        match self {
            TunnelError::Connect { peer, .. }
            | TunnelError::Proxy { peer, .. }
            | TunnelError::Timeout { peer, .. }
            | TunnelError::NoUsableKey { peer, .. }
            | TunnelError::AuthRefused { peer, .. }
            | TunnelError::Protocol { peer, .. }
            | TunnelError::ClosedBeforeVersion { peer, .. }
            | TunnelError::JumpLost { peer, .. }
            | TunnelError::KeepaliveTimeout { peer, .. }
            | TunnelError::StuckLink { peer, .. }
            | TunnelError::ServerDisconnect { peer, .. }
            | TunnelError::Transport { peer, .. }
            | TunnelError::Dropped { peer } => Some(peer),
            _ => None,
        }
    }

    /// Where in a jump chain this failure happened (hops count from 1), or `None` for a tunnel
    /// dialled directly and for failures of no hop (a listener, a forward).
    pub fn hop(&self) -> Option<usize> {
        match self {
            TunnelError::AtHop { index, .. } => Some(*index),
            _ => None,
        }
    }

    /// The class of this failure.
    pub fn kind(&self) -> FailureKind {
        match self {
            // A name that does not exist needs the configuration (or the DNS zone) fixed.
            TunnelError::Resolve {
                lookup: Lookup::NoSuchName,
                ..
            } => FailureKind::Config,
            TunnelError::Resolve { .. }
            | TunnelError::Connect { .. }
            | TunnelError::Proxy { .. }
            | TunnelError::ClosedBeforeVersion { .. } => FailureKind::Network,
            TunnelError::Timeout { .. } => FailureKind::Timeout,
            TunnelError::HostKey(err) if err.is_permanent() => FailureKind::HostKey,
            TunnelError::HostKey(_) => FailureKind::Config,
            TunnelError::NoUsableKey { .. } | TunnelError::SocksUsers(_) => FailureKind::Config,
            TunnelError::AuthRefused { .. } => FailureKind::Auth,
            TunnelError::Agent { .. } => FailureKind::Auth,
            TunnelError::Protocol { source, .. } => protocol_kind(source),
            TunnelError::Listen { .. } | TunnelError::Remote(_) => FailureKind::ForwardRefused,
            TunnelError::KeepaliveTimeout { .. } | TunnelError::StuckLink { .. } => {
                FailureKind::Timeout
            }
            TunnelError::Transport { source, .. } => protocol_kind(source),
            TunnelError::JumpLost { .. }
            | TunnelError::ServerDisconnect { .. }
            | TunnelError::Dropped { .. } => FailureKind::Network,
            TunnelError::TaskFailed { .. } => FailureKind::Config,
            TunnelError::AtHop { error, .. } => error.kind(),
            TunnelError::Through { reason, .. } => match reason {
                russh::ChannelOpenFailure::AdministrativelyProhibited => {
                    FailureKind::ForwardRefused
                }
                _ => FailureKind::Network,
            },
        }
    }

    /// How far the attempt got before it failed: whether an SSH server took part, which is what
    /// a retry costs the server (see [`Reach`]). A jump chain's failure is that of its hop.
    ///
    /// Refused, unreachable and "no DNS answer" are alike: the answer came at once and cost the
    /// server nothing. A connect that got no answer at all differs only in that the attempt
    /// itself already waited (`connect_timeout`, with a new SYN every second), so it is
    /// [`Reach::Unanswered`] and needs no further wait.
    pub fn reach(&self) -> Reach {
        match self {
            TunnelError::AtHop { error, .. } => error.reach(),
            TunnelError::Timeout {
                stage: Stage::Connect | Stage::Version,
                ..
            } => Reach::Unanswered,
            TunnelError::Connect { attempts, .. }
                if !attempts.is_empty()
                    && attempts
                        .iter()
                        .all(|(_, err)| err.kind() == std::io::ErrorKind::TimedOut) =>
            {
                Reach::Unanswered
            }
            TunnelError::Resolve { .. }
            | TunnelError::Connect { .. }
            | TunnelError::Proxy { .. }
            | TunnelError::ClosedBeforeVersion { .. } => Reach::Network,
            // The previous hop could not open a channel to the next one: its TCP connect failed.
            TunnelError::Through { .. } => Reach::Network,
            _ => Reach::Server,
        }
    }

    /// Whether retrying soon cannot help without someone changing something (a key, a
    /// known_hosts entry, the server's policy). Such failures back off at the cap at once.
    pub fn is_permanent(&self) -> bool {
        if let TunnelError::AtHop { error, .. } = self {
            return error.is_permanent();
        }
        matches!(
            self,
            TunnelError::Remote(RemoteForwardError::Policy { .. })
                | TunnelError::Through {
                    reason: russh::ChannelOpenFailure::AdministrativelyProhibited,
                    ..
                }
        ) || matches!(
            self.kind(),
            FailureKind::Config | FailureKind::HostKey | FailureKind::Auth
        )
    }
}

#[cfg(test)]
mod tests;
