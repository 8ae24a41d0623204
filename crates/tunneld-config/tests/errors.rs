//! Invalid files are reported as `PATH:LINE:COLUMN: KEY: what is wrong (what was expected)`.

#![allow(
    clippy::unwrap_used,
    reason = "helpers of tests; a panic is a failed test"
)]

use std::path::Path;

use tunneld_config::{ConfigError, Environment, parse};

/// Lines 1-3 of every case: a key for every hop, so each case shows its own error only.
const DEFAULTS: &str = "[defaults]\nidentity_files = [\"/etc/tunneld/keys/id\"]\n\n";

fn error(case: &str) -> ConfigError {
    let env = Environment {
        user: "runner".to_owned(),
    };
    let text = format!("{DEFAULTS}{case}");
    match parse(Path::new("db.toml"), &text, &env) {
        Ok(config) => panic!("parsed: {config:?}"),
        Err(e) => e,
    }
}

/// Asserts the whole message, and that line, column and key are available on their own.
fn assert_error(case: &str, line: usize, column: usize, key: &str, message: &str) {
    let err = error(case);
    assert_eq!(
        err.to_string(),
        format!("db.toml:{line}:{column}: {key}: {message}"),
        "{case}"
    );
    assert_eq!(
        (err.line(), err.column(), err.key()),
        (Some(line), Some(column), Some(key))
    );
    assert_eq!(err.path(), Path::new("db.toml"));
}

#[test]
fn unknown_key() {
    assert_error(
        "[tunnels.db]\nhost = \"db.example.com\"\nlokal = [\"5432:localhost:5432\"]\n",
        6,
        1,
        "tunnels.db.lokal",
        "unknown field `lokal`, expected one of `user`, `identity_files`, `certificate_files`, `use_agent`, \
         `known_hosts`, `global_known_hosts`, `host_key_policy`, `update_host_keys`, `keepalive_interval`, \
         `keepalive_max`, `connect_timeout`, `backoff_min`, `backoff_max`, `backoff_max_network`, `compression`, `ciphers`, \
         `exit_on_forward_failure`, `rekey_limit`, `proxy`, `host`, `jump`, `local`, `remote`, `dynamic`, `socket_mode`",
    );
    assert_error(
        "[hosts.b]\nhostnme = \"b.example.com\"\n",
        5,
        1,
        "hosts.b.hostnme",
        "unknown field `hostnme`, expected one of `user`, `identity_files`, `certificate_files`, `use_agent`, \
         `known_hosts`, `global_known_hosts`, `host_key_policy`, `update_host_keys`, `keepalive_interval`, \
         `keepalive_max`, `connect_timeout`, `backoff_min`, `backoff_max`, `backoff_max_network`, `compression`, `ciphers`, \
         `exit_on_forward_failure`, `rekey_limit`, `proxy`, `hostname`, `port`, `jump`",
    );
    let err = error("[tunnel.db]\nhost = \"x\"\n");
    assert_eq!(
        err.to_string(),
        "db.toml:4:2: tunnel: unknown field `tunnel`, expected one of `daemon`, `defaults`, \
         `hosts`, `tunnels`"
    );
}

#[test]
fn bad_forward() {
    assert_error(
        "[tunnels.db]\nhost = \"db.example.com\"\nlocal = [\"5432:localhost\"]\n",
        6,
        10,
        "tunnels.db.local[0]",
        r#""5432:localhost" is not [bind:]port:host:hostport"#,
    );
    assert_error(
        "[tunnels.db]\nhost = \"db.example.com\"\nlocal = [\"5432:localhost:5432\", \
         \"70000:localhost:5432\"]\n",
        6,
        33,
        "tunnels.db.local[1]",
        r#""70000:localhost:5432": port 70000 is out of range (expected 1-65535)"#,
    );
    assert_error(
        "[tunnels.db]\nhost = \"db.example.com\"\nremote = [\"9000:localhost\"]\n",
        6,
        11,
        "tunnels.db.remote[0]",
        r#""9000:localhost" is not [bind:]port:host:hostport"#,
    );
    assert_error(
        "[tunnels.db]\nhost = \"db.example.com\"\ndynamic = [\"1080:x:1\"]\n",
        6,
        12,
        "tunnels.db.dynamic[0]",
        r#""1080:x:1" is not [bind:]port"#,
    );
    assert_error(
        "[tunnels.db]\nhost = \"db.example.com\"\ndynamic = [{ auth_file = \"/x\" }]\n",
        6,
        12,
        "tunnels.db.dynamic[0]",
        r#"listen is missing (expected { listen = "[bind:]port", auth_file = "PATH" })"#,
    );
    assert_error(
        "[tunnels.db]\nhost = \"db.example.com\"\ndynamic = [{ listen = \"1080\", user = \"x\" \
         }]\n",
        6,
        31,
        "tunnels.db.dynamic[0].user",
        "unknown field `user`, expected `listen` or `auth_file`",
    );
}

