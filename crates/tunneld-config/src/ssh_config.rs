//! A pasted `~/.ssh/config` (`Host db` / `LocalForward 5432 localhost:5432`) is not TOML, and
//! toml's own words for it ("key with no value") do not say what happened. This recognises
//! ssh_config lines and says what the line would be in tunneld's file.

/// Where the docs are: the message must help on a machine without the source tree.
const SEE: &str = "the format is in configuration.md, in /usr/share/doc/tunneld";

/// ssh_config keywords that tunneld has an equivalent for, lowercase (ssh_config keywords are
/// case-insensitive), with the tunneld form of `ARGS`.
const TRANSLATED: &[(&str, Form)] = &[
    ("host", Form::Table("hosts")),
    ("hostname", Form::Str("hostname", Some("hosts"))),
    ("user", Form::Str("user", None)),
    ("port", Form::Int("port", Some("hosts"))),
    ("identityfile", Form::List("identity_files", None)),
    ("certificatefile", Form::List("certificate_files", None)),
    ("proxyjump", Form::List("jump", None)),
    ("localforward", Form::Forward("local")),
    ("remoteforward", Form::Forward("remote")),
    ("dynamicforward", Form::Forward("dynamic")),
    ("serveraliveinterval", Form::Seconds("keepalive_interval")),
    ("serveralivecountmax", Form::Int("keepalive_max", None)),
    ("connecttimeout", Form::Seconds("connect_timeout")),
    ("compression", Form::Bool("compression")),
    ("updatehostkeys", Form::Bool("update_host_keys")),
    ("ciphers", Form::List("ciphers", None)),
    (
        "exitonforwardfailure",
        Form::Bool("exit_on_forward_failure"),
    ),
    ("userknownhostsfile", Form::Str("known_hosts", None)),
    (
        "globalknownhostsfile",
        Form::Str("global_known_hosts", None),
    ),
];

/// The key of tunneld's file that stands for the ssh_config `keyword` (any letter case):
/// `keepalive_interval` for `ServerAliveInterval`. `None` for keywords without a direct
/// equivalent, and for `Host` (a `[hosts.NAME]` table, not a key).
pub fn equivalent_key(keyword: &str) -> Option<&'static str> {
    let lower = keyword.to_ascii_lowercase();
    TRANSLATED
        .iter()
        .find(|(name, _)| *name == lower)
        .and_then(|(_, form)| match *form {
            Form::Table(_) => None,
            Form::Str(key, _)
            | Form::Int(key, _)
            | Form::List(key, _)
            | Form::Forward(key)
            | Form::Seconds(key)
            | Form::Bool(key) => Some(key),
        })
}

/// Other keywords common in a `~/.ssh/config`, recognised without an equivalent to offer.
const RECOGNISED: &[&str] = &[
    "match",
    "include",
    "proxycommand",
    "identitiesonly",
    "identityagent",
    "forwardagent",
    "addkeystoagent",
    "stricthostkeychecking",
    "gatewayports",
    "requesttty",
    "sessiontype",
    "remotecommand",
    "loglevel",
    "batchmode",
    "controlmaster",
    "controlpath",
    "controlpersist",
    "tcpkeepalive",
    "pubkeyauthentication",
    "passwordauthentication",
    "preferredauthentications",
    "hostkeyalgorithms",
    "kexalgorithms",
    "macs",
    "forwardx11",
    "sendenv",
    "setenv",
    "addressfamily",
];

/// Keys of tunneld's own file: `host db` in lowercase is more likely a TOML key with its `=`
/// missing than ssh_config, unless it is written the ssh_config way, with capitals.
const TUNNELD_KEYS: &[&str] = &["host", "hostname", "user", "port", "compression", "ciphers"];

