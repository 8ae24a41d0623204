//! The reference example of the file format (the contract, documented key by key in
//! docs/configuration.md) parses, and every value comes from where the
//! precedence rules say: tunnel, then its `[hosts]` entry, then `[defaults]`, then built-in.

#![allow(
    clippy::unwrap_used,
    reason = "helpers of tests; a panic is a failed test"
)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use tunneld_config::{
    Backoff, BindAddress, Config, DynamicForward, Environment, Finding, Hop, HostKeyPolicy,
    IdentityFile, Keepalive, Listen, LocalForward, Location, RekeyLimit, RemoteForward,
    RemoteListen, RemoteTarget, Target, parse, parse_with_findings,
};

/// The reference example, kept verbatim: do not edit it to make a test pass.
const CONTRACT: &str = r#"
[defaults]                          # optional; each key can be overridden per host and per tunnel
user = "tunnel"
identity_files = ["/etc/tunneld/keys/id_ed25519"]   # tried in order
use_agent = false                   # also try the keys of the agent at $SSH_AUTH_SOCK
known_hosts = "/var/lib/tunneld/known_hosts"
host_key_policy = "strict"          # "strict" | "accept-new"
keepalive_interval = "15s"          # like ServerAliveInterval; "0s" turns keepalives off
keepalive_max = 3                   # like ServerAliveCountMax
connect_timeout = "10s"             # TCP connect + SSH handshake + authentication, per hop
backoff_min = "1s"                  # first reconnect delay
backoff_max = "60s"                 # no delay is ever longer than this, jitter included
compression = false
ciphers = ["aes128-gcm@openssh.com", "chacha20-poly1305@openssh.com"]  # OpenSSH names, in order of
                                    # preference; when absent, a sensible default for this CPU

[hosts.bastion]                     # like a Host block of ~/.ssh/config
hostname = "bastion.example.com"
port = 22
user = "admin"
identity_files = ["/etc/tunneld/keys/bastion"]

[hosts.db-server]
hostname = "192.168.1.50"
user = "dbadmin"
jump = ["bastion"]                  # like ProxyJump: [hosts] names or [user@]host[:port], in order

[tunnels.db]
host = "db-server"                  # a [hosts] name, or [user@]hostname[:port]
local = ["5432:localhost:5432", "127.0.0.1:6379:localhost:6379"]   # like -L [bind:]port:host:hostport
remote = ["9000:localhost:3000"]    # like -R [bind:]port:host:hostport ; port 0 = the server picks
dynamic = ["1080"]                  # like -D [bind:]port : a SOCKS proxy (SOCKS5, SOCKS4/4a)

[tunnels.office-proxy]
host = "admin@proxy.example.com"
identity_files = ["credential:office"]   # $CREDENTIALS_DIRECTORY/office (systemd LoadCredential=)
dynamic = [{ listen = "127.0.0.1:1080", auth_file = "/etc/tunneld/socks-users" }]
                                    # SOCKS5 username/password: "user:password" lines in a
                                    # private file; the table form also takes plain `listen`
"#;

fn contract() -> Config {
    let env = Environment {
        user: "runner".to_owned(),
    };
    parse(Path::new("/etc/tunneld/tunneld.toml"), CONTRACT, &env).unwrap()
}

fn ciphers() -> Vec<String> {
    vec![
        "aes128-gcm@openssh.com".to_owned(),
        "chacha20-poly1305@openssh.com".to_owned(),
    ]
}

fn hop(label: &str, hostname: &str, user: &str, key: IdentityFile) -> Hop {
    Hop {
        label: label.to_owned(),
        hostname: hostname.to_owned(),
        port: 22,
        user: user.to_owned(),
        identity_files: vec![key],
        certificate_files: vec![],
        use_agent: false,
        known_hosts: PathBuf::from("/var/lib/tunneld/known_hosts"),
        global_known_hosts: PathBuf::from("/etc/tunneld/known_hosts"),
        host_key_policy: HostKeyPolicy::Strict,
        update_host_keys: true,
        connect_timeout: Duration::from_secs(10),
        compression: false,
        ciphers: ciphers(),
        rekey_limit: RekeyLimit::default(),
        proxy: None,
    }
}

fn key(path: &str) -> IdentityFile {
    IdentityFile::Path(PathBuf::from(path))
}

#[test]
fn tunnels_are_sorted_by_name() {
    let config = contract();
    assert_eq!(config.path, Path::new("/etc/tunneld/tunneld.toml"));
    let names: Vec<&str> = config.tunnels.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["db", "office-proxy"]);
}

#[test]
fn db_takes_its_target_from_the_host_entry_and_its_jump_from_it_too() {
    let config = contract();
    let db = &config.tunnels[0];
    // user from [hosts.db-server], key and the rest from [defaults].
    assert_eq!(
        db.target,
        hop(
            "db-server",
            "192.168.1.50",
            "dbadmin",
            key("/etc/tunneld/keys/id_ed25519")
        )
    );
    // The jump comes from [hosts.db-server]; the bastion takes its own user and key.
    assert_eq!(
        db.jump,
        [hop(
            "bastion",
            "bastion.example.com",
            "admin",
            key("/etc/tunneld/keys/bastion")
        )]
    );
    assert_eq!(
        db.keepalive,
        Keepalive {
            interval: Some(Duration::from_secs(15)),
            max: 3
        }
    );
    assert_eq!(
        db.backoff,
        Backoff {
            min: Duration::from_secs(1),
            max: Duration::from_secs(60),
            max_network: Duration::from_secs(5),
        }
    );
}