#[test]
fn bad_duration() {
    let expected = r#"expected a duration with a unit, like "500ms", "15s", "2m" or "1h""#;
    let case = |value: &str| {
        format!(
            "[tunnels.db]\nhost = \"db.example.com\"\nkeepalive_interval = {value}\nlocal = \
             [\"5432:localhost:5432\"]\n"
        )
    };
    assert_error(
        &case("\"15\""),
        6,
        22,
        "tunnels.db.keepalive_interval",
        &format!("\"15\" has no unit ({expected})"),
    );
    assert_error(
        &case("15"),
        6,
        22,
        "tunnels.db.keepalive_interval",
        &format!("15 has no unit ({expected})"),
    );
    let err = error(&case("\"15 parsecs\""));
    assert_eq!(err.key(), Some("tunnels.db.keepalive_interval"));
    assert!(err.to_string().ends_with(&format!("({expected})")), "{err}");
    let err = error("[hosts.b]\nbackoff_max = \"1x\"\n");
    assert_eq!(
        (err.line(), err.column(), err.key()),
        (Some(5), Some(15), Some("hosts.b.backoff_max"))
    );
    assert!(
        err.to_string()
            .starts_with("db.toml:5:15: hosts.b.backoff_max: \"1x\" is not a duration: "),
        "{err}"
    );
}

#[test]
fn unknown_cipher() {
    assert_error(
        "[tunnels.db]\nhost = \"db.example.com\"\nciphers = [\"aes128-gcm@openssh.com\", \
         \"3des-cbc\"]\nlocal = [\"5432:localhost:5432\"]\n",
        6,
        38,
        "tunnels.db.ciphers[1]",
        r#""3des-cbc" is not a supported cipher (expected one of aes128-gcm@openssh.com, aes256-gcm@openssh.com, chacha20-poly1305@openssh.com, aes128-ctr, aes192-ctr, aes256-ctr)"#,
    );
    let err = error(
        "[tunnels.db]\nhost = \"db.example.com\"\nciphers = []\nlocal = [\"5432:localhost:5432\"]\n",
    );
    assert_eq!(err.key(), Some("tunnels.db.ciphers"));
    assert!(err.to_string().contains("the list is empty"), "{err}");
}

#[test]
fn jump_cycle() {
    assert_error(
        "[hosts.a]\njump = [\"b\"]\n[hosts.b]\njump = [\"a\"]\n[tunnels.db]\nhost = \"a\"\nlocal \
         = [\"5432:localhost:5432\"]\n",
        5,
        8,
        "hosts.a.jump",
        "jump cycle: a -> b -> a (expected jump hosts that do not lead back to themselves)",
    );
    // A host through itself is a cycle too, even when no tunnel uses it.
    assert_error(
        "[hosts.a]\njump = [\"a\"]\n[tunnels.db]\nhost = \"db.example.com\"\nlocal = \
         [\"5432:localhost:5432\"]\n",
        5,
        8,
        "hosts.a.jump",
        "jump cycle: a -> a (expected jump hosts that do not lead back to themselves)",
    );
    // A tunnel whose jump leads back to its own host.
    assert_error(
        "[hosts.a]\n[hosts.b]\njump = [\"a\"]\n[tunnels.db]\nhost = \"a\"\njump = [\"b\"]\nlocal \
         = [\"5432:localhost:5432\"]\n",
        9,
        8,
        "tunnels.db.jump",
        "jump cycle: a -> b -> a (expected jump hosts that do not lead back to themselves)",
    );
}