#[derive(Clone, Copy)]
enum Form {
    /// `[SECTION.ARG]`.
    Table(&'static str),
    /// `KEY = "ARG"`, in a `[SECTION.NAME]` table when one is named.
    Str(&'static str, Option<&'static str>),
    /// `KEY = ARG`.
    Int(&'static str, Option<&'static str>),
    /// `KEY = ["ARG", ...]` (ssh separates `ProxyJump` and `Ciphers` with commas).
    List(&'static str, Option<&'static str>),
    /// `KEY = ["A:B"]` in a `[tunnels.NAME]` table: ssh's `[bind:]port host:hostport`.
    Forward(&'static str),
    /// `KEY = "ARGs"`: ssh counts these in seconds.
    Seconds(&'static str),
    /// `KEY = true` for `yes`.
    Bool(&'static str),
}

/// If the line of `text` that holds byte `at` reads as an ssh_config line, where the line's
/// keyword starts and a message that says so.
pub(crate) fn recognise(text: &str, at: usize) -> Option<(usize, String)> {
    let mut at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    let start = text.get(..at)?.rfind('\n').map_or(0, |nl| nl + 1);
    let end = text.get(at..)?.find('\n').map_or(text.len(), |nl| at + nl);
    let line = text.get(start..end)?;
    let indent = line.len() - line.trim_start().len();
    let line = line.trim();
    let split = line.find(|c: char| c.is_whitespace() || c == '=')?;
    let (keyword, args) = line.split_at(split);
    let args = args.trim_start().strip_prefix('=').unwrap_or(args).trim();
    let lower = keyword.to_ascii_lowercase();
    let capitalised = keyword.chars().any(|c| c.is_ascii_uppercase());
    if args.is_empty() || (!capitalised && TUNNELD_KEYS.contains(&lower.as_str())) {
        return None;
    }
    let translated = TRANSLATED.iter().find(|(name, _)| *name == lower);
    if translated.is_none() && !RECOGNISED.contains(&lower.as_str()) {
        return None;
    }
    let expected = translated
        .and_then(|(_, form)| tunneld_form(*form, args))
        .unwrap_or_else(|| "[hosts.NAME] and [tunnels.NAME] tables".to_owned());
    Some((
        start + indent,
        format!(
            "{line:?} looks like ssh_config syntax, but this file is TOML with keys of its own \
             (expected {expected}; {SEE})"
        ),
    ))
}

/// What `ARGS` of a keyword would be in tunneld's file; `None` when they do not fit.
fn tunneld_form(form: Form, args: &str) -> Option<String> {
    let words: Vec<&str> = args.split_whitespace().collect();
    let one = || match words.as_slice() {
        [word] => Some(*word),
        _ => None,
    };
    let within = |section: Option<&str>| {
        section.map_or(String::new(), |s| format!(" in a [{s}.NAME] table"))
    };
    Some(match form {
        Form::Table(section) => {
            let name = one()?;
            let plain = name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'));
            plain.then(|| format!("a [{section}.{name}] table"))?
        }
        Form::Str(key, section) => format!("{key} = {:?}{}", one()?, within(section)),
        Form::Int(key, section) => {
            let number = one()?;
            number.bytes().all(|b| b.is_ascii_digit()).then_some(())?;
            format!("{key} = {number}{}", within(section))
        }
        Form::List(key, section) => {
            let items: Vec<String> = one()?.split(',').map(|item| format!("{item:?}")).collect();
            format!("{key} = [{}]{}", items.join(", "), within(section))
        }
        Form::Forward(key) => format!("{key} = [{:?}] in a [tunnels.NAME] table", words.join(":")),
        Form::Seconds(key) => {
            let seconds = one()?;
            seconds.bytes().all(|b| b.is_ascii_digit()).then_some(())?;
            format!("{key} = \"{seconds}s\"")
        }
        Form::Bool(key) => match one()? {
            "yes" => format!("{key} = true"),
            "no" => format!("{key} = false"),
            _ => return None,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expected(line: &str) -> Option<String> {
        let (at, message) = recognise(line, 0)?;
        assert_eq!(at, line.len() - line.trim_start().len(), "{line}");
        let prefix = format!(
            "{:?} looks like ssh_config syntax, but this file is TOML with keys of its own \
             (expected ",
            line.trim()
        );
        let rest = message.strip_prefix(&prefix).unwrap_or(&message);
        Some(
            rest.strip_suffix(&format!("; {SEE})"))
                .unwrap_or(rest)
                .to_owned(),
        )
    }

    #[test]
    fn ssh_config_lines_and_what_they_would_be() {
        let table = [
            ("Host db", "a [hosts.db] table"),
            (
                "Host *.example.com",
                "[hosts.NAME] and [tunnels.NAME] tables",
            ),
            (
                "  HostName 192.0.2.5",
                "hostname = \"192.0.2.5\" in a [hosts.NAME] table",
            ),
            ("\tUser admin", "user = \"admin\""),
            ("Port 2222", "port = 2222 in a [hosts.NAME] table"),
            ("Port=2222", "port = 2222 in a [hosts.NAME] table"),
            (
                "IdentityFile /etc/tunneld/keys/db",
                "identity_files = [\"/etc/tunneld/keys/db\"]",
            ),
            ("ProxyJump a,b", "jump = [\"a\", \"b\"]"),
            (
                "LocalForward 5432 localhost:5432",
                "local = [\"5432:localhost:5432\"] in a [tunnels.NAME] table",
            ),
            (
                "RemoteForward 127.0.0.1:9000 localhost:3000",
                "remote = [\"127.0.0.1:9000:localhost:3000\"] in a [tunnels.NAME] table",
            ),
            (
                "DynamicForward 1080",
                "dynamic = [\"1080\"] in a [tunnels.NAME] table",
            ),
            ("ServerAliveInterval 15", "keepalive_interval = \"15s\""),
            ("ServerAliveCountMax 3", "keepalive_max = 3"),
            ("Compression yes", "compression = true"),
            ("ExitOnForwardFailure yes", "exit_on_forward_failure = true"),
            (
                "Compression maybe",
                "[hosts.NAME] and [tunnels.NAME] tables",
            ),
            (
                "ProxyCommand ssh -W %h:%p gw",
                "[hosts.NAME] and [tunnels.NAME] tables",
            ),
            ("match host db", "[hosts.NAME] and [tunnels.NAME] tables"),
        ];
        for (line, form) in table {
            assert_eq!(expected(line).as_deref(), Some(form), "{line}");
        }
    }

    #[test]
    fn equivalent_keys() {
        assert_eq!(
            equivalent_key("ServerAliveInterval"),
            Some("keepalive_interval")
        );
        assert_eq!(equivalent_key("LOCALFORWARD"), Some("local"));
        assert_eq!(equivalent_key("Host"), None);
        assert_eq!(equivalent_key("ForwardAgent"), None);
    }

    #[test]
    fn other_lines_are_left_to_toml() {
        for line in [
            "host db",
            "user admin",
            "Host",
            "local 5432",
            "[tunnels.db]",
            "",
            "Hostname",
            "zzz yyy",
        ] {
            assert_eq!(recognise(line, 0), None, "{line}");
        }
        // The line that holds the offset is the one read, and offsets past the end are safe.
        let text = "[tunnels.db]\nLocalForward 1 h:1\n";
        let (at, _) = recognise(text, 20).unwrap_or_default();
        assert_eq!(at, 13);
        assert_eq!(recognise(text, 1000), None);
        assert_eq!(recognise("Host é", 6).map(|(at, _)| at), Some(0));
    }
}
