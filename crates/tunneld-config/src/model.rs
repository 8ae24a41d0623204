//! The checked configuration model: what the rest of tunneld runs from.
//!
//! Every value here is resolved (tunnel, then `[hosts]`, then `[defaults]`, then the built-in
//! default) and validated; nothing is "filled in later". Types derive `PartialEq` so that a reload
//! can diff two configurations tunnel by tunnel.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::daemon::Daemon;

/// A whole configuration file, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The file it was read from (for messages).
    pub path: PathBuf,
    /// The `[daemon]` table.
    pub daemon: Daemon,
    /// Every tunnel of the file, sorted by name.
    pub tunnels: Vec<Tunnel>,
}

/// One supervised SSH connection (through zero or more jump hosts) and all of its forwards.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tunnel {
    /// The tunnel's name, `[A-Za-z0-9_.-]+`.
    pub name: String,
    /// The SSH server that carries the forwards (the last hop).
    pub target: Hop,
    /// Jump hosts in the order they are dialled: `jump[0]` is dialled directly, each next hop
    /// through the previous one, and `target` through the last. Already flattened: a hop's own
    /// `jump` is expanded in front of it.
    pub jump: Vec<Hop>,
    /// `local` forwards (like `ssh -L`).
    pub local: Vec<LocalForward>,
    /// `remote` forwards (like `ssh -R`).
    pub remote: Vec<RemoteForward>,
    /// `dynamic` forwards (SOCKS, like `ssh -D`).
    pub dynamic: Vec<DynamicForward>,
    /// Keepalive probes on the connection that carries the forwards.
    pub keepalive: Keepalive,
    /// Reconnect delays.
    pub backoff: Backoff,
    /// Like OpenSSH's `ExitOnForwardFailure`: when true, a forward that fails drops and
    /// reconnects the whole tunnel, and the tunnel does not connect until every listener is
    /// bound. When false (the default), the forwards that work keep serving and the failed one
    /// is retried on the live connection.
    pub exit_on_forward_failure: bool,
}

/// One SSH server to connect to: the target of a tunnel, or a jump host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hop {
    /// How the configuration names this server: the `[hosts]` name, or the
    /// `[user@]host[:port]` string as written. Used in messages ("hop 1 (bastion)").
    pub label: String,
    /// The host name or address to resolve and connect to.
    pub hostname: String,
    /// The TCP port.
    pub port: u16,
    /// The user to authenticate as.
    pub user: String,
    /// Private keys to try, in order.
    pub identity_files: Vec<IdentityFile>,
    /// User certificates named explicitly (like OpenSSH's `CertificateFile`). Each is offered,
    /// before the plain key, with the identity (a key file, or an agent key) whose public key it
    /// certifies. A `KEY-cert.pub` beside an identity file `KEY` is offered without being named.
    pub certificate_files: Vec<IdentityFile>,
    /// Whether to also try the keys (and certificates) of the agent at `$SSH_AUTH_SOCK`.
    pub use_agent: bool,
    /// The known_hosts file of learned keys: host keys are verified against it (together with
    /// `global_known_hosts`), and `accept-new` appends to it.
    pub known_hosts: PathBuf,
    /// The known_hosts file of pinned keys (like OpenSSH's `GlobalKnownHostsFile`): read on every
    /// attempt together with `known_hosts`, never written by tunneld.
    pub global_known_hosts: PathBuf,
    /// What to do with a host key that known_hosts does not have.
    pub host_key_policy: HostKeyPolicy,
    /// Like OpenSSH's `UpdateHostKeys`: after a login verified by a key of the learned
    /// `known_hosts`, record the host keys the server announces there and drop the ones it no
    /// longer offers, so that a server that rotates its keys does not lock tunneld out.
    pub update_host_keys: bool,
    /// Bound on TCP connect + SSH handshake + authentication for this hop.
    pub connect_timeout: Duration,
    /// Whether to negotiate zlib compression.
    pub compression: bool,
    /// Ciphers by OpenSSH name, most preferred first; empty means the built-in choice for this
    /// CPU (AES-GCM first with AES instructions, chacha20-poly1305 first without).
    pub ciphers: Vec<String>,
    /// When the session exchanges new keys.
    pub rekey_limit: RekeyLimit,
    /// The proxy through which this hop is reached, when it is the first (the one tunneld dials;
    /// the others are reached through the hop before them, and ignore it).
    pub proxy: Option<crate::Proxy>,
}