#[test]
fn db_forwards() {
    let config = contract();
    let db = &config.tunnels[0];
    assert_eq!(
        db.local,
        [
            LocalForward {
                listen: Listen::Port {
                    bind: BindAddress::Default,
                    port: 5432,
                },
                target: Target::Port {
                    host: "localhost".to_owned(),
                    port: 5432,
                },
                spec: "5432:localhost:5432".to_owned(),
            },
            LocalForward {
                listen: Listen::Port {
                    bind: BindAddress::Host("127.0.0.1".to_owned()),
                    port: 6379,
                },
                target: Target::Port {
                    host: "localhost".to_owned(),
                    port: 6379,
                },
                spec: "127.0.0.1:6379:localhost:6379".to_owned(),
            },
        ]
    );
    assert_eq!(
        db.remote,
        [RemoteForward {
            listen: RemoteListen::Port {
                bind: BindAddress::Default,
                port: 9000
            },
            target: RemoteTarget::Connect(Target::Port {
                host: "localhost".to_owned(),
                port: 3000
            }),
            spec: "9000:localhost:3000".to_owned(),
        }]
    );
    assert_eq!(
        db.dynamic,
        [DynamicForward {
            bind: BindAddress::Default,
            port: 1080,
            auth_file: None,
            spec: "1080".to_owned(),
        }]
    );
}

#[test]
fn office_proxy_takes_the_user_from_its_host_string_and_a_credential() {
    let config = contract();
    let proxy = &config.tunnels[1];
    assert_eq!(
        proxy.target,
        hop(
            "admin@proxy.example.com",
            "proxy.example.com",
            "admin",
            IdentityFile::Credential("office".to_owned())
        )
    );
    assert_eq!(proxy.jump, []);
    assert_eq!(proxy.local, []);
    assert_eq!(proxy.remote, []);
    assert_eq!(
        proxy.dynamic,
        [DynamicForward {
            bind: BindAddress::Host("127.0.0.1".to_owned()),
            port: 1080,
            auth_file: Some(PathBuf::from("/etc/tunneld/socks-users")),
            spec: "127.0.0.1:1080".to_owned(),
        }]
    );
}

#[test]
fn its_two_socks_listeners_on_1080_load_but_fail_check() {
    // `dynamic = ["1080"]` listens on 127.0.0.1:1080 and [::1]:1080, so the office proxy's
    // 127.0.0.1:1080 can never be bound beside it. The example must load (it is the contract),
    // so this is left to `tunneld check`, which fails on it.
    let env = Environment {
        user: "runner".to_owned(),
    };
    let (_, findings) =
        parse_with_findings(Path::new("/etc/tunneld/tunneld.toml"), CONTRACT, &env).unwrap();
    assert_eq!(
        findings,
        [Finding::ListenerClash {
            at: Location {
                line: 37,
                column: 23,
                key: "tunnels.office-proxy.dynamic[0]".to_owned()
            },
            tunnel: "office-proxy".to_owned(),
            message: "listener 127.0.0.1:1080 of tunnel office-proxy clashes with localhost:1080 \
                      of tunnel db at tunnels.db.dynamic[0]; no bind address, or localhost, \
                      listens on 127.0.0.1 and ::1; both could never be bound (expected a \
                      different port or address)"
                .to_owned(),
        }]
    );
}

#[test]
fn without_defaults_the_built_in_table_applies() {
    let text = CONTRACT
        .split("[hosts.bastion]")
        .nth(1)
        .map(|rest| format!("[hosts.bastion]{rest}"))
        .unwrap()
        .replace(
            "[tunnels.db]\n",
            "[tunnels.db]\nidentity_files = [\"/etc/tunneld/keys/db\"]\n",
        );
    let env = Environment {
        user: "runner".to_owned(),
    };
    let config = parse(Path::new("/etc/tunneld/tunneld.toml"), &text, &env).unwrap();
    let db = &config.tunnels[0];
    let mut expected = hop(
        "db-server",
        "192.168.1.50",
        "dbadmin",
        key("/etc/tunneld/keys/db"),
    );
    expected.ciphers = vec![];
    assert_eq!(db.target, expected);
    let mut bastion = hop(
        "bastion",
        "bastion.example.com",
        "admin",
        key("/etc/tunneld/keys/bastion"),
    );
    bastion.ciphers = vec![];
    assert_eq!(db.jump, [bastion]);
    assert_eq!(
        db.keepalive,
        Keepalive {
            interval: Some(Duration::from_secs(15)),
            max: 3
        }
    );
    // The office proxy has no user in [defaults] any more, but its host string names one.
    assert_eq!(config.tunnels[1].target.user, "admin");
}
