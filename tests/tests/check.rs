//! `tunneld check` as users run it: the binary, its exit status and what it prints, for the
//! mistakes that load but fail at run time. No sshd is needed: check never connects. The names
//! it resolves are `localhost`, addresses, and names under `.invalid`, which it answers without
//! asking anyone, so nothing leaves the machine.

// Helpers outside #[test] functions unwrap too: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;

use harness::KeyPair;
use support::{test_dir, write_config};

/// Runs `tunneld check --config CONFIG`: exit status, stdout, stderr.
fn check(config: &Path) -> (Option<i32>, String, String) {
    let out = std::process::Command::new(harness::tunneld_bin())
        .args(["check", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `[defaults]` with a usable key, made in `dir` (once per directory): lines 1 and 2 of every
/// file here.
fn defaults(dir: &Path) -> String {
    let key = KeyPair::generate(dir, "id");
    format!(
        "[defaults]\nidentity_files = [\"{}\"]\n",
        key.private.display()
    )
}

#[test]
fn a_typo_of_a_hosts_name_fails_check_unless_the_name_resolves() {
    let dir = test_dir();
    let defaults = defaults(dir.path());
    let entries = "[hosts.\"bastion.invalid\"]\nhostname = \"127.0.0.1\"\n\
                   [hosts.localhost6]\nhostname = \"::1\"\n";
    let config = write_config(
        dir.path(),
        &format!(
            "{defaults}{entries}[tunnels.db]\nhost = \"127.0.0.1\"\njump = [\"bastoin.invalid\"]\n\
             local = [\"5432:localhost:5432\"]\n"
        ),
    );
    let (status, stdout, stderr) = check(&config);
    assert_eq!(status, Some(78), "{stdout}{stderr}");
    assert_eq!(
        stdout,
        format!(
            "db: {}@127.0.0.1:22 via bastoin.invalid; local 5432:localhost:5432\n",
            whoami()
        )
    );
    let path = config.display();
    assert_eq!(
        stderr,
        format!(
            "{path}:9:9: tunnels.db.jump[0]: \"bastoin.invalid\" is not a [hosts] name, and it \
             does not resolve as a host name: did you mean bastion.invalid? (expected a [hosts] \
             name, or a host name that resolves)\n{path}: 1 problem(s)\n"
        )
    );

    // `localhost` beside [hosts.localhost6] resolves: it may be meant, so it is a warning.
    let config = write_config(
        dir.path(),
        &format!(
            "{defaults}{entries}[tunnels.db]\nhost = \"localhost\"\nlocal = [\"5432:localhost:5432\"]\n"
        ),
    );
    let (status, stdout, stderr) = check(&config);
    assert_eq!(status, Some(0), "{stdout}{stderr}");
    let path = config.display();
    assert_eq!(
        stdout,
        format!(
            "db: {}@localhost:22; local 5432:localhost:5432\n  warning: {path}:8:8: \
             tunnels.db.host: \"localhost\" is not a [hosts] name, so it is dialled as a host \
             name (it resolves): did you mean localhost6?\n{path}: OK, 1 tunnel(s)\n",
            whoami()
        )
    );
}

#[test]
fn two_tunnels_that_ask_one_server_for_one_remote_port_fail_check() {
    let dir = test_dir();
    // `localhost` and `127.0.0.1` are one server: only resolving them tells.
    let config = write_config(
        dir.path(),
        &format!(
            "{}[tunnels.a]\nhost = \"localhost\"\nremote = [\"9000:localhost:3000\"]\n\
             [tunnels.b]\nhost = \"127.0.0.1\"\nremote = [\"9000:localhost:3000\"]\n\
             [tunnels.c]\nhost = \"127.0.0.1:2222\"\nremote = [\"9000:localhost:3000\"]\n",
            defaults(dir.path())
        ),
    );
    let (status, stdout, stderr) = check(&config);
    assert_eq!(status, Some(78), "{stdout}{stderr}");
    let path = config.display();
    assert_eq!(
        stderr,
        format!(
            "{path}:8:11: tunnels.b.remote[0]: remote port localhost:9000 of tunnel b clashes \
             with localhost:9000 of tunnel a at tunnels.a.remote[0] on one server (127.0.0.1:22 \
             and localhost:22 resolve to 127.0.0.1); it listens there for one of them only, and \
             refuses the other at every attempt, which looks like \"still held by a previous \
             session\" (expected a different port, or 0 for one the server picks)\n\
             {path}: 1 problem(s)\n"
        )
    );
    // Every tunnel is still listed.
    assert_eq!(stdout.lines().count(), 3, "{stdout}");
}

#[test]
fn no_bind_address_beside_an_explicit_loopback_in_another_tunnel_fails_check() {
    let dir = test_dir();
    let config = write_config(
        dir.path(),
        &format!(
            "{}[tunnels.a]\nhost = \"127.0.0.1\"\nlocal = [\"5432:localhost:5432\"]\n\
             [tunnels.b]\nhost = \"127.0.0.1\"\nlocal = [\"127.0.0.1:5432:localhost:5432\"]\n",
            defaults(dir.path())
        ),
    );
    // It loads, as run loads it, and check refuses it.
    assert!(tunneld_config::load(&config).is_ok());
    let (status, stdout, stderr) = check(&config);
    assert_eq!(status, Some(78), "{stdout}{stderr}");
    let path = config.display();
    assert_eq!(
        stderr,
        format!(
            "{path}:8:10: tunnels.b.local[0]: listener 127.0.0.1:5432 of tunnel b clashes with \
             localhost:5432 of tunnel a at tunnels.a.local[0]; no bind address, or localhost, \
             listens on 127.0.0.1 and ::1; both could never be bound (expected a different port \
             or address)\n{path}: 1 problem(s)\n"
        )
    );
}

#[test]
fn a_public_key_named_as_the_key_is_said_to_be_one() {
    let dir = test_dir();
    let key = KeyPair::generate(dir.path(), "db");
    // As ssh-keygen leaves it: mode 0644.
    let config = write_config(
        dir.path(),
        &format!(
            "[tunnels.db]\nhost = \"127.0.0.1\"\nidentity_files = [\"{}\"]\n\
             local = [\"5432:localhost:5432\"]\n",
            key.public.display()
        ),
    );
    let (status, stdout, stderr) = check(&config);
    assert_eq!(status, Some(78), "{stdout}{stderr}");
    assert_eq!(
        stderr,
        format!(
            "{path}: tunnels.db: host 127.0.0.1: {public} is not a usable private key: this is a \
             public key; name the private key file (the one without .pub)\n{path}: 1 problem(s)\n",
            path = config.display(),
            public = key.public.display()
        )
    );
}

#[test]
fn a_pasted_ssh_config_and_toml_types_are_said_in_the_files_terms() {
    let dir = test_dir();
    let config = write_config(
        dir.path(),
        "Host db\n    HostName 192.0.2.5\n    LocalForward 5432 localhost:5432\n",
    );
    let (status, stdout, stderr) = check(&config);
    assert_eq!(status, Some(78), "{stdout}{stderr}");
    assert_eq!(
        stderr,
        format!(
            "{}:1:1: \"Host db\" looks like ssh_config syntax, but this file is TOML with keys of \
             its own (expected a [hosts.db] table; the format is in configuration.md, in \
             /usr/share/doc/tunneld)\n",
            config.display()
        )
    );

    let config = write_config(
        dir.path(),
        "[hosts.db]\nport = \"2222\"\n[tunnels.db]\nhost = \"db\"\nlocal = \"5432:localhost:5432\"\n",
    );
    let (status, _, stderr) = check(&config);
    assert_eq!(status, Some(78));
    assert_eq!(
        stderr,
        format!(
            "{}:2:8: hosts.db.port: invalid type: string \"2222\", expected a port number \
             (1-65535), without quotes\n",
            config.display()
        )
    );
}

#[test]
fn urls_and_ipv6_targets_are_printed_as_the_file_takes_them() {
    let dir = test_dir();
    let config = write_config(
        dir.path(),
        &format!(
            "{}[tunnels.a]\nhost = \"ssh://admin@127.0.0.1:2222/\"\nlocal = [\"5432:localhost:5432\"]\n\
             [tunnels.b]\nhost = \"u@[::1]:22206\"\nlocal = [\"5433:localhost:5432\"]\n",
            defaults(dir.path())
        ),
    );
    let (status, stdout, stderr) = check(&config);
    assert_eq!(status, Some(0), "{stdout}{stderr}");
    assert_eq!(
        stdout,
        format!(
            "a: admin@127.0.0.1:2222; local 5432:localhost:5432\n\
             b: u@[::1]:22206; local 5433:localhost:5432\n{}: OK, 2 tunnel(s)\n",
            config.display()
        )
    );
}

/// The user check prints when the file names none: the one running it.
fn whoami() -> String {
    tunneld_config::Environment::current().user
}