/// When a session exchanges new keys (OpenSSH's RekeyLimit): after `data` bytes in either
/// direction, or after `time`, whichever comes first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RekeyLimit {
    /// Bytes under one key, at most 1 GiB.
    pub data: u64,
    /// Time under one key.
    pub time: Duration,
}

impl Default for RekeyLimit {
    /// RFC 4253's recommendation: 1 GiB or an hour.
    fn default() -> Self {
        RekeyLimit {
            data: 1 << 30,
            time: Duration::from_secs(3600),
        }
    }
}

/// Where a private key (or a certificate, in `certificate_files`) comes from.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum IdentityFile {
    /// A file on disk.
    Path(PathBuf),
    /// `credential:NAME`: `$CREDENTIALS_DIRECTORY/NAME`, from systemd's `LoadCredential=`.
    Credential(String),
}

impl fmt::Display for IdentityFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdentityFile::Path(path) => write!(f, "{}", path.display()),
            IdentityFile::Credential(name) => write!(f, "credential:{name}"),
        }
    }
}

/// What to do with a server whose host key is not in known_hosts. A changed key is always
/// refused, whatever the policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostKeyPolicy {
    /// Refuse unknown hosts.
    Strict,
    /// Learn unknown hosts (append them to known_hosts), refuse changed keys.
    AcceptNew,
}

impl fmt::Display for HostKeyPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HostKeyPolicy::Strict => "strict",
            HostKeyPolicy::AcceptNew => "accept-new",
        })
    }
}

/// Keepalive settings (like `ServerAliveInterval` / `ServerAliveCountMax`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keepalive {
    /// Interval between probes; `None` when `keepalive_interval = "0s"` turned them off.
    pub interval: Option<Duration>,
    /// How many unanswered probes mean the connection is dead.
    pub max: u32,
}

impl Keepalive {
    /// How long a silent server is tolerated: `max` unanswered probes plus one interval, as
    /// `ServerAliveCountMax` counts. `None` when keepalives are off.
    pub fn dead_peer_budget(&self) -> Option<Duration> {
        self.interval
            .map(|interval| interval.saturating_mul(self.max.saturating_add(1)))
    }

    /// The backstop for a link whose writes are stuck (russh misses that case: its keepalives
    /// wait behind the stuck writes): one interval beyond [`Keepalive::dead_peer_budget`], so a
    /// merely silent server is reported by the keepalives, with their count, and this fires
    /// only when they could not. `None` when keepalives are off.
    pub fn stuck_link_budget(&self) -> Option<Duration> {
        self.interval
            .zip(self.dead_peer_budget())
            .map(|(interval, budget)| budget.saturating_add(interval))
    }
}

/// Reconnect delays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// The first reconnect delay.
    pub min: Duration,
    /// No delay is ever longer than this, jitter included.
    pub max: Duration,
    /// The longest delay after an attempt that failed before the SSH version exchange (refused,
    /// unreachable, no DNS answer): such attempts cost the server nothing, so the tunnel may
    /// probe often and come back soon after the server does. Between `min` and `max`.
    pub max_network: Duration,
}

/// The address a listener binds to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum BindAddress {
    /// No bind address was written: loopback only (`local`/`dynamic`: 127.0.0.1 and ::1;
    /// `remote`: sent to the server as `localhost`).
    Default,
    /// `*` (or an empty bind address): every interface (`remote`: sent as the empty string).
    Any,
    /// An address or host name, as written (IPv6 without its brackets).
    Host(String),
}

