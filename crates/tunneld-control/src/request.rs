//! Requests: what a client may ask, and the parser that reads them off the socket.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::VERSION;

/// The longest request line accepted, newline excluded. Real requests are a few hundred bytes;
/// the bound keeps a client from making the daemon buffer without end.
pub const MAX_REQUEST: usize = 64 * 1024;

/// The most tunnel names one request may carry.
pub const MAX_NAMES: usize = 4096;

/// What a client asks the daemon.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// Every tunnel's status, or only the tunnels named.
    Status {
        /// The tunnels asked about; empty for all.
        tunnels: Vec<String>,
    },
    /// Drop the named tunnels' connections and connect again now.
    Reconnect {
        /// The tunnels; empty for all (sent as `"all": true`, never as an empty list, so that a
        /// client that lost its arguments cannot reconnect everything by accident).
        tunnels: Vec<String>,
    },
    /// Read the configuration file again, as SIGHUP does.
    Reload,
}

/// Why a request was refused. The message goes back to the client.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// Longer than [`MAX_REQUEST`].
    #[error("request longer than {MAX_REQUEST} bytes")]
    TooLong,
    /// Not JSON, or not an object.
    #[error("not a JSON object: {0}")]
    NotJson(String),
    /// No `version`, or one this daemon does not speak.
    #[error("unsupported protocol version {0} (this daemon speaks version {VERSION})")]
    Version(String),
    /// The fields do not make a request.
    #[error("{0}")]
    Invalid(String),
}

/// The fields of a version 1 request. Unknown fields are refused: a misspelt `tunnels` must not
/// turn into "every tunnel".
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[allow(dead_code)] // checked before this is read
    version: Value,
    command: String,
    #[serde(default)]
    tunnels: Option<Vec<String>>,
    #[serde(default)]
    all: Option<bool>,
}

/// Parses one request line (without its newline).
pub fn parse_request(line: &[u8]) -> Result<Request, RequestError> {
    if line.len() > MAX_REQUEST {
        return Err(RequestError::TooLong);
    }
    // serde_json bounds nesting (128 levels), so no input makes this recurse without end.
    let value: Value =
        serde_json::from_slice(line).map_err(|e| RequestError::NotJson(e.to_string()))?;
    let Value::Object(map) = value else {
        return Err(RequestError::NotJson("expected an object".to_owned()));
    };
    // The version first: a newer client's request is answered with "unsupported version",
    // not with whatever its new fields would make of it.
    match map.get("version") {
        Some(Value::Number(n)) if n.as_u64() == Some(u64::from(VERSION)) => {}
        Some(other) => return Err(RequestError::Version(other.to_string())),
        None => return Err(RequestError::Version("(missing)".to_owned())),
    }
    let raw: Raw = serde_json::from_value(Value::Object(map))
        .map_err(|e| RequestError::Invalid(e.to_string()))?;
    let tunnels = raw.tunnels.unwrap_or_default();
    if tunnels.len() > MAX_NAMES {
        return Err(RequestError::Invalid(format!(
            "more than {MAX_NAMES} tunnel names"
        )));
    }
    match (raw.command.as_str(), raw.all) {
        ("status", None) => Ok(Request::Status { tunnels }),
        ("reconnect", Some(true)) if tunnels.is_empty() => Ok(Request::Reconnect { tunnels }),
        ("reconnect", None) if !tunnels.is_empty() => Ok(Request::Reconnect { tunnels }),
        ("reconnect", _) => Err(RequestError::Invalid(
            "reconnect needs either \"tunnels\": [NAME, ...] or \"all\": true".to_owned(),
        )),
        ("reload", None) if tunnels.is_empty() => Ok(Request::Reload),
        ("status" | "reload", Some(_)) | ("reload", None) => Err(RequestError::Invalid(format!(
            "{} takes no {}",
            raw.command,
            if raw.all.is_some() {
                "\"all\""
            } else {
                "\"tunnels\""
            }
        ))),
        (other, _) => Err(RequestError::Invalid(format!(
            "unknown command {other:?} (expected status, reconnect or reload)"
        ))),
    }
}

