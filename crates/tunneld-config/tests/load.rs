//! Reading files: missing files, relative paths, and never a panic on any input.

#![allow(
    clippy::unwrap_used,
    reason = "helpers of tests; a panic is a failed test"
)]

use std::path::Path;

use tunneld_config::{ConfigError, Environment, IdentityFile, load, parse};

#[test]
fn a_missing_file_names_the_path_and_the_os_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.toml");
    let err = load(&path).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "{}: cannot read: No such file or directory (os error 2)",
            path.display()
        )
    );
    assert_eq!(err.path(), path);
    assert_eq!((err.line(), err.column(), err.key()), (None, None, None));
}

#[test]
fn relative_paths_are_relative_to_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.toml");
    std::fs::write(
        &path,
        "[tunnels.db]\nhost = \"db.example.com\"\nidentity_files = [\"keys/db\", \
         \"/etc/tunneld/keys/db\"]\nknown_hosts = \"known_hosts\"\n\
         global_known_hosts = \"pinned/known_hosts\"\n\
         dynamic = [{ listen = \"1080\", auth_file = \"socks-users\" }]\n",
    )
    .unwrap();
    let config = load(&path).unwrap();
    let db = &config.tunnels[0];
    assert_eq!(config.path, path);
    assert_eq!(
        db.target.identity_files,
        [
            IdentityFile::Path(dir.path().join("keys/db")),
            IdentityFile::Path("/etc/tunneld/keys/db".into()),
        ]
    );
    assert_eq!(db.target.known_hosts, dir.path().join("known_hosts"));
    assert_eq!(
        db.target.global_known_hosts,
        dir.path().join("pinned/known_hosts")
    );
    assert_eq!(
        db.dynamic[0].auth_file,
        Some(dir.path().join("socks-users"))
    );
    // The environment's user, since the file names none.
    assert_eq!(db.target.user, Environment::current().user);
}

#[test]
fn never_panics_on_damaged_input() {
    let text = "[defaults]\nuser = \"tunnel\"\nidentity_files = [\"/etc/tunneld/keys/id\"]\n\
                keepalive_interval = \"15s\"\nciphers = [\"aes128-ctr\"]\n\
                [hosts.bastion]\nhostname = \"bastion.example.com\"\nport = 22\njump = []\n\
                [hosts.db]\nhostname = \"2001:db8::5\"\njump = [\"bastion\", \"gw@[::1]:2\"]\n\
                [tunnels.db]\nhost = \"db\"\nlocal = [\"[::1]:5432:db:5432\", \"*:1:h:2\"]\n\
                remote = [\"0:localhost:22\"]\n\
                dynamic = [\"1080\", { listen = \"[::1]:1081\", auth_file = \"/u\" }]\n\
                [tunnels.e2]\nhost = \"u@h\"\nlocal = [\"2:é:1\"]\n\
                [tunnels.e3]\nhost = \"ssh://u%40x@[::1]:2/\"\nremote = [\"2:h:2\"]\n";
    let env = Environment {
        user: "runner".to_owned(),
    };
    let path = Path::new("t.toml");
    assert_eq!(parse(path, text, &env).unwrap().tunnels.len(), 3);
    assert!(damage(text) > 1000);
    // A pasted ssh_config, and the mistakes that are close to it.
    let pasted = "Host db\n  HostName 192.0.2.5\n  LocalForward 5432 [::1]:5432\nPort=22\n\
                  ProxyJump a,b\nServerAliveInterval 15\n";
    assert!(parse(path, pasted, &env).is_err());
    assert!(damage(pasted) > 100);
}

/// Parses `text` cut short, with one character dropped, or replaced with a troublemaker, at
/// every position: no panic, and every error points inside the text. Returns how many files
/// were tried.
fn damage(text: &str) -> usize {
    let env = Environment {
        user: "runner".to_owned(),
    };
    let path = Path::new("t.toml");
    let mut cases = 0;
    for (at, c) in text.char_indices() {
        let end = at + c.len_utf8();
        // Cut the file short, drop one character, or replace it with a troublemaker.
        let variants = [
            text[..at].to_owned(),
            format!("{}{}", &text[..at], &text[end..]),
            format!("{}:{}", &text[..at], &text[end..]),
            format!("{}[{}", &text[..at], &text[end..]),
            format!("{}\"{}", &text[..at], &text[end..]),
            format!("{}0{}", &text[..at], &text[end..]),
        ];
        for variant in variants {
            if let Err(err) = parse(path, &variant, &env) {
                let line = err.line().unwrap();
                assert!(
                    line >= 1 && line <= variant.lines().count().max(1) + 1,
                    "{err}"
                );
                assert!(err.column().unwrap() >= 1, "{err}");
            }
            cases += 1;
        }
    }
    cases
}
