//! Host keys that rotate (`update_host_keys`, OpenSSH's UpdateHostKeys) against a real sshd,
//! with tunneld in process: a server whose keys change while nobody watches keeps its tunnel,
//! and the learned known_hosts follows it, under the rules that keep that safe. How the file is
//! rewritten beside other writers is tested in crates/tunneld-ssh/tests/known_hosts_update.rs.

// Helpers outside #[test] functions unwrap too: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use harness::{
    EchoServer, KeyKind, KeyPair, Sshd, backing_off, connection_id, free_port, is_backing_off,
    localhost, random_bytes, up_with_new_connection, wait_until_async,
};
use support::{InProcess, defaults_for, echo_through, host_line, test_dir, write_config};

/// Generous: a reconnect after sshd restarts, then the announcement and its proof.
const FOLLOW_TIMEOUT: Duration = Duration::from_secs(30);

/// Rewrites sshd's config with `HostKey` lines for exactly `keys` (the harness's own key A
/// stands for itself), and restarts it.
fn restart_with_host_keys(sshd: &mut Sshd, keys: &[&Path]) {
    let config = std::fs::read_to_string(sshd.config_path()).unwrap();
    let without: String = config
        .lines()
        .filter(|line| !line.starts_with("HostKey "))
        .map(|line| format!("{line}\n"))
        .collect();
    let lines: String = keys
        .iter()
        .map(|key| format!("HostKey {}\n", key.display()))
        .collect();
    std::fs::write(sshd.config_path(), format!("{lines}{without}")).unwrap();
    sshd.restart();
}

/// An ECDSA host key B in sshd's directory.
fn host_key_b(sshd: &Sshd) -> KeyPair {
    KeyPair::generate_with(sshd.dir(), "ssh_host_ecdsa_key", KeyKind::EcdsaP256, None)
}

fn key_a_path(sshd: &Sshd) -> PathBuf {
    sshd.dir().join("ssh_host_ed25519_key")
}

fn entry(sshd: &Sshd, key: &str) -> String {
    format!("[127.0.0.1]:{} {key}\n", sshd.port())
}

/// A tunnel `rot` to `sshd` with a local forward to `echo`, keepalives every second (sshd logs
/// each at DEBUG1: they tell when a connection has been up for a while), and `lines`.
fn config(dir: &Path, sshd: &Sshd, echo: &EchoServer, port: u16, lines: &str) -> PathBuf {
    let text = format!(
        "{}[tunnels.rot]\n{}local = [\"{port}:127.0.0.1:{}\"]\nkeepalive_interval = \"1s\"\n\
         global_known_hosts = \"{}\"\n{lines}",
        defaults_for(sshd, dir),
        host_line(sshd),
        echo.port(),
        dir.join("global_known_hosts").display(),
    );
    write_config(dir, &text)
}

async fn file_becomes(path: &Path, expected: &str) -> bool {
    wait_until_async(FOLLOW_TIMEOUT, || async {
        std::fs::read_to_string(path).unwrap_or_default() == expected
    })
    .await
}

