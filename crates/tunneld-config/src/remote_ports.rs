//! Remote forwards that ask one server for the same port. sshd listens there for one of them
//! only: the other is refused at every attempt, and after a reconnect it looks exactly like a
//! port "still held by a previous session", which tunneld waits out for ever.
//!
//! What a bind address means is sshd's decision, under its `GatewayPorts` setting, which the
//! file cannot know: two forwards clash for certain only if they clash under every setting.

use std::net::IpAddr;

use crate::error::{ConfigError, Source};
use crate::findings::{Finding, GatewayPorts, RemotePortClash, describe_route};
use crate::listeners::{Listener, Resolved};
use crate::model::{BindAddress, Tunnel};

/// Checks every pair of remote forwards of the file on one port (0 is never among them). A
/// clash under every `GatewayPorts` on a server named alike is an error; anything less certain
/// is returned for `check`, which can resolve names.
pub(crate) fn check(
    source: &Source<'_>,
    tunnels: &[Resolved],
) -> Result<Vec<Finding>, ConfigError> {
    let all: Vec<(&Resolved, &Listener)> = tunnels
        .iter()
        .flat_map(|t| t.remote.iter().map(move |l| (t, l)))
        .collect();
    let mut findings = Vec::new();
    for (index, (tunnel, later)) in all.iter().enumerate() {
        for (other, earlier) in all.iter().take(index) {
            if earlier.port != later.port {
                continue;
            }
            let clashes_when = clashes_when(&earlier.bind, &later.bind);
            let (route, other_route) = (route(&tunnel.tunnel), route(&other.tunnel));
            let same_route = route == other_route;
            let certain = clashes_when.len() == GatewayPorts::ALL.len();
            let same_tunnel = std::ptr::eq(*tunnel, *other);
            if same_tunnel && certain {
                return Err(source.error(
                    &later.span,
                    &later.key,
                    format!(
                        "remote port {} clashes with {} of the same tunnel at {} (expected each \
                         address and port once)",
                        later.address(),
                        earlier.address(),
                        earlier.key
                    ),
                ));
            }
            if same_route && certain {
                return Err(source.error(
                    &later.span,
                    &later.key,
                    format!(
                        "remote port {} of tunnel {} clashes with {} of tunnel {} at {} on the \
                         same server ({}); it listens there for one of them only (expected a \
                         different port, or 0 for one the server picks)",
                        later.address(),
                        tunnel.tunnel.name,
                        earlier.address(),
                        other.tunnel.name,
                        earlier.key,
                        describe_route(&route),
                    ),
                ));
            }
            findings.push(Finding::RemotePort(RemotePortClash {
                at: source.location(&later.span, &later.key),
                tunnel: tunnel.tunnel.name.clone(),
                address: later.address(),
                route,
                other_tunnel: other.tunnel.name.clone(),
                other_key: earlier.key.to_string(),
                other_address: earlier.address(),
                other_route,
                same_route,
                clashes_when,
            }));
        }
    }
    Ok(findings)
}

/// The servers a tunnel dials, jump hosts first, as `(hostname, port)` with the hostname in
/// lowercase (names are compared without case).
fn route(tunnel: &Tunnel) -> Vec<(String, u16)> {
    tunnel
        .jump
        .iter()
        .chain(std::iter::once(&tunnel.target))
        .map(|hop| (hop.hostname.to_ascii_lowercase(), hop.port))
        .collect()
}

/// The `GatewayPorts` settings under which sshd could not listen for both.
fn clashes_when(a: &BindAddress, b: &BindAddress) -> Vec<GatewayPorts> {
    GatewayPorts::ALL
        .into_iter()
        .filter(|&mode| clash(&listens_on(a, mode), &listens_on(b, mode)))
        .collect()
}

/// An address sshd listens on for a remote forward.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Slot {
    /// The wildcard of IPv4 (`false`) or IPv6 (`true`). sshd sets IPV6_V6ONLY on its listeners,
    /// so the two are separate.
    Any {
        v6: bool,
    },
    Ip(IpAddr),
    /// A name the server resolves: only the same name is known to clash.
    Name(String),
}

fn loopbacks() -> Vec<Slot> {
    vec![
        Slot::Ip(IpAddr::from([127, 0, 0, 1])),
        Slot::Ip(IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1])),
    ]
}

