//! The file as written: serde types that mirror the TOML with spans and refuse unknown keys.
//! Nothing here is checked beyond TOML types; `resolve` turns it into the model.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use toml::Spanned;
use toml::de::DeTable;

use crate::error::{ConfigError, Source};
use crate::toml_error;

/// An optional value and where it was written.
pub(crate) type Opt<T> = Option<Spanned<T>>;

/// The settings that `[defaults]`, `[hosts.*]` and `[tunnels.*]` share, borrowed from one of them.
#[derive(Clone, Copy)]
pub(crate) struct Common<'a> {
    pub(crate) user: Option<&'a Spanned<String>>,
    pub(crate) identity_files: Option<&'a Spanned<Vec<Spanned<String>>>>,
    pub(crate) certificate_files: Option<&'a Spanned<Vec<Spanned<String>>>>,
    pub(crate) use_agent: Option<&'a Spanned<bool>>,
    pub(crate) known_hosts: Option<&'a Spanned<String>>,
    pub(crate) global_known_hosts: Option<&'a Spanned<String>>,
    pub(crate) host_key_policy: Option<&'a Spanned<String>>,
    pub(crate) update_host_keys: Option<&'a Spanned<bool>>,
    pub(crate) keepalive_interval: Option<&'a Spanned<RawDuration>>,
    pub(crate) keepalive_max: Option<&'a Spanned<i64>>,
    pub(crate) connect_timeout: Option<&'a Spanned<RawDuration>>,
    pub(crate) backoff_min: Option<&'a Spanned<RawDuration>>,
    pub(crate) backoff_max: Option<&'a Spanned<RawDuration>>,
    pub(crate) backoff_max_network: Option<&'a Spanned<RawDuration>>,
    pub(crate) compression: Option<&'a Spanned<bool>>,
    pub(crate) ciphers: Option<&'a Spanned<Vec<Spanned<String>>>>,
    pub(crate) exit_on_forward_failure: Option<&'a Spanned<bool>>,
    pub(crate) rekey_limit: Option<&'a Spanned<String>>,
    pub(crate) proxy: Option<&'a Spanned<String>>,
}

/// Declares a section struct with the shared settings plus its own keys. serde's `flatten` cannot
/// be combined with `deny_unknown_fields` or spans, hence a macro.
macro_rules! section {
    ($(#[$meta:meta])* $name:ident { $($(#[$fmeta:meta])* $field:ident: $ty:ty,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Default, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub(crate) struct $name {
            user: Opt<String>,
            identity_files: Opt<Vec<Spanned<String>>>,
            certificate_files: Opt<Vec<Spanned<String>>>,
            use_agent: Opt<bool>,
            known_hosts: Opt<String>,
            global_known_hosts: Opt<String>,
            host_key_policy: Opt<String>,
            update_host_keys: Opt<bool>,
            keepalive_interval: Opt<RawDuration>,
            keepalive_max: Opt<i64>,
            connect_timeout: Opt<RawDuration>,
            backoff_min: Opt<RawDuration>,
            backoff_max: Opt<RawDuration>,
            backoff_max_network: Opt<RawDuration>,
            compression: Opt<bool>,
            ciphers: Opt<Vec<Spanned<String>>>,
            exit_on_forward_failure: Opt<bool>,
            rekey_limit: Opt<String>,
            proxy: Opt<String>,
            $($(#[$fmeta])* pub(crate) $field: $ty,)*
        }

        impl $name {
            /// The shared settings of this section.
            pub(crate) fn common(&self) -> Common<'_> {
                Common {
                    user: self.user.as_ref(),
                    identity_files: self.identity_files.as_ref(),
                    certificate_files: self.certificate_files.as_ref(),
                    use_agent: self.use_agent.as_ref(),
                    known_hosts: self.known_hosts.as_ref(),
                    global_known_hosts: self.global_known_hosts.as_ref(),
                    host_key_policy: self.host_key_policy.as_ref(),
                    update_host_keys: self.update_host_keys.as_ref(),
                    keepalive_interval: self.keepalive_interval.as_ref(),
                    keepalive_max: self.keepalive_max.as_ref(),
                    connect_timeout: self.connect_timeout.as_ref(),
                    backoff_min: self.backoff_min.as_ref(),
                    backoff_max: self.backoff_max.as_ref(),
                    backoff_max_network: self.backoff_max_network.as_ref(),
                    compression: self.compression.as_ref(),
                    ciphers: self.ciphers.as_ref(),
                    exit_on_forward_failure: self.exit_on_forward_failure.as_ref(),
                    rekey_limit: self.rekey_limit.as_ref(),
                    proxy: self.proxy.as_ref(),
                }
            }
        }
    };
}

section! {
    /// `[defaults]`.
    RawDefaults {}
}

section! {
    /// `[hosts.NAME]`.
    RawHost {
        hostname: Opt<String>,
        port: Opt<i64>,
        jump: Opt<Vec<Spanned<String>>>,
    }
}

section! {
    /// `[tunnels.NAME]`.
    RawTunnel {
        host: Opt<String>,
        jump: Opt<Vec<Spanned<String>>>,
        local: Opt<Vec<Spanned<String>>>,
        remote: Opt<Vec<Spanned<String>>>,
        dynamic: Opt<Vec<Spanned<RawDynamic>>>,
        socket_mode: Opt<String>,
    }
}

/// `[daemon]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDaemon {
    pub(crate) control_socket: Opt<String>,
    pub(crate) metrics_listen: Opt<String>,
}

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFile {
    pub(crate) daemon: Opt<RawDaemon>,
    pub(crate) defaults: Opt<RawDefaults>,
    pub(crate) hosts: Opt<BTreeMap<Spanned<String>, Spanned<RawHost>>>,
    pub(crate) tunnels: Opt<BTreeMap<Spanned<String>, Spanned<RawTunnel>>>,
}

