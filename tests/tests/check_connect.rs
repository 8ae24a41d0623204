//! `tunneld check --connect` as users run it, against real OpenSSH sshds: the binary, its exit
//! status and its lines. It connects each tunnel once, tries each forward without binding
//! anything, writes nothing, and tells a remote port the running daemon holds from a failure.

// Helpers outside #[test] functions unwrap too: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;
use std::time::Duration;

use harness::{
    ClosedPort, EchoServer, HostEntry, KeyKind, KeyPair, Sshd, TunneldProcess, free_port,
    host_entry, wait_until,
};
use support::{test_dir, write_config, write_one_tunnel};

/// Runs `tunneld check --connect --config CONFIG EXTRA...`: exit status, stdout, stderr.
fn check_connect(config: &Path, extra: &[&str]) -> (Option<i32>, String, String) {
    let out = std::process::Command::new(harness::tunneld_bin())
        .args(["check", "--connect", "--config", config.to_str().unwrap()])
        .args(extra)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Whether anything listens on 127.0.0.1:`port`.
fn listening(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

#[test]
fn a_tunnel_through_a_jump_host_passes_with_its_local_and_remote_forwards() {
    let dir = test_dir();
    let (hop, target) = (Sshd::start(), Sshd::start());
    let echo = EchoServer::start();
    let (local_port, remote_port) = (free_port(), free_port());
    let local = format!("{local_port}:127.0.0.1:{}", echo.port());
    let remote = format!("{remote_port}:127.0.0.1:{}", echo.port());
    let config = write_config(
        dir.path(),
        &format!(
            "{}{}[tunnels.db]\nhost = \"target\"\njump = [\"bastion\"]\n\
             local = [\"{local}\"]\nremote = [\"{remote}\"]\n",
            host_entry(dir.path(), "bastion", &hop, ""),
            host_entry(dir.path(), "target", &target, ""),
        ),
    );
    let known = std::fs::read(dir.path().join("known_hosts_target")).unwrap();
    let (status, stdout, stderr) = check_connect(&config, &[]);
    eprintln!("OUT<<{stdout}{stderr}>>");
    assert_eq!(status, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!(
            "db: ok, connected to target (127.0.0.1:{})",
            target.port()
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("  local {local}: ok\n")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("  remote {remote}: ok\n")),
        "{stdout}"
    );
    // The channel reached the echo server; nothing was bound here, and the remote port was given
    // back.
    assert!(
        wait_until(Duration::from_secs(5), || echo.connections_total() == 1),
        "the echo server saw {} connections",
        echo.connections_total()
    );
    assert!(
        !listening(local_port),
        "check bound the local forward's port"
    );
    assert!(
        wait_until(Duration::from_secs(5), || !listening(remote_port)),
        "the remote port was not cancelled"
    );
    assert_eq!(
        std::fs::read(dir.path().join("known_hosts_target")).unwrap(),
        known
    );
}

#[test]
fn a_local_forward_to_a_closed_port_is_named_with_the_servers_reason() {
    let dir = test_dir();
    let sshd = Sshd::start();
    let closed = ClosedPort::new();
    let spec = format!("{}:127.0.0.1:{}", free_port(), closed.port());
    let config = write_one_tunnel(dir.path(), &sshd, "db", &format!("local = [\"{spec}\"]\n"));
    let (status, stdout, stderr) = check_connect(&config, &[]);
    eprintln!("OUT<<{stdout}{stderr}>>");
    assert_eq!(status, Some(1), "{stdout}{stderr}");
    let line = format!(
        "  local {spec}: FAILED: connection to 127.0.0.1:{} via 127.0.0.1:{} refused by the server",
        closed.port(),
        sshd.port()
    );
    assert!(stdout.contains(&line), "no {line:?} in:\n{stdout}");
    assert!(stdout.contains("Connection refused"), "{stdout}");
    assert!(stderr.contains("1 connection check(s) failed"), "{stderr}");
}

#[test]
fn a_remote_port_that_sshd_does_not_permit_is_named() {
    let dir = test_dir();
    let allowed = free_port();
    let sshd = Sshd::builder()
        .config_line(format!("PermitListen localhost:{allowed}"))
        .start();
    let ok = format!("{allowed}:127.0.0.1:9");
    let refused = format!("{}:127.0.0.1:9", free_port());
    let config = write_one_tunnel(
        dir.path(),
        &sshd,
        "back",
        &format!("remote = [\"{ok}\", \"{refused}\"]\n"),
    );
    let (status, stdout, stderr) = check_connect(&config, &[]);
    eprintln!("OUT<<{stdout}{stderr}>>");
    assert_eq!(status, Some(1), "{stdout}{stderr}");
    assert!(stdout.contains(&format!("  remote {ok}: ok\n")), "{stdout}");
    let line = format!("  remote {refused}: FAILED: ");
    assert!(stdout.contains(&line), "no {line:?} in:\n{stdout}");
    assert!(stdout.contains("PermitListen"), "{stdout}");
}

#[test]
fn a_key_the_jump_host_refuses_names_that_hop() {
    let dir = test_dir();
    let (hop, target) = (Sshd::start(), Sshd::start());
    let stray = KeyPair::generate(dir.path(), "stray");
    let known = dir.path().join("known_hosts_bastion");
    std::fs::write(&known, format!("{}\n", hop.known_hosts_line())).unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            "{}{}[tunnels.db]\nhost = \"target\"\njump = [\"bastion\"]\n\
             local = [\"{}:127.0.0.1:9\"]\n",
            HostEntry::new("bastion", &hop, &known)
                .identity(&stray.private)
                .toml(),
            host_entry(dir.path(), "target", &target, ""),
            free_port(),
        ),
    );
    let (status, stdout, stderr) = check_connect(&config, &[]);
    eprintln!("OUT<<{stdout}{stderr}>>");
    assert_eq!(status, Some(1), "{stdout}{stderr}");
    assert!(
        stdout.contains("db: FAILED: hop 1 (bastion): authentication refused"),
        "{stdout}"
    );
}