#[test]
fn missing_host() {
    assert_error(
        "[tunnels.db]\nlocal = [\"5432:localhost:5432\"]\n",
        4,
        1,
        "tunnels.db",
        "host is missing (expected host = a [hosts] name or [user@]hostname[:port])",
    );
    assert_error(
        "[tunnels.db]\nhost = \"admin@\"\nlocal = [\"5432:localhost:5432\"]\n",
        5,
        8,
        "tunnels.db.host",
        r#""admin@" is not a [hosts] name or [user@]hostname[:port]: the host name is empty"#,
    );
}

#[test]
fn ssh_urls() {
    let url = |host: &str| {
        format!("[tunnels.db]\nhost = \"{host}\"\nlocal = [\"5432:localhost:5432\"]\n")
    };
    let expected = "(expected ssh://[user@]host[:port])";
    assert_error(
        &url("ssh://admin@db.example.com:2222/postgres"),
        5,
        8,
        "tunnels.db.host",
        &format!(
            r#""ssh://admin@db.example.com:2222/postgres" is not a server URL: a server URL has no path {expected}"#
        ),
    );
    assert_error(
        &url("sftp://db.example.com"),
        5,
        8,
        "tunnels.db.host",
        &format!(
            r#""sftp://db.example.com" is not a server URL: sftp:// is not ssh:// {expected}"#
        ),
    );
    // A user that contradicts the one in the URL, as with user@host.
    assert_error(
        "[tunnels.db]\nhost = \"ssh://admin@db.example.com\"\nuser = \"tunnel\"\n\
         local = [\"5432:localhost:5432\"]\n",
        6,
        8,
        "tunnels.db.user",
        r#"user "tunnel" contradicts the user "admin" in host "ssh://admin@db.example.com" (expected the user in one place)"#,
    );
    assert_error(
        "[tunnels.db]\nhost = \"db\"\njump = [\"ssh://gw:22x\"]\nlocal = [\"5432:localhost:5432\"]\n",
        6,
        9,
        "tunnels.db.jump[0]",
        &format!(
            r#""ssh://gw:22x" is not a server URL: "22x" is not a port number (expected 1-65535) {expected}"#
        ),
    );
}

#[test]
fn no_forwards() {
    let message = "no forwards (expected at least one of local, remote or dynamic)";
    assert_error(
        "[tunnels.db]\nhost = \"db.example.com\"\n",
        4,
        1,
        "tunnels.db",
        message,
    );
    assert_error(
        "[tunnels.db]\nhost = \"db.example.com\"\nlocal = []\n",
        4,
        1,
        "tunnels.db",
        message,
    );
}

#[test]
fn no_tunnels() {
    let env = Environment {
        user: "runner".to_owned(),
    };
    for text in ["", "# nothing\n", "[defaults]\nuser = \"tunnel\"\n"] {
        let err = parse(Path::new("db.toml"), text, &env).unwrap_err();
        assert_eq!(
            err.to_string(),
            "db.toml:1:1: tunnels: no tunnels defined (expected at least one [tunnels.NAME] table)"
        );
    }
}

#[test]
fn jump_in_defaults() {
    assert_error(
        "[tunnels.db]\nhost = \"db.example.com\"\nlocal = [\"5432:localhost:5432\"]\n"
            .replace("[tunnels.db]", "[defaults.x]")
            .as_str(),
        4,
        11,
        "defaults.x",
        "unknown field `x`, expected one of `user`, `identity_files`, `certificate_files`, `use_agent`, \
         `known_hosts`, `global_known_hosts`, `host_key_policy`, `update_host_keys`, `keepalive_interval`, \
         `keepalive_max`, `connect_timeout`, `backoff_min`, `backoff_max`, `backoff_max_network`, `compression`, `ciphers`, \
         `exit_on_forward_failure`, `rekey_limit`, `proxy`",
    );
    let env = Environment {
        user: "runner".to_owned(),
    };
    let err = parse(
        Path::new("db.toml"),
        "[defaults]\nuser = \"tunnel\"\njump = [\"bastion\"]\n",
        &env,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "db.toml:3:1: defaults.jump: jump is not allowed in [defaults] (expected jump in \
         [hosts.NAME] or [tunnels.NAME]; a jump host never inherits it)"
    );
}