/// A duration as written: a string (which must carry a unit) or a bare number (an error, but one
/// that deserves a better message than "expected a string").
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum RawDuration {
    Text(String),
    Number(String),
}

impl<'de> Deserialize<'de> for RawDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DurationVisitor;
        impl Visitor<'_> for DurationVisitor {
            type Value = RawDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#"a duration with a unit, like "500ms", "15s", "2m" or "1h""#)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawDuration, E> {
                Ok(RawDuration::Text(v.to_owned()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawDuration, E> {
                Ok(RawDuration::Number(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawDuration, E> {
                Ok(RawDuration::Number(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<RawDuration, E> {
                Ok(RawDuration::Number(v.to_string()))
            }
        }
        deserializer.deserialize_any(DurationVisitor)
    }
}

/// A `dynamic` forward as written: `"[bind:]port"` or `{ listen = "...", auth_file = "..." }`.
#[derive(Debug)]
pub(crate) enum RawDynamic {
    Spec(String),
    Table(RawSocks),
}

/// The table form of a `dynamic` forward.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSocks {
    pub(crate) listen: Opt<String>,
    pub(crate) auth_file: Opt<String>,
}

impl<'de> Deserialize<'de> for RawDynamic {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DynamicVisitor;
        impl<'de> Visitor<'de> for DynamicVisitor {
            type Value = RawDynamic;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#""[bind:]port" or { listen = "[bind:]port", auth_file = "PATH" }"#)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawDynamic, E> {
                Ok(RawDynamic::Spec(v.to_owned()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawDynamic, A::Error> {
                RawSocks::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(RawDynamic::Table)
            }
        }
        deserializer.deserialize_any(DynamicVisitor)
    }
}

/// Parses the TOML of `source` into the raw layer. Errors are placed at their key and worded in
/// the file's terms (`toml_error`).
pub(crate) fn parse(source: &Source<'_>) -> Result<RawFile, ConfigError> {
    let document = DeTable::parse(source.text).map_err(|e| toml_error::syntax(source, &e))?;
    RawFile::deserialize(toml::de::Deserializer::from(document))
        .map_err(|e| toml_error::typed(source, &e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn error(text: &str) -> String {
        let source = Source {
            path: Path::new("t.toml"),
            text,
        };
        match parse(&source) {
            Ok(_) => "ok".to_owned(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn places_serde_errors_at_their_key() {
        assert_eq!(
            error("[hosts.b]\nport = \"22\"\n"),
            "t.toml:2:8: hosts.b.port: invalid type: string \"22\", expected a port number \
             (1-65535), without quotes"
        );
        assert_eq!(
            error("tunnels = { db = { host = \"h\", lokal = [] } }\n"),
            "t.toml:1:32: tunnels.db.lokal: unknown field `lokal`, expected one of `user`, \
             `identity_files`, `certificate_files`, `use_agent`, `known_hosts`, `global_known_hosts`, \
             `host_key_policy`, `update_host_keys`, `keepalive_interval`, `keepalive_max`, `connect_timeout`, `backoff_min`, \
             `backoff_max`, `backoff_max_network`, `compression`, `ciphers`, `exit_on_forward_failure`, `rekey_limit`, `proxy`, `host`, `jump`, \
             `local`, `remote`, `dynamic`, `socket_mode`"
        );
        assert_eq!(
            error("[tunnels.t]\ndynamic = [\"1\", { listen = \"1\", auth = \"x\" }]\n"),
            "t.toml:2:33: tunnels.t.dynamic[1].auth: unknown field `auth`, expected `listen` or \
             `auth_file`"
        );
        assert_eq!(
            error("[tunnels.t]\ndynamic = [1080]\n"),
            "t.toml:2:12: tunnels.t.dynamic[0]: invalid type: integer `1080`, expected \
             \"[bind:]port\" or { listen = \"[bind:]port\", auth_file = \"PATH\" }"
        );
        assert_eq!(
            error("hosts = 3\n"),
            "t.toml:1:9: hosts: invalid type: integer `3`, expected [hosts.NAME] tables"
        );
    }

    #[test]
    fn keeps_toml_syntax_messages() {
        let message = error("[tunnels.db]\nhost = \"a\"\nhost = \"b\"\n");
        assert_eq!(message, "t.toml:3:1: duplicate key");
        let message = error("[tunnels.db\n");
        assert!(message.starts_with("t.toml:1:12: "), "{message}");
    }

    #[test]
    fn durations_accept_numbers_for_a_better_message() {
        let raw = toml::from_str::<RawDefaults>("keepalive_interval = 15\nbackoff_min = 1.5\n");
        let raw = raw.unwrap();
        let common = raw.common();
        assert_eq!(
            common.keepalive_interval.map(|d| d.get_ref().clone()),
            Some(RawDuration::Number("15".to_owned()))
        );
        assert_eq!(
            common.backoff_min.map(|d| d.get_ref().clone()),
            Some(RawDuration::Number("1.5".to_owned()))
        );
    }
}
