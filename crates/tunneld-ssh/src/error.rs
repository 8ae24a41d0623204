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
pub use kind::{FailureKind, Stage};
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
            | TunnelError::Timeout { peer, .. }
            | TunnelError::NoUsableKey { peer, .. }
            | TunnelError::AuthRefused { peer, .. }
            | TunnelError::Protocol { peer, .. }
            | TunnelError::JumpLost { peer, .. }
            | TunnelError::KeepaliveTimeout { peer, .. }
            | TunnelError::StuckLink { peer, .. }
            | TunnelError::ServerDisconnect { peer, .. }
            | TunnelError::Transport { peer, .. }
            | TunnelError::Dropped { peer } => Some(peer),
            _ => None,
        }
    }

    /// The class of this failure.
    pub fn kind(&self) -> FailureKind {
        match self {
            TunnelError::Resolve { .. } | TunnelError::Connect { .. } => FailureKind::Network,
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

    /// Whether the server was never reached: the name did not resolve, or TCP connects got no
    /// answer or no route. Such attempts cost the server nothing, so the supervisor retries them
    /// about every second instead of backing off: when the network returns, so does the tunnel.
    pub fn server_unreached(&self) -> bool {
        match self {
            TunnelError::AtHop { error, .. } => error.server_unreached(),
            TunnelError::Resolve { .. } => true,
            TunnelError::Timeout {
                stage: Stage::Connect,
                ..
            } => true,
            TunnelError::Connect { attempts, .. } => {
                !attempts.is_empty()
                    && attempts.iter().all(|(_, err)| {
                        matches!(
                            err.kind(),
                            std::io::ErrorKind::TimedOut
                                | std::io::ErrorKind::HostUnreachable
                                | std::io::ErrorKind::NetworkUnreachable
                                | std::io::ErrorKind::NetworkDown
                        )
                    })
            }
            _ => false,
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
mod tests {
    use super::*;

    #[test]
    fn a_hop_is_named_once() {
        let timeout = TunnelError::Timeout {
            peer: Peer::new("mute", "127.0.0.1", 2222),
            stage: Stage::Handshake,
            after: Duration::from_secs(1),
        };
        assert_eq!(
            TunnelError::at_hop(2, "mute", timeout).to_string(),
            "hop 2 (mute): 127.0.0.1:2222: timed out after 1s during SSH handshake"
        );
        // A hop written as `user@host:port` is already named by its address.
        let refused = TunnelError::AuthRefused {
            user: "pi".to_string(),
            peer: Peer::new("pi@gateway.example", "gateway.example", 22),
            tried: vec![],
        };
        assert_eq!(
            TunnelError::at_hop(1, "pi@gateway.example", refused).to_string(),
            "hop 1 (pi@gateway.example): authentication refused for pi@gateway.example:22 (tried: no keys)"
        );
    }

    #[test]
    fn a_peer_is_named_by_its_label_unless_the_label_holds_its_address() {
        assert_eq!(
            Peer::new("db", "10.0.0.5", 2222).to_string(),
            "db (10.0.0.5:2222)"
        );
        assert_eq!(
            Peer::new("pi@gateway.example", "gateway.example", 22).to_string(),
            "gateway.example:22"
        );
        let v6 = Peer::new("v6", "::1", 22);
        assert_eq!(v6.address, "[::1]:22");
        assert_eq!(v6.to_string(), "v6 ([::1]:22)");
        let mut inner = v6;
        inner.address_only();
        assert_eq!(inner.to_string(), "[::1]:22");
    }
}