/// Waits until sshd has logged `count` keepalives since `mark`: by then the connection has
/// been up for seconds, and anything it was going to do after login it has done.
fn keepalives_since(sshd: &Sshd, mark: usize, count: usize) {
    assert!(
        sshd.wait_for_log_since(mark, "rtype keepalive@openssh.com", Duration::from_secs(20)),
        "no keepalive reached sshd:\n{}",
        sshd.log()
    );
    for _ in 1..count {
        let again = sshd.log_mark();
        assert!(sshd.wait_for_log_since(
            again,
            "rtype keepalive@openssh.com",
            Duration::from_secs(20)
        ));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_host_key_is_learned_then_the_old_one_dropped_without_a_manual_step() {
    let dir = test_dir();
    let mut sshd = Sshd::builder().log_level("DEBUG1").start();
    let echo = EchoServer::start();
    let port = free_port();
    let global = dir.path().join("global_known_hosts");
    std::fs::write(&global, "# pinned by hand; tunneld never writes here\n").unwrap();
    let tunneld = InProcess::start(&config(dir.path(), &sshd, &echo, port, ""));
    let learned = dir.path().join("known_hosts");
    let key_a = sshd.host_key().public_key();
    assert_eq!(
        std::fs::read_to_string(&learned).unwrap(),
        entry(&sshd, &key_a)
    );
    let first = connection_id(&tunneld.wait_up("rot").await);

    // The server gets a second key: after the next login, verified by A, B is in the file.
    let b = host_key_b(&sshd);
    let mark = sshd.log_mark();
    let a = key_a_path(&sshd);
    restart_with_host_keys(&mut sshd, &[&a, &b.private]);
    let second = connection_id(
        &tunneld
            .wait_for("rot", FOLLOW_TIMEOUT, up_with_new_connection(first))
            .await,
    );
    let both = entry(&sshd, &key_a) + &entry(&sshd, &b.public_key());
    assert!(
        file_becomes(&learned, &both).await,
        "B was not learned: {:?}",
        std::fs::read_to_string(&learned)
    );
    // It was proven: tunneld asked the server to sign with B before writing it.
    assert!(
        sshd.log()[mark..].contains("rtype hostkeys-prove-00@openssh.com"),
        "no proof was asked for:\n{}",
        &sshd.log()[mark..]
    );

    // A is retired: tunneld reconnects with B, and A leaves the file.
    restart_with_host_keys(&mut sshd, &[&b.private]);
    tunneld
        .wait_for("rot", FOLLOW_TIMEOUT, up_with_new_connection(second))
        .await;
    assert!(
        file_becomes(&learned, &entry(&sshd, &b.public_key())).await,
        "A was not removed: {:?}",
        std::fs::read_to_string(&learned)
    );
    let payload = random_bytes(64 << 10, 7);
    assert!(echo_through(localhost(port), &payload).await == payload);
    assert_eq!(
        std::fs::read_to_string(&global).unwrap(),
        "# pinned by hand; tunneld never writes here\n"
    );
    tunneld.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_update_host_keys_false_nothing_is_written_and_a_retired_key_locks_it_out() {
    let dir = test_dir();
    let mut sshd = Sshd::builder().log_level("DEBUG1").start();
    let echo = EchoServer::start();
    let port = free_port();
    let text = config(dir.path(), &sshd, &echo, port, "update_host_keys = false\n");
    let tunneld = InProcess::start(&text);
    let learned = dir.path().join("known_hosts");
    let before = std::fs::read(&learned).unwrap();
    let first = connection_id(&tunneld.wait_up("rot").await);

    let b = host_key_b(&sshd);
    let mark = sshd.log_mark();
    let a = key_a_path(&sshd);
    restart_with_host_keys(&mut sshd, &[&a, &b.private]);
    tunneld
        .wait_for("rot", FOLLOW_TIMEOUT, up_with_new_connection(first))
        .await;
    keepalives_since(&sshd, mark, 2);
    assert!(!sshd.log()[mark..].contains("hostkeys-prove"));
    assert_eq!(std::fs::read(&learned).unwrap(), before);

    // Strict, and B never learned: with A gone the server is refused, as it should be.
    restart_with_host_keys(&mut sshd, &[&b.private]);
    let refused = tunneld
        .wait_for("rot", FOLLOW_TIMEOUT, |state| {
            is_backing_off(state) && backing_off(state).permanent
        })
        .await;
    let failure = backing_off(&refused);
    assert!(failure.reason.contains("refusing"), "{failure:?}");
    assert_eq!(std::fs::read(&learned).unwrap(), before);
    tunneld.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_learned_by_accept_new_in_this_connection_vouches_for_nothing() {
    let dir = test_dir();
    let mut sshd = Sshd::builder().log_level("DEBUG1").start();
    let b = host_key_b(&sshd);
    let a = key_a_path(&sshd);
    restart_with_host_keys(&mut sshd, &[&a, &b.private]);
    let echo = EchoServer::start();
    let port = free_port();
    let text = config(
        dir.path(),
        &sshd,
        &echo,
        port,
        "host_key_policy = \"accept-new\"\n",
    );
    let learned = dir.path().join("known_hosts");
    std::fs::remove_file(&learned).unwrap();
    let mark = sshd.log_mark();
    let tunneld = InProcess::start(&text);
    tunneld.wait_up("rot").await;
    keepalives_since(&sshd, mark, 2);
    // Only the key of the login was learned; the announcement was not followed.
    assert_eq!(
        std::fs::read_to_string(&learned).unwrap(),
        entry(&sshd, &sshd.host_key().public_key())
    );
    assert!(!sshd.log()[mark..].contains("hostkeys-prove"));
    tunneld.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_pinned_in_the_global_file_is_never_updated_and_the_global_file_never_written() {
    let dir = test_dir();
    let mut sshd = Sshd::builder().log_level("DEBUG1").start();
    let echo = EchoServer::start();
    let port = free_port();
    let text = config(dir.path(), &sshd, &echo, port, "");
    // The key is pinned in the global file only.
    let learned = dir.path().join("known_hosts");
    let global = dir.path().join("global_known_hosts");
    std::fs::rename(&learned, &global).unwrap();
    let pinned = std::fs::read(&global).unwrap();
    let b = host_key_b(&sshd);
    let a = key_a_path(&sshd);
    restart_with_host_keys(&mut sshd, &[&a, &b.private]);
    let mark = sshd.log_mark();
    let tunneld = InProcess::start(&text);
    tunneld.wait_up("rot").await;
    keepalives_since(&sshd, mark, 2);
    assert!(!sshd.log()[mark..].contains("hostkeys-prove"));
    assert!(!learned.exists(), "the learned file was written");
    assert_eq!(std::fs::read(&global).unwrap(), pinned);
    tunneld.stop().await;
}
