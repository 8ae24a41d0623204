//! Why a connection attempt or a connection failed, classified by type.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use crate::identity::KeyError;
use crate::known_hosts::HostKeyError;

/// The class of a failure. It decides the backoff and appears in the tunnel's state, its logs and
/// systemd's STATUS=. Derived from the error's type, never from its message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FailureKind {
    /// A problem an operator must fix on this machine (a key file missing or too open).
    Config,
    /// The server's host key is unknown (strict), changed, or revoked.
    HostKey,
    /// The server refused every key.
    Auth,
    /// The server or the local system refused a forward (a listen port, a forwarding policy).
    ForwardRefused,
    /// The network or the server went away.
    Network,
    /// A step took longer than its timeout, or the peer stopped answering.
    Timeout,
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FailureKind::Config => "config",
            FailureKind::HostKey => "host-key",
            FailureKind::Auth => "auth",
            FailureKind::ForwardRefused => "forward-refused",
            FailureKind::Network => "network",
            FailureKind::Timeout => "timeout",
        })
    }
}

/// The step of establishing a connection that a timeout interrupted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Resolving the host name and opening the TCP connection.
    Connect,
    /// SSH version exchange, key exchange and host key verification.
    Handshake,
    /// Public key authentication.
    Authentication,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stage::Connect => "TCP connect",
            Stage::Handshake => "SSH handshake",
            Stage::Authentication => "authentication",
        })
    }
}

/// A failure to establish or keep one SSH connection.
#[derive(Debug, thiserror::Error)]
pub enum SshError {
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
        /// `host:port` as configured.
        peer: String,
        /// Each address tried and why it failed.
        attempts: Vec<(SocketAddr, std::io::Error)>,
    },
    /// A step took longer than `connect_timeout`.
    #[error("{peer}: timed out after {}s during {stage}", .after.as_secs_f32())]
    Timeout {
        /// `host:port` as configured.
        peer: String,
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
        /// `host:port` as configured.
        peer: String,
        /// Why each key could not be used.
        problems: Vec<KeyError>,
    },
    /// The server refused every key that was offered.
    #[error("authentication refused for {user}@{peer} (tried: {})", if .tried.is_empty() { "no keys".to_string() } else { .tried.join(", ") })]
    AuthRefused {
        /// The user to authenticate as.
        user: String,
        /// `host:port` as configured.
        peer: String,
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
        /// `host:port` as configured.
        peer: String,
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
    Remote(#[from] crate::connection::RemoteForwardError),
    /// A failure at one hop of a jump chain (hops count from 1; the target is the last).
    #[error("hop {index} ({label}): {error}")]
    AtHop {
        /// The hop's position in the chain.
        index: usize,
        /// The hop's name in the configuration.
        label: String,
        /// What went wrong there.
        error: Box<SshError>,
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
    SocksUsers(#[from] crate::forward::socks::auth::AuthFileError),
    /// The connection ended.
    #[error("{peer}: {reason}")]
    Closed {
        /// `host:port` as configured.
        peer: String,
        /// Why it ended, in words.
        reason: String,
        /// The class of the cause.
        kind: FailureKind,
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

impl SshError {
    /// Names the hop of a chain where `error` happened: `hop 2 (db-server): ...`. The label is
    /// said once: a peer that the inner error names as `label (host:port)` becomes `host:port`.
    pub(crate) fn at_hop(index: usize, label: &str, mut error: SshError) -> SshError {
        if let Some(peer) = error.peer_mut()
            && let Some(address) = peer
                .strip_prefix(label)
                .and_then(|rest| rest.strip_prefix(" ("))
                .and_then(|rest| rest.strip_suffix(')'))
        {
            *peer = address.to_string();
        }
        SshError::AtHop {
            index,
            label: label.to_string(),
            error: Box::new(error),
        }
    }

    fn peer_mut(&mut self) -> Option<&mut String> {
        match self {
            SshError::Connect { peer, .. }
            | SshError::Timeout { peer, .. }
            | SshError::NoUsableKey { peer, .. }
            | SshError::AuthRefused { peer, .. }
            | SshError::Protocol { peer, .. }
            | SshError::Closed { peer, .. } => Some(peer),
            _ => None,
        }
    }

    /// The class of this failure.
    pub fn kind(&self) -> FailureKind {
        match self {
            SshError::Resolve { .. } | SshError::Connect { .. } => FailureKind::Network,
            SshError::Timeout { .. } => FailureKind::Timeout,
            SshError::HostKey(err) if err.is_permanent() => FailureKind::HostKey,
            SshError::HostKey(_) => FailureKind::Config,
            SshError::NoUsableKey { .. } | SshError::SocksUsers(_) => FailureKind::Config,
            SshError::AuthRefused { .. } => FailureKind::Auth,
            SshError::Agent { .. } => FailureKind::Auth,
            SshError::Protocol { source, .. } => protocol_kind(source),
            SshError::Listen { .. } | SshError::Remote(_) => FailureKind::ForwardRefused,
            SshError::Closed { kind, .. } => *kind,
            SshError::AtHop { error, .. } => error.kind(),
            SshError::Through { reason, .. } => match reason {
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
            SshError::AtHop { error, .. } => error.server_unreached(),
            SshError::Resolve { .. } => true,
            SshError::Timeout {
                stage: Stage::Connect,
                ..
            } => true,
            SshError::Connect { attempts, .. } => {
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
        if let SshError::AtHop { error, .. } = self {
            return error.is_permanent();
        }
        matches!(
            self,
            SshError::Remote(crate::connection::RemoteForwardError::Policy { .. })
                | SshError::Through {
                    reason: russh::ChannelOpenFailure::AdministrativelyProhibited,
                    ..
                }
        ) || matches!(
            self.kind(),
            FailureKind::Config | FailureKind::HostKey | FailureKind::Auth
        )
    }
}

/// Classifies russh's errors: the ones that mean "the peer stopped answering" are timeouts, the
/// rest of a broken session is the network's.
pub(crate) fn protocol_kind(err: &russh::Error) -> FailureKind {
    match err {
        russh::Error::KeepaliveTimeout
        | russh::Error::InactivityTimeout
        | russh::Error::ConnectionTimeout
        | russh::Error::Elapsed(_) => FailureKind::Timeout,
        _ => FailureKind::Network,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hop_is_named_once() {
        let timeout = SshError::Timeout {
            peer: "mute (127.0.0.1:2222)".to_string(),
            stage: Stage::Handshake,
            after: Duration::from_secs(1),
        };
        assert_eq!(
            SshError::at_hop(2, "mute", timeout).to_string(),
            "hop 2 (mute): 127.0.0.1:2222: timed out after 1s during SSH handshake"
        );
        // A hop written as `user@host:port` is already named by its address.
        let refused = SshError::AuthRefused {
            user: "pi".to_string(),
            peer: "gateway.example:22".to_string(),
            tried: vec![],
        };
        assert_eq!(
            SshError::at_hop(1, "pi@gateway.example", refused).to_string(),
            "hop 1 (pi@gateway.example): authentication refused for pi@gateway.example:22 (tried: no keys)"
        );
    }
}
