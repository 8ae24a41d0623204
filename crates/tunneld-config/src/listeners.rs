//! Listening addresses that could never all be bound: twice in one tunnel, or in two tunnels of
//! the same file.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::Range;

use crate::error::{ConfigError, Key, Source};
use crate::findings::Finding;
use crate::model::{BindAddress, Tunnel};

/// A resolved tunnel and where its listeners were written, for the checks across tunnels.
pub(crate) struct Resolved {
    pub(crate) tunnel: Tunnel,
    /// `local` and `dynamic` listeners.
    pub(crate) listeners: Vec<Listener>,
    /// `remote` forwards with a port (not 0).
    pub(crate) remote: Vec<Listener>,
    /// The Unix sockets of `local` forwards.
    pub(crate) sockets: Vec<SocketListener>,
    /// Where the servers the tunnel dials are named, in dialling order: this machine resolves
    /// the first one's name, the jump host before it each other's.
    pub(crate) dialled: Vec<Key>,
}

/// A Unix socket that a `local` forward listens on, and where it was written.
pub(crate) struct SocketListener {
    pub(crate) path: std::path::PathBuf,
    pub(crate) key: Key,
    pub(crate) span: Range<usize>,
}

/// No socket path is listened on twice in the file: the second forward would find the first
/// one's live socket and never bind.
pub(crate) fn check_sockets(source: &Source<'_>, tunnels: &[Resolved]) -> Result<(), ConfigError> {
    let all: Vec<&SocketListener> = tunnels.iter().flat_map(|t| &t.sockets).collect();
    for (index, later) in all.iter().enumerate() {
        if let Some(earlier) = all.iter().take(index).find(|e| e.path == later.path) {
            return Err(source.error(
                &later.span,
                &later.key,
                format!(
                    "socket {} is listened on already at {} (expected each socket once)",
                    later.path.display(),
                    earlier.key
                ),
            ));
        }
    }
    Ok(())
}

/// One address and port that a forward listens on, and where it was written.
pub(crate) struct Listener {
    pub(crate) bind: BindAddress,
    pub(crate) port: u16,
    pub(crate) key: Key,
    pub(crate) span: Range<usize>,
}

impl Listener {
    pub(crate) fn new(bind: &BindAddress, port: u16, key: Key, span: Range<usize>) -> Self {
        Listener {
            bind: bind.clone(),
            port,
            key,
            span,
        }
    }

    /// Whether both cannot be bound at once, and how.
    fn clashes_with(&self, other: &Listener) -> Overlap {
        if self.port == other.port {
            overlap(&self.bind, &other.bind)
        } else {
            Overlap::None
        }
    }

    pub(crate) fn address(&self) -> String {
        format!("{}:{}", self.bind, self.port)
    }
}

/// How the addresses of two bind addresses overlap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Overlap {
    None,
    /// The same address, or a wildcard.
    Same,
    /// No bind address (or `localhost`), which listens on 127.0.0.1 and ::1, against one of
    /// those written out.
    Loopback,
}

/// Where a bind address listens, as far as the file tells.
enum Spot {
    Everywhere,
    Loopbacks,
    Ip(IpAddr),
    Name(String),
}

fn spot(bind: &BindAddress) -> Spot {
    match bind {
        BindAddress::Any => Spot::Everywhere,
        BindAddress::Default => Spot::Loopbacks,
        BindAddress::Host(host) if host.eq_ignore_ascii_case("localhost") => Spot::Loopbacks,
        BindAddress::Host(host) => match host.parse::<IpAddr>() {
            Ok(ip) if ip.is_unspecified() => Spot::Everywhere,
            Ok(ip) => Spot::Ip(ip),
            Err(_) => Spot::Name(host.to_ascii_lowercase()),
        },
    }
}

fn overlap(a: &BindAddress, b: &BindAddress) -> Overlap {
    let loopback = |ip: &IpAddr| {
        *ip == IpAddr::V4(Ipv4Addr::LOCALHOST) || *ip == IpAddr::V6(Ipv6Addr::LOCALHOST)
    };
    match (spot(a), spot(b)) {
        (Spot::Everywhere, _) | (_, Spot::Everywhere) | (Spot::Loopbacks, Spot::Loopbacks) => {
            Overlap::Same
        }
        (Spot::Loopbacks, Spot::Ip(ip)) | (Spot::Ip(ip), Spot::Loopbacks) if loopback(&ip) => {
            Overlap::Loopback
        }
        (Spot::Ip(a), Spot::Ip(b)) if a == b => Overlap::Same,
        (Spot::Name(a), Spot::Name(b)) if a == b => Overlap::Same,
        _ => Overlap::None,
    }
}

