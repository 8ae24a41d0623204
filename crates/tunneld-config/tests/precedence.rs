//! Where each value comes from: the tunnel, then its `[hosts]` entry, then `[defaults]`, then
//! the built-in default; jump hosts from their own entry, then `[defaults]`, never the tunnel.

#![allow(
    clippy::unwrap_used,
    reason = "helpers of tests; a panic is a failed test"
)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use tunneld_config::{Config, Environment, HostKeyPolicy, IdentityFile, Tunnel, parse};

fn env() -> Environment {
    Environment {
        user: "runner".to_owned(),
    }
}

fn config(text: &str) -> Config {
    parse(Path::new("/etc/tunneld/t.toml"), text, &env()).unwrap_or_else(|e| panic!("{e}"))
}

fn only(text: &str) -> Tunnel {
    let config = config(text);
    assert_eq!(config.tunnels.len(), 1);
    config.tunnels.into_iter().next().unwrap()
}

/// A file whose `[defaults]`, `[hosts.h]` and `[tunnels.t]` set `key` to the given values, or
/// leave it out.
fn layered(key: &str, defaults: Option<&str>, host: Option<&str>, tunnel: Option<&str>) -> String {
    let line = |value: Option<&str>| value.map_or(String::new(), |v| format!("{key} = {v}\n"));
    // Every hop needs a way to authenticate; use the one that is not under test.
    let auth = if key == "identity_files" {
        "use_agent = true"
    } else {
        "identity_files = [\"/etc/tunneld/keys/id\"]"
    };
    format!(
        "[defaults]\n{auth}\n{}\n\
         [hosts.h]\nhostname = \"h.example.com\"\n{}\n\
         [tunnels.t]\nhost = \"h\"\nlocal = [\"5432:localhost:5432\"]\n{}",
        line(defaults),
        line(host),
        line(tunnel)
    )
}

/// For one key: the tunnel wins over the host entry, which wins over `[defaults]`, which wins
/// over the built-in default.
fn check_precedence<T: PartialEq + std::fmt::Debug>(
    key: &str,
    values: [&str; 3],
    expected: [T; 4],
    get: impl Fn(&Tunnel) -> T,
) {
    let [d, h, t] = values.map(Some);
    let [from_tunnel, from_host, from_defaults, built_in] = expected;
    assert_eq!(
        get(&only(&layered(key, d, h, t))),
        from_tunnel,
        "{key} from the tunnel"
    );
    assert_eq!(
        get(&only(&layered(key, d, h, None))),
        from_host,
        "{key} from the host"
    );
    assert_eq!(
        get(&only(&layered(key, d, None, None))),
        from_defaults,
        "{key} from defaults"
    );
    assert_eq!(
        get(&only(&layered(key, None, None, None))),
        built_in,
        "{key} built in"
    );
}

