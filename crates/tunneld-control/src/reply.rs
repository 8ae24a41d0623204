//! Replies: the status object, the answers to reconnect and reload, and errors. The daemon
//! encodes them; `tunneld status` and friends decode them. Field names are a contract with
//! scripts: never renamed, only added to.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::VERSION;

/// The answer to `status`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatusReply {
    /// [`VERSION`].
    pub version: u32,
    /// The tunnels asked about, by name.
    pub tunnels: Vec<TunnelStatus>,
    /// Where Prometheus metrics are served; `null` when `metrics_listen` is not set.
    pub metrics: Option<Metrics>,
}

/// One tunnel.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TunnelStatus {
    /// Its name.
    pub name: String,
    /// `up`, `degraded`, `connecting`, `authenticating`, `backing-off` or `stopped`.
    pub state: String,
    /// When it entered that state (RFC 3339).
    pub since: String,
    /// The SSH connection's id while up or degraded; a new connection has a new id.
    pub connection: Option<u64>,
    /// The server connected to, or being dialled.
    pub peer: Option<String>,
    /// Why it is not up, in words.
    #[serde(default)]
    pub reason: Option<String>,
    /// While backing off: seconds until the next attempt.
    #[serde(default)]
    pub retry_in_seconds: Option<f64>,
    /// The most recent failure, kept after the tunnel recovers.
    pub last_error: Option<LastError>,
    /// How many times a failure made it connect again.
    pub reconnects: u64,
    /// The same, by the failure's class (`last_error.kind`'s values).
    #[serde(default)]
    pub reconnects_by_kind: BTreeMap<String, u64>,
    /// When the last connection came up (RFC 3339).
    #[serde(default)]
    pub last_connect: Option<String>,
    /// The round trip of the last keepalive answered.
    #[serde(default)]
    pub keepalive_rtt_seconds: Option<f64>,
    /// Each forward: local, then remote, then dynamic, as configured.
    pub forwards: Vec<ForwardStatus>,
}

/// A failure.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LastError {
    /// What went wrong, in words.
    pub message: String,
    /// Its class: `config`, `host-key`, `auth`, `forward-refused`, `network`, `timeout`.
    pub kind: String,
    /// When (RFC 3339).
    #[serde(default)]
    pub at: Option<String>,
}

/// One forward.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ForwardStatus {
    /// `local`, `remote` or `dynamic`.
    pub kind: String,
    /// The forward as written in the configuration.
    pub spec: String,
    /// Where it really listens (for a remote port-0 forward, the port the server allocated);
    /// empty while it does not.
    pub listen: Vec<String>,
    /// `up`, `requesting`, `retrying` or `down`.
    pub state: String,
    /// Why it is not up, in words.
    #[serde(default)]
    pub reason: Option<String>,
    /// Forwarded connections open now.
    pub active: u64,
    /// Forwarded connections so far.
    pub connections_total: u64,
    /// Bytes the forward's clients sent into the tunnel.
    pub bytes_in: u64,
    /// Bytes that came back out to them.
    pub bytes_out: u64,
}

/// Where metrics are served: `listen` when bound, `error` and `address` when binding failed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// The bound address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    /// The address asked for, when it could not be bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Why it could not be bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The answer to `reconnect`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReconnectReply {
    /// [`VERSION`].
    pub version: u32,
    /// The tunnels told to connect again.
    pub reconnected: Vec<String>,
}

/// The answer to a `reload` that read a valid file.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ReloadReply {
    /// [`VERSION`].
    pub version: u32,
    /// Tunnels started.
    pub added: Vec<String>,
    /// Tunnels stopped.
    pub removed: Vec<String>,
    /// Tunnels stopped and started again with their new settings.
    pub restarted: Vec<String>,
    /// Tunnels left running untouched.
    pub unchanged: Vec<String>,
    /// Changes that take effect only when the daemon restarts, in words.
    #[serde(default)]
    pub needs_restart: Vec<String>,
}