impl Request {
    /// The request as one line of JSON, newline included.
    pub fn to_line(&self) -> String {
        let (command, tunnels) = match self {
            Request::Status { tunnels } => ("status", tunnels.as_slice()),
            Request::Reconnect { tunnels } => ("reconnect", tunnels.as_slice()),
            Request::Reload => ("reload", &[][..]),
        };
        let all = (tunnels.is_empty() && matches!(self, Request::Reconnect { .. })).then_some(true);
        let wire = Wire {
            version: VERSION,
            command,
            tunnels,
            all,
        };
        // Strings and numbers only: serialising cannot fail.
        let mut line = serde_json::to_string(&wire).unwrap_or_default();
        line.push('\n');
        line
    }
}

/// A request as sent.
#[derive(Serialize)]
struct Wire<'a> {
    version: u32,
    command: &'a str,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    tunnels: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    all: Option<bool>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Request, RequestError> {
        parse_request(text.as_bytes())
    }

    #[test]
    fn requests_parse_and_encode_back() {
        let names = |n: &[&str]| n.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let cases = [
            (
                r#"{"version":1,"command":"status"}"#,
                Request::Status { tunnels: vec![] },
            ),
            (
                r#"{"version":1,"command":"status","tunnels":["db","web"]}"#,
                Request::Status {
                    tunnels: names(&["db", "web"]),
                },
            ),
            (
                r#"{"version":1,"command":"reconnect","all":true}"#,
                Request::Reconnect { tunnels: vec![] },
            ),
            (
                r#"{"version":1,"command":"reconnect","tunnels":["db"]}"#,
                Request::Reconnect {
                    tunnels: names(&["db"]),
                },
            ),
            (r#"{"version":1,"command":"reload"}"#, Request::Reload),
        ];
        for (text, expected) in cases {
            assert_eq!(parse(text), Ok(expected.clone()), "{text}");
            let line = expected.to_line();
            assert_eq!(line.strip_suffix('\n'), Some(text), "{expected:?}");
        }
    }

    #[test]
    fn bad_requests_are_refused_with_a_reason() {
        let refused = |text: &str| parse(text).unwrap_err().to_string();
        assert!(refused("garbage").starts_with("not a JSON object"));
        assert_eq!(refused("[1]"), "not a JSON object: expected an object");
        assert_eq!(
            refused(r#"{"command":"status"}"#),
            "unsupported protocol version (missing) (this daemon speaks version 1)"
        );
        assert!(refused(r#"{"version":2,"command":"status","new":1}"#).contains("version 2"));
        assert!(refused(r#"{"version":"1","command":"status"}"#).contains("\"1\""));
        assert!(
            refused(r#"{"version":1,"command":"status","tunnel":["db"]}"#)
                .contains("unknown field `tunnel`")
        );
        assert!(refused(r#"{"version":1,"command":"reconnect"}"#).contains("\"all\": true"));
        assert!(refused(r#"{"version":1,"command":"reconnect","tunnels":[]}"#).contains("all"));
        assert!(
            refused(r#"{"version":1,"command":"reconnect","all":true,"tunnels":["a"]}"#)
                .contains("either")
        );
        assert_eq!(
            refused(r#"{"version":1,"command":"reload","tunnels":["a"]}"#),
            "reload takes no \"tunnels\""
        );
        assert!(refused(r#"{"version":1,"command":"stop"}"#).contains("unknown command \"stop\""));
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(refused(&deep).starts_with("not a JSON object"));
        let long = format!(
            r#"{{"version":1,"command":"status","tunnels":["{}"]}}"#,
            "a".repeat(MAX_REQUEST)
        );
        assert_eq!(parse(&long), Err(RequestError::TooLong));
    }
}