#[test]
fn every_key_follows_the_precedence() {
    check_precedence(
        "user",
        ["\"d\"", "\"h\"", "\"t\""],
        ["t", "h", "d", "runner"].map(str::to_owned),
        |t| t.target.user.clone(),
    );
    check_precedence(
        "known_hosts",
        ["\"/d\"", "\"/h\"", "\"/t\""],
        ["/t", "/h", "/d", "/var/lib/tunneld/known_hosts"].map(PathBuf::from),
        |t| t.target.known_hosts.clone(),
    );
    check_precedence(
        "global_known_hosts",
        ["\"/d\"", "\"/h\"", "\"pinned\""],
        [
            "/etc/tunneld/pinned",
            "/h",
            "/d",
            "/etc/tunneld/known_hosts",
        ]
        .map(PathBuf::from),
        |t| t.target.global_known_hosts.clone(),
    );
    check_precedence(
        "host_key_policy",
        ["\"accept-new\"", "\"strict\"", "\"accept-new\""],
        [
            HostKeyPolicy::AcceptNew,
            HostKeyPolicy::Strict,
            HostKeyPolicy::AcceptNew,
            HostKeyPolicy::Strict,
        ],
        |t| t.target.host_key_policy,
    );
    // OpenSSH's UpdateHostKeys is on for its default UserKnownHostsFile; tunneld's learned file
    // is that file's equivalent.
    check_precedence(
        "update_host_keys",
        ["false", "true", "false"],
        [false, true, false, true],
        |t| t.target.update_host_keys,
    );
    check_precedence(
        "connect_timeout",
        ["\"1s\"", "\"2s\"", "\"3s\""],
        [3, 2, 1, 10].map(Duration::from_secs),
        |t| t.target.connect_timeout,
    );
    check_precedence(
        "compression",
        ["true", "false", "true"],
        [true, false, true, false],
        |t| t.target.compression,
    );
    check_precedence(
        "use_agent",
        ["true", "false", "true"],
        [true, false, true, false],
        |t| t.target.use_agent,
    );
    check_precedence(
        "ciphers",
        ["[\"aes128-ctr\"]", "[\"aes192-ctr\"]", "[\"aes256-ctr\"]"],
        [
            vec!["aes256-ctr".to_owned()],
            vec!["aes192-ctr".to_owned()],
            vec!["aes128-ctr".to_owned()],
            vec![],
        ],
        |t| t.target.ciphers.clone(),
    );
    check_precedence(
        "identity_files",
        ["[\"/d\"]", "[\"/h\", \"credential:h\"]", "[\"keys/t\"]"],
        [
            vec![IdentityFile::Path(PathBuf::from("/etc/tunneld/keys/t"))],
            vec![
                IdentityFile::Path(PathBuf::from("/h")),
                IdentityFile::Credential("h".to_owned()),
            ],
            vec![IdentityFile::Path(PathBuf::from("/d"))],
            vec![],
        ],
        |t| t.target.identity_files.clone(),
    );
    check_precedence(
        "certificate_files",
        [
            "[\"/d-cert.pub\"]",
            "[\"/h-cert.pub\", \"credential:h-cert.pub\"]",
            "[\"keys/t-cert.pub\"]",
        ],
        [
            vec![IdentityFile::Path(PathBuf::from(
                "/etc/tunneld/keys/t-cert.pub",
            ))],
            vec![
                IdentityFile::Path(PathBuf::from("/h-cert.pub")),
                IdentityFile::Credential("h-cert.pub".to_owned()),
            ],
            vec![IdentityFile::Path(PathBuf::from("/d-cert.pub"))],
            vec![],
        ],
        |t| t.target.certificate_files.clone(),
    );
    check_precedence(
        "keepalive_interval",
        ["\"0s\"", "\"5s\"", "\"500ms\""],
        [
            Some(Duration::from_millis(500)),
            Some(Duration::from_secs(5)),
            None,
            Some(Duration::from_secs(15)),
        ],
        |t| t.keepalive.interval,
    );
    check_precedence("keepalive_max", ["1", "2", "5"], [5, 2, 1, 3], |t| {
        t.keepalive.max
    });
    check_precedence(
        "backoff_min",
        ["\"2s\"", "\"3s\"", "\"500ms\""],
        [
            Duration::from_millis(500),
            Duration::from_secs(3),
            Duration::from_secs(2),
            Duration::from_secs(1),
        ],
        |t| t.backoff.min,
    );
    check_precedence(
        "backoff_max",
        ["\"2m\"", "\"3m\"", "\"10s\""],
        [10, 180, 120, 60].map(Duration::from_secs),
        |t| t.backoff.max,
    );
    check_precedence(
        "backoff_max_network",
        ["\"2s\"", "\"3s\"", "\"10s\""],
        [10, 3, 2, 5].map(Duration::from_secs),
        |t| t.backoff.max_network,
    );
}

/// OpenSSH's ExitOnForwardFailure is off unless asked for; tunneld's follows it.
#[test]
fn exit_on_forward_failure_follows_the_precedence_and_is_off_by_default() {
    check_precedence(
        "exit_on_forward_failure",
        ["true", "false", "true"],
        [true, false, true, false],
        |t| t.exit_on_forward_failure,
    );
}