fn everywhere() -> Vec<Slot> {
    vec![Slot::Any { v6: false }, Slot::Any { v6: true }]
}

/// Where sshd listens for a forward with this bind address, as `channel_fwd_bind_addr` in
/// OpenSSH's channels.c decides. tunneld asks for `localhost` when no bind address is written,
/// and for the empty string for `*`.
fn listens_on(bind: &BindAddress, mode: GatewayPorts) -> Vec<Slot> {
    let written = match bind {
        BindAddress::Default => "localhost",
        BindAddress::Any => "",
        BindAddress::Host(host) => host,
    };
    match mode {
        GatewayPorts::Yes => everywhere(),
        // sshd compares the text: only these two are taken as asked.
        GatewayPorts::No => match written {
            "127.0.0.1" | "::1" => written
                .parse()
                .map_or_else(|_| loopbacks(), |ip| vec![Slot::Ip(ip)]),
            _ => loopbacks(),
        },
        GatewayPorts::ClientSpecified => match written {
            "" | "*" => everywhere(),
            "localhost" => loopbacks(),
            _ => match written.parse::<IpAddr>() {
                Ok(ip) if ip.is_unspecified() => vec![Slot::Any { v6: ip.is_ipv6() }],
                Ok(ip) => vec![Slot::Ip(ip)],
                Err(_) => vec![Slot::Name(written.to_ascii_lowercase())],
            },
        },
    }
}

/// Whether listening on `a` and on `b` at one port overlaps anywhere. A name's family is not
/// known here, so it clashes with a wildcard only when both families are taken.
fn clash(a: &[Slot], b: &[Slot]) -> bool {
    let both_wildcards = |slots: &[Slot]| everywhere().iter().all(|any| slots.contains(any));
    let names = |slots: &[Slot]| slots.iter().any(|slot| matches!(slot, Slot::Name(_)));
    if (both_wildcards(a) && names(b)) || (both_wildcards(b) && names(a)) {
        return true;
    }
    a.iter().any(|x| {
        b.iter().any(|y| match (x, y) {
            (Slot::Any { v6 }, Slot::Ip(ip)) | (Slot::Ip(ip), Slot::Any { v6 }) => {
                ip.is_ipv6() == *v6
            }
            _ => x == y,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use BindAddress::{Any, Default, Host};
    use GatewayPorts::{ClientSpecified as Cs, No, Yes};

    fn h(s: &str) -> BindAddress {
        Host(s.to_owned())
    }

    #[test]
    fn where_remote_forwards_clash() {
        let table = [
            (Default, Default, vec![No, Yes, Cs]),
            (Default, h("localhost"), vec![No, Yes, Cs]),
            // `localhost` listens on both loopbacks, so an explicit one clashes everywhere.
            (Default, h("127.0.0.1"), vec![No, Yes, Cs]),
            (Default, h("::1"), vec![No, Yes, Cs]),
            (h("127.0.0.1"), h("::1"), vec![Yes]),
            // Only with clientspecified does a specific address mean itself.
            (Default, h("192.0.2.1"), vec![No, Yes]),
            (h("192.0.2.1"), h("192.0.2.2"), vec![No, Yes]),
            (h("192.0.2.1"), h("192.0.2.1"), vec![No, Yes, Cs]),
            (Any, h("192.0.2.1"), vec![No, Yes, Cs]),
            (Any, Default, vec![No, Yes, Cs]),
            (Any, h("gw.internal"), vec![No, Yes, Cs]),
            (h("0.0.0.0"), h("192.0.2.1"), vec![No, Yes, Cs]),
            (h("0.0.0.0"), h("::1"), vec![No, Yes]),
            (h("0.0.0.0"), h("::"), vec![No, Yes]),
            (h("0.0.0.0"), h("gw.internal"), vec![No, Yes]),
            (h("gw.internal"), h("GW.internal"), vec![No, Yes, Cs]),
            (h("gw.internal"), h("other.internal"), vec![No, Yes]),
            // sshd compares the text: 0:0::1 is not "::1" to it under `no`.
            (h("127.0.0.1"), h("0:0::1"), vec![No, Yes]),
        ];
        for (a, b, expected) in table {
            assert_eq!(clashes_when(&a, &b), expected, "{a} {b}");
            assert_eq!(clashes_when(&b, &a), expected, "{b} {a}");
        }
    }
}
