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

/// How far a failed attempt got, from the server's point of view: what retrying it costs the
/// server, and so how soon the supervisor retries it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reach {
    /// Nothing answered before `connect_timeout` ran out: TCP connects (or the name lookup, or the
    /// server's SSH version) got no answer. The attempt already spent its time probing.
    Unanswered,
    /// No SSH server took part, and the network said so at once: the TCP connect was refused or
    /// had no route, the name got no DNS answer, or the connection closed before the server sent
    /// its SSH version. Costs the server nothing.
    Network,
    /// An SSH server answered (the version exchange happened: a failed handshake or login costs
    /// it work and log lines), an established connection ended, or the failure was local.
    Server,
}

/// What a failed name lookup means, from the resolver's own code (getaddrinfo's `EAI_*`), never
/// from its words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// The name does not exist, or has no address (NXDOMAIN: `EAI_NONAME`, `EAI_NODATA`).
    NoSuchName,
    /// No answer for now (`EAI_AGAIN`: no DNS server answered, or SERVFAIL), or the resolver
    /// failed otherwise.
    NoAnswer,
}

/// The step of establishing a connection that a timeout interrupted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Resolving the host name and opening the TCP connection.
    Connect,
    /// Waiting for the server's SSH version: TCP was accepted, and nothing came back. Said as
    /// "SSH handshake" (it is that handshake's first step, and the words operators know), but a
    /// stage of its own: no SSH server took part (see [`Reach`]).
    Version,
    /// SSH version exchange, key exchange and host key verification.
    Handshake,
    /// Public key authentication.
    Authentication,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stage::Connect => "TCP connect",
            Stage::Version | Stage::Handshake => "SSH handshake",
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