#[test]
fn bad_names() {
    assert_error(
        "[tunnels.\"my db\"]\nhost = \"db.example.com\"\nlocal = [\"5432:localhost:5432\"]\n",
        4,
        10,
        "tunnels.\"my db\"",
        r#""my db" is not a valid tunnel name (expected letters, digits, _, . and - only)"#,
    );
    assert_error(
        "[hosts.\"db/1\"]\n",
        4,
        8,
        "hosts.\"db/1\"",
        r#""db/1" is not a valid host name (expected letters, digits, _, . and - only)"#,
    );
}

#[test]
fn duplicate_ports() {
    assert_error(
        "[tunnels.a]\nhost = \"a.example.com\"\nlocal = [\"5432:localhost:5432\"]\n\
         [tunnels.b]\nhost = \"b.example.com\"\ndynamic = [\"5432\"]\n",
        9,
        12,
        "tunnels.b.dynamic[0]",
        "listener localhost:5432 of tunnel b clashes with localhost:5432 of tunnel a at \
         tunnels.a.local[0]; both could never be bound (expected a different port or address)",
    );
    assert_error(
        "[tunnels.a]\nhost = \"a.example.com\"\nlocal = [\"5432:localhost:5432\", \
         \"*:5432:other:5432\"]\n",
        6,
        33,
        "tunnels.a.local[1]",
        "listener *:5432 clashes with localhost:5432 of the same tunnel at tunnels.a.local[0] \
         (expected each address and port once)",
    );
    assert_error(
        "[tunnels.a]\nhost = \"a.example.com\"\nremote = [\"2222:localhost:22\", \
         \"2222:localhost:23\"]\n",
        6,
        32,
        "tunnels.a.remote[1]",
        "remote port localhost:2222 clashes with localhost:2222 of the same tunnel at \
         tunnels.a.remote[0] (expected each address and port once)",
    );
}

