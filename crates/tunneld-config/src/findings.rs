//! What a file that loads can still get wrong, for `tunneld check` to judge. Judging takes what
//! this crate does not do: resolving names (is `bastoin` a host at all? are `localhost` and
//! `127.0.0.1` one server?), or is stricter than loading may be (see
//! [`Finding::ListenerClash`]). Each finding says where it was written.

use std::fmt;

/// Where a value is written in the file: `LINE:COLUMN: KEY` (1-based, the column in
/// characters), as in [`crate::ConfigError`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// The dotted key (`tunnels.db.jump[0]`).
    pub key: String,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.column, self.key)
    }
}

/// One thing for `check` to judge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Finding {
    /// Two listeners of two tunnels that cannot both be bound: one without a bind address (or
    /// `localhost`), which listens on 127.0.0.1 and ::1, and one on 127.0.0.1 or ::1 itself.
    /// Within one tunnel this is a load error; across tunnels, loading lets it through because
    /// the format's reference example (tests/contract_example.rs) has it and must load, so
    /// `check` is where it fails.
    ListenerClash {
        /// The later of the two listeners.
        at: Location,
        /// Its tunnel.
        tunnel: String,
        /// What is wrong (expected), as a load error would say it.
        message: String,
    },
    /// A `host` or `jump` string that names no `[hosts]` entry but is close to one.
    NearHostName(NearHostName),
    /// Two remote forwards that ask for the same port, on servers that may be one.
    RemotePort(RemotePortClash),
}

impl Finding {
    /// Where it was written.
    pub fn at(&self) -> &Location {
        match self {
            Finding::ListenerClash { at, .. } => at,
            Finding::NearHostName(near) => &near.at,
            Finding::RemotePort(clash) => &clash.at,
        }
    }

    /// The tunnel whose table it is written in; `None` for a `[hosts]` entry.
    pub fn tunnel(&self) -> Option<&str> {
        match self {
            Finding::ListenerClash { tunnel, .. } => Some(tunnel),
            Finding::NearHostName(near) => near.tunnel.as_deref(),
            Finding::RemotePort(clash) => Some(&clash.tunnel),
        }
    }
}

/// `jump = ["bastoin"]` beside `[hosts.bastion]`: taken as a host name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NearHostName {
    /// The string.
    pub at: Location,
    /// The tunnel whose table it is in; `None` in a `[hosts]` entry's `jump`.
    pub tunnel: Option<String>,
    /// The string as written, which is also the host name it is dialled as.
    pub written: String,
    /// The `[hosts]` name it is close to.
    pub suggestion: String,
    /// Who resolves it when a tunnel dials it.
    pub resolved_by: ResolvedBy,
}

/// Who resolves a host name: tunneld, for the first server a tunnel dials, or the jump host
/// before it, which opens the connection to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResolvedBy {
    /// This machine: some tunnel dials it first.
    ThisMachine,
    /// A jump host: every tunnel reaches it through one.
    JumpHost,
    /// No tunnel dials it (a `[hosts]` entry that no tunnel uses).
    Nobody,
}

/// Two remote forwards on one port: on one server, sshd can listen there for one of them only,
/// and the other is refused again at every attempt (and, after a reconnect, shown as "still held
/// by a previous session"). Port 0 never clashes: the server picks a free one each time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemotePortClash {
    /// The later forward.
    pub at: Location,
    /// Its tunnel.
    pub tunnel: String,
    /// Its bind address and port as the server is asked (`localhost:9000`, `*:9000`).
    pub address: String,
    /// The servers its tunnel dials, in order, as `(hostname, port)`: jump hosts, then the
    /// target.
    pub route: Vec<(String, u16)>,
    /// The other forward's tunnel (the same tunnel for two forwards of one tunnel).
    pub other_tunnel: String,
    /// The other forward's key (`tunnels.a.remote[0]`).
    pub other_key: String,
    /// The other forward's bind address and port.
    pub other_address: String,
    /// The other tunnel's route.
    pub other_route: Vec<(String, u16)>,
    /// Whether the routes are the same by their text (hostnames compared without case): then
    /// the server is certainly the same. Otherwise it is if the first hops resolve to a common
    /// address and the rest of the routes match.
    pub same_route: bool,
    /// The server's `GatewayPorts` settings under which the two clash (sshd decides what a bind
    /// address means); `yes` is always among them. All three: a clash on any one server.
    pub clashes_when: Vec<GatewayPorts>,
}

/// sshd's `GatewayPorts`, which decides where a remote forward listens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GatewayPorts {
    /// `no`, the default: the loopback addresses, unless 127.0.0.1 or ::1 is asked for.
    No,
    /// `yes`: every interface, whatever is asked for.
    Yes,
    /// `clientspecified`: what is asked for.
    ClientSpecified,
}

impl GatewayPorts {
    /// Every setting.
    pub const ALL: [GatewayPorts; 3] = [
        GatewayPorts::No,
        GatewayPorts::Yes,
        GatewayPorts::ClientSpecified,
    ];
}

impl fmt::Display for GatewayPorts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            GatewayPorts::No => "no",
            GatewayPorts::Yes => "yes",
            GatewayPorts::ClientSpecified => "clientspecified",
        })
    }
}

/// A route in words: `db.example.com:22`, or `[::1]:22 via gw:2222, bastion:22` through jump
/// hosts.
pub fn describe_route(route: &[(String, u16)]) -> String {
    let server = |(host, port): &(String, u16)| {
        if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        }
    };
    match route.split_last() {
        Some((target, [])) => server(target),
        Some((target, jumps)) => format!(
            "{} via {}",
            server(target),
            jumps.iter().map(server).collect::<Vec<_>>().join(", ")
        ),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_read_as_servers() {
        let route = |hops: &[(&str, u16)]| -> Vec<(String, u16)> {
            hops.iter().map(|(h, p)| ((*h).to_owned(), *p)).collect()
        };
        assert_eq!(describe_route(&route(&[("db", 22)])), "db:22");
        assert_eq!(
            describe_route(&route(&[("gw", 2222), ("bastion", 22), ("::1", 22)])),
            "[::1]:22 via gw:2222, bastion:22"
        );
        assert_eq!(describe_route(&[]), "");
    }
}