/// Said of a clash with no bind address, which is not obvious from the addresses.
const LOOPBACKS: &str = "; no bind address, or localhost, listens on 127.0.0.1 and ::1";

/// No two listeners of one tunnel clash.
pub(crate) fn check_within(source: &Source<'_>, listeners: &[Listener]) -> Result<(), ConfigError> {
    for (index, listener) in listeners.iter().enumerate() {
        let clash = listeners
            .iter()
            .take(index)
            .map(|earlier| (earlier, listener.clashes_with(earlier)))
            .find(|(_, overlap)| *overlap != Overlap::None);
        if let Some((earlier, overlap)) = clash {
            let why = if overlap == Overlap::Loopback {
                LOOPBACKS
            } else {
                ""
            };
            return Err(source.error(
                &listener.span,
                &listener.key,
                format!(
                    "listener {} clashes with {} of the same tunnel at {}{why} (expected each \
                     address and port once)",
                    listener.address(),
                    earlier.address(),
                    earlier.key
                ),
            ));
        }
    }
    Ok(())
}

/// No listener of one tunnel clashes with a listener of another tunnel of the file. A clash of
/// no bind address with 127.0.0.1 or ::1 is returned for `check` (see
/// [`Finding::ListenerClash`]).
pub(crate) fn check_across_tunnels(
    source: &Source<'_>,
    tunnels: &[Resolved],
) -> Result<Vec<Finding>, ConfigError> {
    let mut findings = Vec::new();
    for (index, tunnel) in tunnels.iter().enumerate() {
        for listener in &tunnel.listeners {
            for other in tunnels.iter().take(index) {
                let clash = other
                    .listeners
                    .iter()
                    .map(|earlier| (earlier, listener.clashes_with(earlier)))
                    .find(|(_, overlap)| *overlap != Overlap::None);
                let Some((earlier, overlap)) = clash else {
                    continue;
                };
                let why = if overlap == Overlap::Loopback {
                    LOOPBACKS
                } else {
                    ""
                };
                let message = format!(
                    "listener {} of tunnel {} clashes with {} of tunnel {} at {}{why}; both \
                     could never be bound (expected a different port or address)",
                    listener.address(),
                    tunnel.tunnel.name,
                    earlier.address(),
                    other.tunnel.name,
                    earlier.key
                );
                if overlap == Overlap::Same {
                    return Err(source.error(&listener.span, &listener.key, message));
                }
                findings.push(Finding::ListenerClash {
                    at: source.location(&listener.span, &listener.key),
                    tunnel: tunnel.tunnel.name.clone(),
                    message,
                });
            }
        }
    }
    Ok(findings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use BindAddress::{Any, Default, Host};

    fn h(s: &str) -> BindAddress {
        Host(s.to_owned())
    }

    #[test]
    fn which_bind_addresses_overlap() {
        use Overlap::{Loopback, None, Same};
        let table = [
            (Default, Default, Same),
            (Default, h("127.0.0.1"), Loopback),
            (Default, h("::1"), Loopback),
            (Default, h("0:0:0:0:0:0:0:1"), Loopback),
            (h("LocalHost"), h("127.0.0.1"), Loopback),
            (Default, h("127.0.0.2"), None),
            (Default, h("localhost"), Same),
            (Default, h("192.0.2.1"), None),
            (Any, h("192.0.2.1"), Same),
            (Any, Default, Same),
            (h("0.0.0.0"), h("127.0.0.1"), Same),
            (h("::"), Default, Same),
            (h("127.0.0.1"), h("::1"), None),
            (h("::1"), h("0:0::1"), Same),
            (h("192.0.2.1"), h("192.0.2.2"), None),
            (h("db.internal"), h("DB.internal"), Same),
            (h("db.internal"), h("192.0.2.1"), None),
        ];
        for (a, b, expected) in table {
            assert_eq!(overlap(&a, &b), expected, "{a} {b}");
            assert_eq!(overlap(&b, &a), expected, "{b} {a}");
        }
    }
}