#[test]
fn overlapping_listeners_and_remote_ports() {
    let loopbacks = "; no bind address, or localhost, listens on 127.0.0.1 and ::1";
    // Within one tunnel, no bind address against an explicit loopback never binds.
    assert_error(
        "[tunnels.a]\nhost = \"a.example.com\"\nlocal = [\"5432:localhost:5432\", \
         \"127.0.0.1:5432:other:5432\"]\n",
        6,
        33,
        "tunnels.a.local[1]",
        &format!(
            "listener 127.0.0.1:5432 clashes with localhost:5432 of the same tunnel at \
             tunnels.a.local[0]{loopbacks} (expected each address and port once)"
        ),
    );
    assert_error(
        "[tunnels.a]\nhost = \"a.example.com\"\ndynamic = [\"[::1]:1080\", \"1080\"]\n",
        6,
        26,
        "tunnels.a.dynamic[1]",
        &format!(
            "listener localhost:1080 clashes with [::1]:1080 of the same tunnel at \
             tunnels.a.dynamic[0]{loopbacks} (expected each address and port once)"
        ),
    );
    // A wildcard against a specific address, across tunnels.
    assert_error(
        "[tunnels.a]\nhost = \"a.example.com\"\nlocal = [\"192.0.2.1:8080:web:80\"]\n\
         [tunnels.b]\nhost = \"b.example.com\"\nlocal = [\"0.0.0.0:8080:web:80\"]\n",
        9,
        10,
        "tunnels.b.local[0]",
        "listener 0.0.0.0:8080 of tunnel b clashes with 192.0.2.1:8080 of tunnel a at \
         tunnels.a.local[0]; both could never be bound (expected a different port or address)",
    );
    // sshd listens on both loopbacks for `localhost`: an explicit 127.0.0.1 clashes with it on
    // any server.
    assert_error(
        "[tunnels.a]\nhost = \"a.example.com\"\nremote = [\"2222:localhost:22\", \
         \"127.0.0.1:2222:localhost:23\"]\n",
        6,
        32,
        "tunnels.a.remote[1]",
        "remote port 127.0.0.1:2222 clashes with localhost:2222 of the same tunnel at \
         tunnels.a.remote[0] (expected each address and port once)",
    );
    // Two tunnels to one server, by the same name (letter case aside) and port.
    assert_error(
        "[hosts.gw]\nhostname = \"GW.example.com\"\n\
         [tunnels.a]\nhost = \"gw\"\nremote = [\"9000:localhost:3000\"]\n\
         [tunnels.b]\nhost = \"u@gw.example.com:22\"\nremote = [\"*:9000:localhost:3001\"]\n",
        11,
        11,
        "tunnels.b.remote[0]",
        "remote port *:9000 of tunnel b clashes with localhost:9000 of tunnel a at \
         tunnels.a.remote[0] on the same server (gw.example.com:22); it listens there for one \
         of them only (expected a different port, or 0 for one the server picks)",
    );
    let env = Environment {
        user: "runner".to_owned(),
    };
    // Port 0 may repeat, other servers or ports are fine, and a tunnel through a jump host
    // reaches another server than one dialled directly, whatever their names.
    let fine = "[defaults]\nuse_agent = true\n\
                [tunnels.a]\nhost = \"gw.example.com\"\nremote = [\"0:localhost:22\", \
                \"9000:localhost:3000\"]\n\
                [tunnels.b]\nhost = \"gw.example.com\"\nremote = [\"0:localhost:22\", \
                \"9001:localhost:3000\"]\n\
                [tunnels.c]\nhost = \"gw.example.com:2222\"\nremote = [\"9000:localhost:3000\"]\n\
                [tunnels.d]\nhost = \"gw.example.com\"\njump = [\"bastion.example.com\"]\n\
                remote = [\"9000:localhost:3000\"]\n";
    parse(Path::new("db.toml"), fine, &env).unwrap();
}

/// The column of the value in `line`, or of its first element if it is an array.
fn column(line: &str) -> usize {
    let value = line.find('=').unwrap() + 3;
    if line.contains('[') { value + 1 } else { value }
}