#[test]
fn an_unknown_host_under_accept_new_would_be_learned_and_nothing_is_written() {
    let dir = test_dir();
    let sshd = Sshd::start();
    let known = dir.path().join("known_hosts");
    let config = write_config(
        dir.path(),
        &format!(
            "[tunnels.db]\nhost = \"{user}@127.0.0.1:{port}\"\nidentity_files = [\"{key}\"]\n\
             known_hosts = \"{kh}\"\nhost_key_policy = \"accept-new\"\n\
             local = [\"{local}:127.0.0.1:9\"]\n",
            user = sshd.user(),
            port = sshd.port(),
            key = sshd.client_key().private.display(),
            kh = known.display(),
            local = free_port(),
        ),
    );
    let (status, stdout, stderr) = check_connect(&config, &[]);
    eprintln!("OUT<<{stdout}{stderr}>>");
    let line = format!(
        "db: 127.0.0.1:{}: unknown host, would learn ssh-ed25519 {} (accept-new)",
        sshd.port(),
        sshd.host_key().fingerprint()
    );
    assert!(stdout.contains(&line), "no {line:?} in:\n{stdout}{stderr}");
    assert!(stdout.contains("db: ok, connected to"), "{stdout}");
    assert!(!known.exists(), "check --connect wrote {}", known.display());
    // The local forward's target is closed: its failure still counts, the unknown host does not.
    assert_eq!(status, Some(1), "{stdout}{stderr}");
    assert!(stdout.contains("FAILED"), "{stdout}");
    assert_eq!(stdout.matches("FAILED").count(), 1, "{stdout}");
}

#[test]
fn a_remote_port_the_running_daemon_holds_is_not_a_failure() {
    let dir = test_dir();
    let sshd = Sshd::start();
    let echo = EchoServer::start();
    let (local_port, remote_port) = (free_port(), free_port());
    let local = format!("{local_port}:127.0.0.1:{}", echo.port());
    let remote = format!("{remote_port}:127.0.0.1:{}", echo.port());
    let config = write_one_tunnel(
        dir.path(),
        &sshd,
        "db",
        &format!("local = [\"{local}\"]\nremote = [\"{remote}\"]\n"),
    );
    let daemon = TunneldProcess::spawn(&["run", "--config", config.to_str().unwrap()], &[]);
    assert!(
        wait_until(Duration::from_secs(20), || listening(local_port)
            && listening(remote_port)),
        "the daemon did not come up:\n{}",
        daemon.logs()
    );
    let socket = daemon.runtime_dir().unwrap().join("tunneld.sock");
    let (status, stdout, stderr) = check_connect(&config, &["--socket", socket.to_str().unwrap()]);
    assert_eq!(status, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!(
            "  remote {remote}: ok, port {remote_port} held by the running daemon\n"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("  local {local}: ok\n")),
        "{stdout}"
    );

    // Without the daemon's word, the same port is a failure.
    let (status, stdout, stderr) = check_connect(&config, &["--socket", "/nonexistent.sock"]);
    assert_eq!(status, Some(1), "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!("  remote {remote}: FAILED")),
        "{stdout}"
    );
}

#[test]
fn host_keys_the_server_announces_are_not_followed() {
    let dir = test_dir();
    let mut sshd = Sshd::builder().log_level("DEBUG1").start();
    // A second host key B: a daemon, verified by A, would prove B and add it to known_hosts.
    let b = KeyPair::generate_with(sshd.dir(), "ssh_host_ecdsa_key", KeyKind::EcdsaP256, None);
    let config_text = std::fs::read_to_string(sshd.config_path()).unwrap();
    let a = sshd.dir().join("ssh_host_ed25519_key");
    std::fs::write(
        sshd.config_path(),
        format!(
            "HostKey {}\nHostKey {}\n{}",
            a.display(),
            b.private.display(),
            config_text
                .lines()
                .filter(|line| !line.starts_with("HostKey "))
                .map(|line| format!("{line}\n"))
                .collect::<String>()
        ),
    )
    .unwrap();
    sshd.restart();
    let config = write_one_tunnel(
        dir.path(),
        &sshd,
        "db",
        &format!("local = [\"{}:127.0.0.1:{}\"]\n", free_port(), sshd.port()),
    );
    let known = dir.path().join("known_hosts");
    let before = std::fs::read_to_string(&known).unwrap();
    let mark = sshd.log_mark();
    let (status, stdout, stderr) = check_connect(&config, &[]);
    assert_eq!(status, Some(0), "{stdout}{stderr}");
    // sshd announced B (it does after every login); nothing asked it to prove B.
    assert!(
        sshd.wait_for_log_since(mark, "Connection closed", Duration::from_secs(10)),
        "{}",
        sshd.log()
    );
    assert!(
        !sshd.log()[mark..].contains("hostkeys-prove-00@openssh.com"),
        "check --connect asked for a proof of the announced keys:\n{}",
        &sshd.log()[mark..]
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(std::fs::read_to_string(&known).unwrap(), before);
}