const CHAIN: &str = r#"
[defaults]
user = "tunnel"
identity_files = ["/etc/tunneld/keys/id"]
connect_timeout = "5s"

[hosts.a]
hostname = "a.example.com"
port = 2201
user = "a-user"
compression = true

[hosts.b]
jump = ["a"]

[hosts.c]
hostname = "2001:db8::c"
jump = ["b"]
identity_files = ["/etc/tunneld/keys/c"]

[hosts.db]
hostname = "db.internal"
jump = ["a"]
"#;

#[test]
fn hops_take_their_own_entry_then_defaults_never_the_tunnel() {
    let tunnel = only(&format!(
        "{CHAIN}[tunnels.t]\nhost = \"db\"\nuser = \"t-user\"\ncompression = false\n\
         connect_timeout = \"30s\"\nidentity_files = [\"/etc/tunneld/keys/t\"]\n\
         certificate_files = [\"/etc/tunneld/keys/t-cert.pub\"]\nlocal = [\"1:x:1\"]\n"
    ));
    let [a] = tunnel.jump.as_slice() else {
        panic!("{:?}", tunnel.jump)
    };
    assert_eq!(a.label, "a");
    assert_eq!((a.hostname.as_str(), a.port), ("a.example.com", 2201));
    assert_eq!(a.user, "a-user");
    assert!(a.compression);
    assert_eq!(a.connect_timeout, Duration::from_secs(5));
    assert_eq!(
        a.identity_files,
        [IdentityFile::Path(PathBuf::from("/etc/tunneld/keys/id"))]
    );
    // Certificates are resolved like keys: the hop never takes the tunnel's.
    assert_eq!(a.certificate_files, []);
    assert_eq!(
        tunnel.target.certificate_files,
        [IdentityFile::Path(PathBuf::from(
            "/etc/tunneld/keys/t-cert.pub"
        ))]
    );
    // The target takes the tunnel's values.
    assert_eq!(tunnel.target.user, "t-user");
    assert!(!tunnel.target.compression);
    assert_eq!(tunnel.target.connect_timeout, Duration::from_secs(30));
    assert_eq!(
        (tunnel.target.hostname.as_str(), tunnel.target.port),
        ("db.internal", 22)
    );
}

#[test]
fn each_hop_has_its_own_pair_of_known_hosts_files() {
    let tunnel = only(&format!(
        "{}[tunnels.t]\nhost = \"db\"\nknown_hosts = \"/t/learned\"\n\
         global_known_hosts = \"/t/pinned\"\nlocal = [\"1:x:1\"]\n",
        CHAIN.replace(
            "[hosts.a]\n",
            "[hosts.a]\nglobal_known_hosts = \"/a/pinned\"\n",
        )
    ));
    let files =
        |hop: &tunneld_config::Hop| (hop.known_hosts.clone(), hop.global_known_hosts.clone());
    let [a] = tunnel.jump.as_slice() else {
        panic!("{:?}", tunnel.jump)
    };
    // The hop: its own entry, then the built-in default; nothing from the tunnel.
    assert_eq!(
        files(a),
        (
            PathBuf::from("/var/lib/tunneld/known_hosts"),
            PathBuf::from("/a/pinned")
        )
    );
    assert_eq!(
        files(&tunnel.target),
        (PathBuf::from("/t/learned"), PathBuf::from("/t/pinned"))
    );
}

fn labels(tunnel: &Tunnel) -> Vec<&str> {
    tunnel.jump.iter().map(|hop| hop.label.as_str()).collect()
}