#[test]
fn other_values() {
    let tunnel = "[tunnels.db]\nhost = \"db.example.com\"\nlocal = [\"5432:localhost:5432\"]\n";
    let table = [
        (
            "host_key_policy = \"yes\"",
            "tunnels.db.host_key_policy",
            r#""yes" is not a host key policy (expected "strict" or "accept-new")"#,
        ),
        (
            "keepalive_max = 0",
            "tunnels.db.keepalive_max",
            "0 is out of range (expected 1 or more unanswered keepalives)",
        ),
        (
            "connect_timeout = \"0s\"",
            "tunnels.db.connect_timeout",
            "connect_timeout cannot be zero (expected a duration longer than zero)",
        ),
        (
            "backoff_min = \"0s\"",
            "tunnels.db.backoff_min",
            "backoff_min cannot be zero (expected a duration longer than zero)",
        ),
        (
            "backoff_min = \"2m\"",
            "tunnels.db.backoff_min",
            "backoff_min 2m (tunnels.db.backoff_min) is longer than backoff_max 1m (built-in) \
             for tunnel db (expected backoff_min <= backoff_max)",
        ),
        (
            "backoff_max_network = \"0s\"",
            "tunnels.db.backoff_max_network",
            "backoff_max_network cannot be zero (expected a duration longer than zero)",
        ),
        (
            "backoff_max_network = 5",
            "tunnels.db.backoff_max_network",
            "5 has no unit (expected a duration with a unit, like \"500ms\", \"15s\", \"2m\" or \"1h\")",
        ),
        (
            "backoff_max_network = \"2m\"",
            "tunnels.db.backoff_max_network",
            "backoff_max_network 2m (tunnels.db.backoff_max_network) is longer than backoff_max 1m \
             (built-in) for tunnel db (expected backoff_max_network <= backoff_max)",
        ),
        (
            "backoff_max_network = \"500ms\"",
            "tunnels.db.backoff_max_network",
            "backoff_min 1s (built-in) is longer than backoff_max_network 500ms \
             (tunnels.db.backoff_max_network) for tunnel db (expected backoff_min <= \
             backoff_max_network)",
        ),
        (
            "identity_files = [\"~/.ssh/id_ed25519\"]",
            "tunnels.db.identity_files[0]",
            r#""~/.ssh/id_ed25519" starts with ~, which is not expanded (expected the full path, like /etc/tunneld/keys/NAME)"#,
        ),
        (
            "identity_files = [\"credential:\"]",
            "tunnels.db.identity_files[0]",
            r#""credential:" does not name a credential (expected credential:NAME, NAME as in LoadCredential=, without /)"#,
        ),
        (
            "certificate_files = [\"~/.ssh/id_ed25519-cert.pub\"]",
            "tunnels.db.certificate_files[0]",
            r#""~/.ssh/id_ed25519-cert.pub" starts with ~, which is not expanded (expected the full path, like /etc/tunneld/keys/NAME)"#,
        ),
        (
            "known_hosts = \"\"",
            "tunnels.db.known_hosts",
            "the path is empty (expected an absolute path)",
        ),
        (
            "global_known_hosts = \"~/known_hosts\"",
            "tunnels.db.global_known_hosts",
            r#""~/known_hosts" starts with ~, which is not expanded (expected the full path, like /etc/tunneld/keys/NAME)"#,
        ),
        ("user = \"\"", "tunnels.db.user", "the user name is empty"),
        (
            "compression = \"yes\"",
            "tunnels.db.compression",
            r#"invalid type: string "yes", expected true or false"#,
        ),
    ];
    for (line, key, message) in table {
        let err = error(&format!("{tunnel}{line}\n"));
        assert_eq!(
            err.to_string(),
            format!("db.toml:7:{}: {key}: {message}", column(line)),
            "{line}"
        );
    }
}

#[test]
fn no_way_to_authenticate() {
    let env = Environment {
        user: "runner".to_owned(),
    };
    let text = "[hosts.bastion]\nhostname = \"bastion.example.com\"\n\n[tunnels.db]\nhost = \
                \"db.example.com\"\nidentity_files = [\"/etc/tunneld/keys/db\"]\njump = \
                [\"bastion\"]\nlocal = [\"5432:localhost:5432\"]\n";
    let err = parse(Path::new("db.toml"), text, &env).unwrap_err();
    // The tunnel's key is not the bastion's: a jump host takes nothing from the tunnel.
    assert_eq!(
        err.to_string(),
        "db.toml:7:9: tunnels.db.jump[0]: no way to authenticate to bastion: no identity_files \
         and use_agent is not true (expected identity_files or use_agent = true in \
         [hosts.bastion] or [defaults])"
    );
    let err = parse(
        Path::new("db.toml"),
        &text.replace("identity_files", "compression = true\n#"),
        &env,
    )
    .unwrap_err();
    assert_eq!(err.key(), Some("tunnels.db.jump[0]"));
    let text = "[tunnels.db]\nhost = \"db.example.com\"\nlocal = [\"5432:localhost:5432\"]\n";
    let err = parse(Path::new("db.toml"), text, &env).unwrap_err();
    assert_eq!(
        err.to_string(),
        "db.toml:2:8: tunnels.db.host: no way to authenticate to db.example.com: no \
         identity_files and use_agent is not true (expected identity_files or use_agent = true \
         in [tunnels.db] or [defaults])"
    );
}

#[test]
fn toml_syntax_errors_keep_their_message() {
    let env = Environment {
        user: "runner".to_owned(),
    };
    let err = parse(Path::new("db.toml"), "[tunnels.db\nhost = 1\n", &env).unwrap_err();
    assert_eq!(
        err.to_string(),
        "db.toml:1:12: unclosed table, expected `]`"
    );
    assert_eq!(err.key(), Some(""));
    let err = parse(
        Path::new("db.toml"),
        "[tunnels.db]\nhost = \"a\"\nhost = \"b\"\n",
        &env,
    )
    .unwrap_err();
    assert_eq!(err.to_string(), "db.toml:3:1: duplicate key");
}

