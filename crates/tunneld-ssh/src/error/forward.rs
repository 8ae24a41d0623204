//! Failures of one forward on a live connection: they end a forwarded connection or a remote
//! forward's request, not the connection.

use std::time::Duration;

use russh::ChannelOpenFailure;

/// Why a forwarded connection could not be opened through the server.
#[derive(Debug, thiserror::Error)]
pub enum ChannelOpenError {
    /// The server answered no.
    #[error("connection to {target} via {server} refused by the server ({})", describe_failure(.reason, .description.as_deref()))]
    Refused {
        /// `host:port` that was asked for.
        target: String,
        /// The server's label.
        server: String,
        /// The server's reason.
        reason: ChannelOpenFailure,
        /// The server's words, when it gave any ("Connection refused").
        description: Option<String>,
    },
    /// The server did not answer in time (it may be waiting on its own TCP connect).
    #[error("connection to {target} via {server}: no answer from the server within {}s", .after.as_secs())]
    Timeout {
        /// `host:port` that was asked for.
        target: String,
        /// The server's label.
        server: String,
        /// The timeout that ran out.
        after: Duration,
    },
    /// The SSH connection is gone.
    #[error("connection to {target} via {server}: the SSH connection closed")]
    Closed {
        /// `host:port` that was asked for.
        target: String,
        /// The server's label.
        server: String,
    },
}

/// Why the server did not grant a remote forward.
#[derive(Debug, thiserror::Error)]
pub enum RemoteForwardError {
    /// The server refuses remote forwarding altogether (a port-0 request is refused too):
    /// retrying cannot help until its configuration changes.
    #[error(
        "{server} refuses remote port forwarding of {spec} (AllowTcpForwarding / PermitListen / permitlisten)"
    )]
    Policy {
        /// The server's label.
        server: String,
        /// The forward as written.
        spec: String,
    },
    /// This port is refused while others would be granted: most often the server still holds
    /// it for a previous session that it has not expired yet; or another process uses it there,
    /// or this port number alone is not permitted.
    #[error(
        "remote port {port} still held by a previous session on the server (or in use there); retrying"
    )]
    PortBusy {
        /// The port asked for.
        port: u16,
    },
    /// The server refused to listen on a Unix socket after it granted it on an earlier
    /// connection: sshd without `StreamLocalBindUnlink yes` finds the socket file of the
    /// previous session there, and refuses every reconnect.
    #[error(
        "the server still has {path} from the previous connection; set StreamLocalBindUnlink yes in sshd_config"
    )]
    StaleSocket {
        /// The socket path on the server.
        path: String,
    },
    /// The server refused to listen on a Unix socket (streamlocal-forward).
    #[error(
        "{server} refused to listen on {path}: a socket file left there by an earlier connection (set StreamLocalBindUnlink yes in sshd_config), AllowStreamLocalForwarding, or the directory's permissions"
    )]
    SocketRefused {
        /// The server's label.
        server: String,
        /// The socket path on the server.
        path: String,
    },
    /// The server did not answer in time.
    #[error("{server} did not answer the request for remote {what} within {}s", .after.as_secs())]
    Timeout {
        /// The server's label.
        server: String,
        /// What was asked for: `port N` or `socket PATH`.
        what: String,
        /// The timeout that ran out.
        after: Duration,
    },
    /// The SSH connection is gone.
    #[error("the SSH connection closed")]
    Closed,
}

fn describe_failure(reason: &ChannelOpenFailure, description: Option<&str>) -> String {
    match reason {
        ChannelOpenFailure::AdministrativelyProhibited => {
            "administratively prohibited: AllowTcpForwarding / permitopen".to_string()
        }
        ChannelOpenFailure::ConnectFailed => match description {
            Some(text) if !text.is_empty() => format!("connect failed: {text}"),
            _ => "connect failed".to_string(),
        },
        ChannelOpenFailure::UnknownChannelType => "unknown channel type".to_string(),
        ChannelOpenFailure::ResourceShortage => "resource shortage".to_string(),
        ChannelOpenFailure::Other { code, reason } => format!("{reason} (code {code})"),
    }
}