#[test]
fn jump_chains_are_flattened_in_dialling_order() {
    let table = [
        // The target entry's own jump.
        ("host = \"db\"", vec!["a"]),
        // The tunnel's jump replaces it; each hop brings its own chain in front of it.
        ("host = \"db\"\njump = [\"c\"]", vec!["a", "b", "c"]),
        (
            "host = \"db\"\njump = [\"a\", \"c\"]",
            vec!["a", "a", "b", "c"],
        ),
        // An empty jump in the tunnel means direct.
        ("host = \"db\"\njump = []", vec![]),
        // A host given as a string has no entry, so no jump unless the tunnel says so.
        ("host = \"db.example.com\"", vec![]),
        (
            "host = \"db.example.com\"\njump = [\"admin@gw.example.com:2222\", \"b\"]",
            vec!["admin@gw.example.com:2222", "a", "b"],
        ),
    ];
    for (lines, expected) in table {
        let tunnel = only(&format!(
            "{CHAIN}[tunnels.t]\n{lines}\nlocal = [\"1:x:1\"]\n"
        ));
        assert_eq!(labels(&tunnel), expected, "{lines}");
    }
}

#[test]
fn a_hop_never_inherits_the_tunnels_jump() {
    // c's own chain is a <- b <- c; the tunnel's jump to c is not applied to c's hops.
    let tunnel = only(&format!(
        "{CHAIN}[tunnels.t]\nhost = \"c\"\nlocal = [\"1:x:1\"]\n"
    ));
    assert_eq!(labels(&tunnel), ["a", "b"]);
    assert_eq!(tunnel.target.hostname, "2001:db8::c");
    assert_eq!(
        tunnel.target.identity_files,
        [IdentityFile::Path(PathBuf::from("/etc/tunneld/keys/c"))]
    );
}

#[test]
fn hosts_as_strings() {
    let table = [
        ("db.example.com", "db.example.com", 22, "tunnel"),
        ("admin@db.example.com", "db.example.com", 22, "admin"),
        ("admin@[2001:db8::1]:2222", "2001:db8::1", 2222, "admin"),
        ("[2001:db8::1]:2222", "2001:db8::1", 2222, "tunnel"),
        ("2001:db8::1", "2001:db8::1", 22, "tunnel"),
        ("198.51.100.7:443", "198.51.100.7", 443, "tunnel"),
        // ssh's URL form: the user is admin, not "ssh://admin".
        (
            "ssh://admin@db.example.com:2222",
            "db.example.com",
            2222,
            "admin",
        ),
        ("ssh://db.example.com/", "db.example.com", 22, "tunnel"),
        ("ssh://[2001:db8::1]:2222", "2001:db8::1", 2222, "tunnel"),
    ];
    for (host, hostname, port, user) in table {
        let tunnel = only(&format!(
            "{CHAIN}[tunnels.t]\nhost = \"{host}\"\nlocal = [\"1:x:1\"]\n"
        ));
        let target = &tunnel.target;
        assert_eq!(target.label, host);
        assert_eq!(
            (target.hostname.as_str(), target.port, target.user.as_str()),
            (hostname, port, user),
            "{host}"
        );
    }
    // A jump host given as a string takes [defaults], not the tunnel.
    let tunnel = only(&format!(
        "{CHAIN}[tunnels.t]\nhost = \"db\"\nuser = \"t-user\"\njump = [\"gw.example.com\"]\n\
         local = [\"1:x:1\"]\n"
    ));
    let gw = &tunnel.jump[0];
    assert_eq!((gw.user.as_str(), gw.port), ("tunnel", 22));
    assert_eq!(gw.connect_timeout, Duration::from_secs(5));
    // A jump host in the URL form, as `ssh -J ssh://admin@gw:2222` takes it.
    let tunnel = only(&format!(
        "{CHAIN}[tunnels.t]\nhost = \"db\"\njump = [\"ssh://admin@gw.example.com:2222\"]\n\
         local = [\"1:x:1\"]\n"
    ));
    let gw = &tunnel.jump[0];
    assert_eq!(
        (gw.hostname.as_str(), gw.user.as_str(), gw.port),
        ("gw.example.com", "admin", 2222)
    );
}

#[test]
fn host_entries_default_their_hostname_to_their_name() {
    let tunnel = only(
        "[hosts.\"db.example.com\"]\nuser = \"dbadmin\"\nuse_agent = true\n\
         [tunnels.t]\nhost = \"db.example.com\"\nlocal = [\"1:x:1\"]\n",
    );
    let target = &tunnel.target;
    assert_eq!(target.label, "db.example.com");
    assert_eq!(target.hostname, "db.example.com");
    assert_eq!(target.port, 22);
    assert_eq!(target.user, "dbadmin");
    assert!(target.use_agent);
    assert!(target.identity_files.is_empty());
}