#[test]
fn wrong_types_are_said_in_the_files_terms() {
    let tunnel = "[tunnels.db]\nhost = \"db.example.com\"\n";
    // (line 6 of the case, the key, the message), each under `[tunnels.db]` unless it names
    // its own table.
    let table = [
        (
            "[hosts.b]\nport = \"22\"",
            "hosts.b.port",
            r#"invalid type: string "22", expected a port number (1-65535), without quotes"#,
        ),
        (
            "[hosts.b]\nport = 22.5",
            "hosts.b.port",
            "invalid type: floating point `22.5`, expected a port number (1-65535)",
        ),
        (
            "local = \"5432:localhost:5432\"",
            "tunnels.db.local",
            r#"invalid type: string "5432:localhost:5432", expected a list of strings like ["5432:localhost:5432"]"#,
        ),
        (
            "local = [5432]",
            "tunnels.db.local[0]",
            r#"invalid type: integer `5432`, expected a string like "5432:localhost:5432""#,
        ),
        (
            "remote = \"9000:localhost:3000\"",
            "tunnels.db.remote",
            r#"invalid type: string "9000:localhost:3000", expected a list of strings like ["9000:localhost:3000"]"#,
        ),
        (
            "dynamic = \"1080\"",
            "tunnels.db.dynamic",
            r#"invalid type: string "1080", expected a list like ["1080"] or [{ listen = "1080", auth_file = "PATH" }]"#,
        ),
        (
            "dynamic = [{ listen = 1080 }]",
            "tunnels.db.dynamic[0].listen",
            r#"invalid type: integer `1080`, expected a string like "127.0.0.1:1080""#,
        ),
        (
            "identity_files = \"/etc/tunneld/keys/db\"",
            "tunnels.db.identity_files",
            r#"invalid type: string "/etc/tunneld/keys/db", expected a list of strings like ["/etc/tunneld/keys/id_ed25519"]"#,
        ),
        (
            "certificate_files = \"/etc/tunneld/keys/db-cert.pub\"",
            "tunnels.db.certificate_files",
            r#"invalid type: string "/etc/tunneld/keys/db-cert.pub", expected a list of strings like ["/etc/tunneld/keys/id_ed25519-cert.pub"]"#,
        ),
        (
            "jump = \"bastion\"",
            "tunnels.db.jump",
            r#"invalid type: string "bastion", expected a list of strings like ["bastion"]"#,
        ),
        (
            "ciphers = [1]",
            "tunnels.db.ciphers[0]",
            r#"invalid type: integer `1`, expected a string like "aes128-gcm@openssh.com""#,
        ),
        (
            "use_agent = \"true\"",
            "tunnels.db.use_agent",
            r#"invalid type: string "true", expected true or false, without quotes"#,
        ),
        (
            "compression = 1",
            "tunnels.db.compression",
            "invalid type: integer `1`, expected true or false",
        ),
        (
            "keepalive_max = \"3\"",
            "tunnels.db.keepalive_max",
            r#"invalid type: string "3", expected a whole number, 1 or more, without quotes"#,
        ),
        (
            "keepalive_interval = [15]",
            "tunnels.db.keepalive_interval",
            r#"invalid type: sequence, expected a duration with a unit, like "500ms", "15s", "2m" or "1h""#,
        ),
        (
            "user = 1000",
            "tunnels.db.user",
            r#"invalid type: integer `1000`, expected a string like "tunnel""#,
        ),
        (
            "host_key_policy = true",
            "tunnels.db.host_key_policy",
            r#"invalid type: boolean `true`, expected "strict" or "accept-new""#,
        ),
        (
            "[hosts]\nb = 3",
            "hosts.b",
            "invalid type: integer `3`, expected a [hosts.b] table",
        ),
    ];
    for (case, key, message) in table {
        let text = if case.starts_with('[') {
            format!("{case}\n")
        } else {
            format!("{tunnel}{case}\n")
        };
        let err = error(&text);
        let line = 3 + text.lines().count();
        let last = text.lines().last().unwrap();
        let value = last.find('=').unwrap() + 2;
        let column = if key.ends_with(']') || key.ends_with("listen") {
            // The element: past `[` (and `{ listen = ` for the table).
            last[value..].find(|c: char| c.is_ascii_digit()).unwrap() + value + 1
        } else {
            value + 1
        };
        assert_eq!(
            err.to_string(),
            format!("db.toml:{line}:{column}: {key}: {message}"),
            "{case}"
        );
    }
}