impl fmt::Display for BindAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BindAddress::Default => f.write_str("localhost"),
            BindAddress::Any => f.write_str("*"),
            BindAddress::Host(host) if host.contains(':') => write!(f, "[{host}]"),
            BindAddress::Host(host) => f.write_str(host),
        }
    }
}

/// A `local` forward: listen here, connect there through the server (`-L`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LocalForward {
    /// Where to listen: a port, or a Unix socket.
    pub listen: Listen,
    /// What the server connects to: a host and port (direct-tcpip), or a Unix socket on the
    /// server (direct-streamlocal@openssh.com).
    pub target: Target,
    /// The forward as written in the file, for messages.
    pub spec: String,
}

/// Where a `local` forward listens.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Listen {
    /// A TCP port (1-65535) on `bind`.
    Port {
        /// Where to listen.
        bind: BindAddress,
        /// The port to listen on.
        port: u16,
    },
    /// A Unix socket at an absolute path, created with file mode `mode` (`socket_mode`).
    Socket {
        /// The socket file.
        path: PathBuf,
        /// The socket file's permission bits.
        mode: u32,
    },
}

/// What a forwarded connection is connected to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    /// A host (IPv6 without brackets) and port.
    Port {
        /// The host name or address.
        host: String,
        /// The port.
        port: u16,
    },
    /// A Unix socket at an absolute path.
    Socket(PathBuf),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Port { host, port } if host.contains(':') => write!(f, "[{host}]:{port}"),
            Target::Port { host, port } => write!(f, "{host}:{port}"),
            Target::Socket(path) => write!(f, "{}", path.display()),
        }
    }
}

/// The mode of a socket file when `socket_mode` is not set: owner and group may connect.
pub const DEFAULT_SOCKET_MODE: u32 = 0o660;

/// A `remote` forward: the server listens, connections come back to a host we reach (`-R`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RemoteForward {
    /// Where the server listens: a port (tcpip-forward), or a Unix socket on the server
    /// (streamlocal-forward@openssh.com).
    pub listen: RemoteListen,
    /// Where this side sends each forwarded connection.
    pub target: RemoteTarget,
    /// The forward as written in the file, for messages.
    pub spec: String,
}

/// Where the server listens for a `remote` forward.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RemoteListen {
    /// A TCP port on `bind`; port 0 lets the server pick.
    Port {
        /// Where the server listens.
        bind: BindAddress,
        /// The port the server listens on.
        port: u16,
    },
    /// A Unix socket on the server, at an absolute path.
    Socket(PathBuf),
}

/// Where a `remote` forward's connections go from this side.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RemoteTarget {
    /// One fixed target (`-R [bind:]port:host:hostport`, or a Unix socket here).
    Connect(Target),
    /// Remote dynamic forwarding (`-R [bind:]port`, OpenSSH 7.6+): each connection carries a
    /// SOCKS4/4a/5 request, and this side connects wherever it asks. The server's port is a SOCKS
    /// proxy into this side's network.
    Socks,
}

/// A `dynamic` forward: a SOCKS proxy whose connections go out from the server (`-D`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DynamicForward {
    /// Where to listen.
    pub bind: BindAddress,
    /// The port to listen on (1-65535).
    pub port: u16,
    /// A private file of `user:password` lines; when set, SOCKS5 username/password
    /// authentication is required.
    pub auth_file: Option<PathBuf>,
    /// The forward as written in the file, for messages.
    pub spec: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keepalive_budgets_count_like_server_alive_count_max() {
        let k = Keepalive {
            interval: Some(Duration::from_secs(15)),
            max: 3,
        };
        assert_eq!(k.dead_peer_budget(), Some(Duration::from_secs(60)));
        assert_eq!(k.stuck_link_budget(), Some(Duration::from_secs(75)));
        let off = Keepalive {
            interval: None,
            max: 3,
        };
        assert_eq!(off.dead_peer_budget(), None);
        assert_eq!(off.stuck_link_budget(), None);
    }
}
