//! The class of a failure and the step it interrupted: what the supervisor decides on.

use std::fmt;

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