#[test]
fn a_pasted_ssh_config_is_recognised() {
    let see = "the format is in configuration.md, in /usr/share/doc/tunneld";
    let env = Environment {
        user: "runner".to_owned(),
    };
    let text = "# from ~/.ssh/config\nHost db\n    HostName 192.0.2.5\n    LocalForward 5432 \
                localhost:5432\n";
    let err = parse(Path::new("db.toml"), text, &env).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "db.toml:2:1: \"Host db\" looks like ssh_config syntax, but this file is TOML with \
             keys of its own (expected a [hosts.db] table; {see})"
        )
    );
    // Inside a table, the line is read where toml stops. A syntax error has no key.
    let err =
        error("[tunnels.db]\nhost = \"db.example.com\"\n  LocalForward 5432 localhost:5432\n");
    assert_eq!(
        err.to_string(),
        format!(
            "db.toml:6:3: \"LocalForward 5432 localhost:5432\" looks like ssh_config syntax, but \
             this file is TOML with keys of its own (expected local = [\"5432:localhost:5432\"] \
             in a [tunnels.NAME] table; {see})"
        ),
    );
    assert_eq!(
        (err.line(), err.column(), err.key()),
        (Some(6), Some(3), Some(""))
    );
    // `Port = 2222` is TOML too: an unknown top-level key, recognised all the same.
    for line in ["Port = 2222", "Port=2222"] {
        let err = parse(Path::new("db.toml"), &format!("{line}\n"), &env).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "db.toml:1:1: Port: {line:?} looks like ssh_config syntax, but this file is TOML \
                 with keys of its own (expected port = 2222 in a [hosts.NAME] table; {see})"
            )
        );
    }
    // A TOML key whose `=` is missing keeps toml's words.
    let err = error("[tunnels.db]\nhost \"db.example.com\"\n");
    assert_eq!(
        err.to_string(),
        "db.toml:5:6: key with no value, expected `=`"
    );
}

#[test]
fn unix_socket_forwards() {
    assert_error(
        "[tunnels.db]\nhost = \"db.example.com\"\nlocal = [\"/run/a.sock:db\"]\n",
        6,
        10,
        "tunnels.db.local[0]",
        "\"/run/a.sock:db\" is not /socket:host:hostport, /socket:/socket or [bind:]port:/socket",
    );
    assert_error(
        "[tunnels.db]\nhost = \"db.example.com\"\nremote = [\"x:/run/app.sock\"]\n",
        6,
        11,
        "tunnels.db.remote[0]",
        "\"x:/run/app.sock\": \"x\": \"x\" is not a port number (expected 0-65535) (expected \
         /serversocket:host:hostport, /serversocket:/socket or [bind:]port:/socket)",
    );
    assert_error(
        "[tunnels.db]\nhost = \"db.example.com\"\nlocal = [\"/run/a.sock:db:5432\"]\nsocket_mode = \"rw\"\n",
        7,
        15,
        "tunnels.db.socket_mode",
        "\"rw\" is not an octal file mode (expected e.g. \"0660\")",
    );
    assert_error(
        "[tunnels.a]\nhost = \"a.example.com\"\nlocal = [\"/run/a.sock:db:5432\"]\n\
         [tunnels.b]\nhost = \"b.example.com\"\nlocal = [\"/run/a.sock:/srv/x.sock\"]\n",
        9,
        10,
        "tunnels.b.local[0]",
        "socket /run/a.sock is listened on already at tunnels.a.local[0] (expected each socket once)",
    );
}