/// What went wrong with a request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorKind {
    /// The request could not be read or made no sense.
    BadRequest,
    /// A tunnel named is not running.
    UnknownTunnel,
    /// The configuration file is invalid: nothing was changed.
    Config,
    /// Too many clients at once, or the daemon is stopping.
    Busy,
}

/// An error reply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReply {
    /// Its class.
    pub kind: ErrorKind,
    /// What went wrong, in words (for `config`, `FILE:LINE:COLUMN: ...`).
    pub message: String,
}

#[derive(Serialize)]
struct ErrorEnvelope<'a> {
    version: u32,
    error: &'a ErrorReply,
}

/// A reply as one line of JSON, newline included.
pub fn encode_reply<T: Serialize>(reply: &T) -> String {
    // Plain structs of strings and numbers: serialising them cannot fail.
    let mut line = serde_json::to_string(reply).unwrap_or_else(|e| {
        encode_error(&ErrorReply {
            kind: ErrorKind::Busy,
            message: format!("cannot encode the reply: {e}"),
        })
    });
    if !line.ends_with('\n') {
        line.push('\n');
    }
    line
}

/// An error as one line of JSON, newline included.
pub fn encode_error(error: &ErrorReply) -> String {
    let envelope = ErrorEnvelope {
        version: VERSION,
        error,
    };
    let mut line = serde_json::to_string(&envelope).unwrap_or_default();
    line.push('\n');
    line
}

/// Why a reply could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReplyError {
    /// Not the JSON expected.
    #[error("the daemon's reply is not understood: {0}")]
    Malformed(String),
    /// Another protocol version.
    #[error("the daemon speaks protocol version {0}, this client version {VERSION}")]
    Version(String),
}

/// Reads a reply line: `Ok(Ok(T))`, or `Ok(Err(error))` when the daemon refused the request.
pub fn decode_reply<T: DeserializeOwned>(line: &str) -> Result<Result<T, ErrorReply>, ReplyError> {
    let value: Value =
        serde_json::from_str(line).map_err(|e| ReplyError::Malformed(e.to_string()))?;
    let version = value.get("version").cloned().unwrap_or(Value::Null);
    if version.as_u64() != Some(u64::from(VERSION)) {
        return Err(ReplyError::Version(version.to_string()));
    }
    if let Some(error) = value.get("error") {
        let error =
            ErrorReply::deserialize(error).map_err(|e| ReplyError::Malformed(e.to_string()))?;
        return Ok(Err(error));
    }
    T::deserialize(value)
        .map(Ok)
        .map_err(|e| ReplyError::Malformed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_round_trip_and_errors_are_told_apart() {
        let reload = ReloadReply {
            version: VERSION,
            added: vec!["web".to_owned()],
            ..ReloadReply::default()
        };
        let line = encode_reply(&reload);
        assert!(line.ends_with('\n'));
        assert_eq!(decode_reply::<ReloadReply>(&line).unwrap(), Ok(reload));
        let error = ErrorReply {
            kind: ErrorKind::Config,
            message: "/etc/tunneld/t.toml:3:1: bad".to_owned(),
        };
        let line = encode_error(&error);
        assert_eq!(
            line,
            "{\"version\":1,\"error\":{\"kind\":\"config\",\"message\":\"/etc/tunneld/t.toml:3:1: bad\"}}\n"
        );
        assert_eq!(decode_reply::<ReloadReply>(&line).unwrap(), Err(error));
        assert!(decode_reply::<ReloadReply>("{\"version\":2}").is_err());
    }

    #[test]
    fn metrics_shows_only_what_applies() {
        let listening = Metrics {
            listen: Some("127.0.0.1:9469".to_owned()),
            address: None,
            error: None,
        };
        assert_eq!(
            serde_json::to_string(&listening).unwrap(),
            r#"{"listen":"127.0.0.1:9469"}"#
        );
    }
}