#[test]
fn the_built_in_user_is_the_environments() {
    let text = "[tunnels.t]\nhost = \"h.example.com\"\nuse_agent = true\nlocal = [\"1:x:1\"]\n";
    let env = Environment {
        user: "someone".to_owned(),
    };
    let config = parse(Path::new("t.toml"), text, &env).unwrap();
    assert_eq!(config.tunnels[0].target.user, "someone");
    assert!(!Environment::current().user.is_empty());
}

#[test]
fn tunnels_are_sorted_and_forwards_kept_in_order() {
    let config = config(
        "[defaults]\nuse_agent = true\n\
         [tunnels.zeta]\nhost = \"z.example.com\"\nlocal = [\"2:x:2\", \"1:x:1\"]\n\
         [tunnels.alpha]\nhost = \"a.example.com\"\nremote = [\"0:localhost:22\", \"0:localhost:23\"]\n\
         [tunnels.mid]\nhost = \"m.example.com\"\ndynamic = [\"[::1]:1080\", { listen = \"*:1081\" }]\n",
    );
    let names: Vec<&str> = config.tunnels.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["alpha", "mid", "zeta"]);
    let specs: Vec<&str> = config.tunnels[2]
        .local
        .iter()
        .map(|f| f.spec.as_str())
        .collect();
    assert_eq!(specs, ["2:x:2", "1:x:1"]);
    // Port 0 may repeat: the server picks a different port for each.
    assert_eq!(config.tunnels[0].remote.len(), 2);
    let specs: Vec<&str> = config.tunnels[1]
        .dynamic
        .iter()
        .map(|f| f.spec.as_str())
        .collect();
    assert_eq!(specs, ["[::1]:1080", "*:1081"]);
}

#[test]
fn the_same_port_on_different_addresses_is_fine() {
    let config = config(
        "[defaults]\nuse_agent = true\n\
         [tunnels.a]\nhost = \"a.example.com\"\nlocal = [\"127.0.0.1:5432:x:1\", \"[::1]:5432:x:1\"]\n\
         [tunnels.b]\nhost = \"b.example.com\"\nlocal = [\"192.0.2.1:5432:x:1\"]\n\
         remote = [\"5432:localhost:5432\"]\n",
    );
    assert_eq!(config.tunnels.len(), 2);
}

#[test]
fn a_runaway_chain_is_an_error_not_a_hang() {
    // Each host jumps through the next one twice: 2^40 hops if flattened naively.
    let mut text = String::from("[defaults]\nuse_agent = true\n");
    for i in 0..40 {
        text.push_str(&format!(
            "[hosts.h{i}]\njump = [\"h{0}\", \"h{0}\"]\n",
            i + 1
        ));
    }
    text.push_str("[hosts.h40]\n[tunnels.t]\nhost = \"h0\"\nlocal = [\"1:x:1\"]\n");
    let err = parse(Path::new("t.toml"), &text, &env()).unwrap_err();
    assert!(
        err.to_string()
            .contains("the jump chain is longer than 32 hops"),
        "{err}"
    );
}

#[test]
fn the_built_in_backoff_max_network_stays_between_backoff_min_and_backoff_max() {
    // Files written before the key existed keep working: the built-in 5 s gives way.
    let small_max = only(&layered("backoff_max", Some("\"1s\""), None, None));
    assert_eq!(small_max.backoff.max_network, Duration::from_secs(1));
    let large_min = only(&layered("backoff_min", Some("\"10s\""), None, None));
    assert_eq!(large_min.backoff.max_network, Duration::from_secs(10));
    // A value that is written is taken as written.
    let written = only(&layered("backoff_max_network", None, None, Some("\"60s\"")));
    assert_eq!(written.backoff.max_network, written.backoff.max);
}
