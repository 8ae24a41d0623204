//! toml's errors in the file's own words: placed at their key (found from the span), with what
//! was expected said in tunneld's terms ("a port number (1-65535)", not serde's "i64"), and a
//! pasted ssh_config recognised as such.

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::error::{ConfigError, Key, Source};
use crate::ssh_config;

/// A TOML syntax error: toml's message, unless the line is ssh_config.
pub(crate) fn syntax(source: &Source<'_>, error: &toml::de::Error) -> ConfigError {
    let span = error.span().unwrap_or(0..0);
    if let Some((at, message)) = ssh_config::recognise(source.text, span.start) {
        return source.error(&(at..at), "", message);
    }
    source.error(&span, "", error.message().trim_end())
}

/// A type error or an unknown key, from deserialising the document: placed at its key, and
/// reworded where serde's words are jargon.
pub(crate) fn typed(source: &Source<'_>, error: &toml::de::Error) -> ConfigError {
    let span = error.span().unwrap_or(0..0);
    let mut path = Vec::new();
    if let (Some(span), Ok(document)) = (error.span(), DeTable::parse(source.text)) {
        locate_in_table(document.get_ref(), span.start, &mut path);
    }
    let key = path.iter().fold(Key::default(), |key, step| match step {
        Step::Field(name) => key.field(name),
        Step::Index(index) => key.index(*index),
    });
    if key == Key::root("defaults").field("jump") {
        return source.error(
            &span,
            key,
            "jump is not allowed in [defaults] (expected jump in [hosts.NAME] or \
             [tunnels.NAME]; a jump host never inherits it)",
        );
    }
    // A top-level key that is not a table: `Port = 22` is valid TOML, and ssh_config too.
    if let [Step::Field(_)] = path.as_slice()
        && error.message().starts_with("unknown field")
        && let Some((at, message)) = ssh_config::recognise(source.text, span.start)
    {
        return source.error(&(at..at), key, message);
    }
    source.error(&span, key, reword(error.message().trim_end(), &path))
}

/// serde's "invalid type: FOUND, expected WHAT" with WHAT in tunneld's terms for the key at
/// `path`; any other message as it is.
fn reword(message: &str, path: &[Step]) -> String {
    let Some((found, _)) = message
        .strip_prefix("invalid type: ")
        .and_then(|rest| rest.rsplit_once(", expected "))
    else {
        return message.to_owned();
    };
    let Some(expected) = expectation(path) else {
        return message.to_owned();
    };
    // `port = "22"`, `compression = "true"`: the right value, in quotes.
    let quoted = found
        .strip_prefix("string \"")
        .and_then(|s| s.strip_suffix('"'))
        .is_some_and(|s| match expected {
            Expected::Number(_) => !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()),
            Expected::Bool => s == "true" || s == "false",
            Expected::Other(_) => false,
        });
    let unquote = if quoted { ", without quotes" } else { "" };
    format!("invalid type: {found}, expected {expected}{unquote}")
}

enum Expected {
    Number(&'static str),
    Bool,
    Other(String),
}

impl std::fmt::Display for Expected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Expected::Number(what) => f.write_str(what),
            Expected::Bool => f.write_str("true or false"),
            Expected::Other(what) => f.write_str(what),
        }
    }
}

/// What the value at `path` must be, with an example; `None` where serde's words already say it
/// (durations and `dynamic` elements have their own).
fn expectation(path: &[Step]) -> Option<Expected> {
    let other = |s: &str| Some(Expected::Other(s.to_owned()));
    let list = |example: &str| other(&format!("a list of strings like [{example:?}]"));
    let string = |example: &str| other(&format!("a string like {example:?}"));
    match path {
        [Step::Field(section)] => match section.as_str() {
            "defaults" => other("a [defaults] table"),
            "hosts" => other("[hosts.NAME] tables"),
            "tunnels" => other("[tunnels.NAME] tables"),
            _ => None,
        },
        [Step::Field(section), Step::Field(name)] if section == "hosts" || section == "tunnels" => {
            other(&format!("a [{}] table", Key::root(section).field(name)))
        }
        [.., Step::Field(key), Step::Index(_)] => match key.as_str() {
            "local" => string("5432:localhost:5432"),
            "remote" => string("9000:localhost:3000"),
            "identity_files" => string("/etc/tunneld/keys/id_ed25519"),
            "certificate_files" => string("/etc/tunneld/keys/id_ed25519-cert.pub"),
            "ciphers" => string("aes128-gcm@openssh.com"),
            "jump" => string("bastion"),
            _ => None,
        },
        [.., Step::Field(key)] => match key.as_str() {
            "port" => Some(Expected::Number("a port number (1-65535)")),
            "keepalive_max" => Some(Expected::Number("a whole number, 1 or more")),
            "use_agent" | "compression" => Some(Expected::Bool),
            "local" => list("5432:localhost:5432"),
            "remote" => list("9000:localhost:3000"),
            "dynamic" => {
                other(r#"a list like ["1080"] or [{ listen = "1080", auth_file = "PATH" }]"#)
            }
            "identity_files" => list("/etc/tunneld/keys/id_ed25519"),
            "certificate_files" => list("/etc/tunneld/keys/id_ed25519-cert.pub"),
            "ciphers" => list("aes128-gcm@openssh.com"),
            "jump" => list("bastion"),
            "user" => string("tunnel"),
            "hostname" => string("db.example.com"),
            "host" => other(r#"a string like "db-server" or "admin@db.example.com:2222""#),
            "known_hosts" => string("/var/lib/tunneld/known_hosts"),
            "global_known_hosts" => string("/etc/tunneld/known_hosts"),
            "proxy" => other(
                r#"a string like "http://proxy.example.com:3128" or "socks5://127.0.0.1:1080""#,
            ),
            "host_key_policy" => other(r#""strict" or "accept-new""#),
            "listen" => string("127.0.0.1:1080"),
            "auth_file" => string("/etc/tunneld/socks-users"),
            _ => None,
        },
        _ => None,
    }
}

/// One step of a key path.
enum Step {
    Field(String),
    Index(usize),
}

/// Finds the innermost key or value whose span contains byte `at`, pushing the path to it.
fn locate_in_table(table: &DeTable<'_>, at: usize, path: &mut Vec<Step>) -> bool {
    for (key, value) in table.iter() {
        path.push(Step::Field(key.get_ref().to_string()));
        if key.span().contains(&at) || locate_in_value(value, at, path) {
            return true;
        }
        path.pop();
    }
    false
}

fn locate_in_value(value: &Spanned<DeValue<'_>>, at: usize, path: &mut Vec<Step>) -> bool {
    let inner = match value.get_ref() {
        DeValue::Table(table) => locate_in_table(table, at, path),
        DeValue::Array(array) => array.iter().enumerate().any(|(index, element)| {
            path.push(Step::Index(index));
            let found = locate_in_value(element, at, path);
            if !found {
                path.pop();
            }
            found
        }),
        _ => false,
    };
    inner || value.span().contains(&at)
}
