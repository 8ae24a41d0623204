//! The tunneld binary as users run it, against a real OpenSSH sshd: host keys, authentication,
//! signals, exit codes and what the logs say.

// Helpers outside #[test] functions unwrap too: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod support;

use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use harness::{
    EchoServer, KeyPair, SshAgent, Sshd, TunneldProcess, free_port, localhost, random_bytes,
    try_echo, wait_until,
};
use nix::sys::signal::Signal;
use support::{defaults_for, host_line, test_dir, write_config};

const LOG_TIMEOUT: Duration = Duration::from_secs(20);

fn run(config: &Path) -> TunneldProcess {
    TunneldProcess::spawn(&["run", "--config", config.to_str().unwrap()], &[])
}

/// A blocking echo round trip through a forward.
fn echo_once(port: u16, payload: &[u8]) -> Vec<u8> {
    try_echo(port, payload, Duration::from_secs(20)).unwrap()
}

/// The config of one tunnel to `sshd` forwarding a free port to `echo`, with `[defaults]`
/// written by `defaults`. Returns the config path and the forward's port.
fn one_tunnel(
    dir: &Path,
    sshd: &Sshd,
    defaults: &str,
    echo: &EchoServer,
) -> (std::path::PathBuf, u16) {
    let port = free_port();
    let text = format!(
        "{defaults}[tunnels.t]\n{}local = [\"{port}:127.0.0.1:{}\"]\n",
        host_line(sshd),
        echo.port()
    );
    (write_config(dir, &text), port)
}

#[test]
fn logs_say_what_happens_and_sigterm_stops_cleanly_with_connections_open() {
    let dir = test_dir();
    let sshd = Sshd::start();
    let echo = EchoServer::start();
    let (config, port) = one_tunnel(dir.path(), &sshd, &defaults_for(&sshd, dir.path()), &echo);
    let mut tunneld = run(&config);
    tunneld.expect_log("tunnel up", LOG_TIMEOUT);
    for line in [
        "tunnel=t",
        "connecting",
        "authenticated",
        "listening",
        "127.0.0.1:",
        "[::1]:",
    ] {
        assert!(
            tunneld.logs().contains(line),
            "no {line:?} in:\n{}",
            tunneld.logs()
        );
    }
    assert_eq!(echo_once(port, b"hello"), b"hello");

    // Two forwarded connections left open mid-exchange.
    let open: Vec<TcpStream> = (0..2)
        .map(|_| {
            use std::io::Write;
            let mut s = TcpStream::connect(localhost(port)).unwrap();
            s.write_all(b"still here").unwrap();
            s
        })
        .collect();
    assert!(wait_until(LOG_TIMEOUT, || echo.connections_total() >= 3));

    let asked = Instant::now();
    tunneld.signal(Signal::SIGTERM);
    let status = tunneld
        .wait_exit(Duration::from_secs(2))
        .expect("tunneld must stop within 2 s of SIGTERM");
    assert!(
        status.success(),
        "exit status {status:?}\n{}",
        tunneld.logs()
    );
    assert!(asked.elapsed() < Duration::from_secs(2));
    // Listeners are gone, and the open connections were closed.
    assert!(TcpStream::connect(localhost(port)).is_err());
    for mut stream in open {
        use std::io::Read;
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut rest = Vec::new();
        let closed = match stream.read_to_end(&mut rest) {
            Ok(_) => true,
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        };
        assert!(closed, "a forwarded connection survived shutdown");
    }
}

#[test]
fn sigint_stops_too() {
    let dir = test_dir();
    let sshd = Sshd::start();
    let echo = EchoServer::start();
    let (config, _) = one_tunnel(dir.path(), &sshd, &defaults_for(&sshd, dir.path()), &echo);
    let mut tunneld = run(&config);
    tunneld.expect_log("tunnel up", LOG_TIMEOUT);
    tunneld.signal(Signal::SIGINT);
    let status = tunneld
        .wait_exit(Duration::from_secs(2))
        .expect("stopped within 2 s");
    assert_eq!(status.code(), Some(0));
}

/// The host key was refused as such (`error_kind=host-key`), before any login.
fn assert_refused_without_login(tunneld: &TunneldProcess, sshd: &Sshd) {
    assert!(
        tunneld.logs().contains("error_kind=host-key"),
        "{}",
        tunneld.logs()
    );
    assert!(
        !sshd.log().contains("Accepted publickey"),
        "it must not log in"
    );
}

#[test]
fn a_changed_host_key_is_refused_naming_the_file_and_line() {
    let dir = test_dir();
    let sshd = Sshd::start();
    let echo = EchoServer::start();
    let defaults = defaults_for(&sshd, dir.path());
    // known_hosts: line 1 another host, line 2 this server with someone else's key.
    let impostor = KeyPair::generate(dir.path(), "impostor");
    let known_hosts = dir.path().join("known_hosts");
    std::fs::write(
        &known_hosts,
        format!(
            "otherhost {}\n[127.0.0.1]:{} {}\n",
            impostor.public_key(),
            sshd.port(),
            impostor.public_key()
        ),
    )
    .unwrap();
    let (config, _) = one_tunnel(dir.path(), &sshd, &defaults, &echo);
    let tunneld = run(&config);
    let expected = format!(
        "HOST KEY CHANGED for [127.0.0.1]:{}: {} line 2 has ssh-ed25519 {}",
        sshd.port(),
        known_hosts.display(),
        impostor.fingerprint()
    );
    tunneld.expect_log(&expected, LOG_TIMEOUT);
    assert!(
        tunneld
            .logs()
            .contains(&format!("server offered {}", sshd.host_key().fingerprint()))
    );
    assert_refused_without_login(&tunneld, &sshd);
    // The file is left alone.
    assert_eq!(
        std::fs::read_to_string(&known_hosts)
            .unwrap()
            .lines()
            .count(),
        2
    );
}

/// `[defaults]` for `sshd` whose learned known_hosts is `learned` (not written here) and whose
/// pinned keys are in `global`, with `policy`.
fn defaults_with_files(
    sshd: &Sshd,
    dir: &Path,
    learned: &Path,
    global: &Path,
    policy: &str,
) -> String {
    defaults_for(sshd, dir).replace(
        &format!("known_hosts = \"{}\"", dir.join("known_hosts").display()),
        &format!(
            "known_hosts = \"{}\"\nglobal_known_hosts = \"{}\"\nhost_key_policy = \"{policy}\"",
            learned.display(),
            global.display()
        ),
    )
}

#[test]
fn a_key_pinned_only_in_the_global_file_brings_the_tunnel_up() {
    let dir = test_dir();
    let sshd = Sshd::start();
    let echo = EchoServer::start();
    let learned = dir.path().join("state/known_hosts");
    let global = dir.path().join("etc/known_hosts");
    std::fs::create_dir(dir.path().join("etc")).unwrap();
    let pinned = format!(
        "# checked by hand
{}
",
        sshd.known_hosts_line()
    );
    std::fs::write(&global, &pinned).unwrap();
    let defaults = defaults_with_files(&sshd, dir.path(), &learned, &global, "strict");
    let (config, port) = one_tunnel(dir.path(), &sshd, &defaults, &echo);
    let tunneld = run(&config);
    tunneld.expect_log("tunnel up", LOG_TIMEOUT);
    assert_eq!(echo_once(port, b"pinned"), b"pinned");
    // The learned file was not needed, so not created; the pinned one is as it was.
    assert!(!learned.exists());
    assert_eq!(std::fs::read_to_string(&global).unwrap(), pinned);
}

#[test]
fn a_different_key_pinned_in_the_global_file_is_refused_naming_it() {
    let dir = test_dir();
    let sshd = Sshd::start();
    let echo = EchoServer::start();
    let impostor = KeyPair::generate(dir.path(), "impostor");
    let learned = dir.path().join("known_hosts_learned");
    std::fs::write(&learned, "").unwrap();
    let global = dir.path().join("known_hosts_pinned");
    std::fs::write(
        &global,
        format!("[127.0.0.1]:{} {}\n", sshd.port(), impostor.public_key()),
    )
    .unwrap();
    // accept-new: a pinned key that differs is refused all the same, and nothing is learned.
    let defaults = defaults_with_files(&sshd, dir.path(), &learned, &global, "accept-new");
    let (config, _) = one_tunnel(dir.path(), &sshd, &defaults, &echo);
    let tunneld = run(&config);
    let expected = format!(
        "HOST KEY CHANGED for [127.0.0.1]:{}: {} line 1 has ssh-ed25519 {}, server offered {}",
        sshd.port(),
        global.display(),
        impostor.fingerprint(),
        sshd.host_key().fingerprint()
    );
    tunneld.expect_log(&expected, LOG_TIMEOUT);
    assert_refused_without_login(&tunneld, &sshd);
    assert_eq!(std::fs::read_to_string(&learned).unwrap(), "");
}

#[test]
fn an_unknown_host_is_refused_under_strict_and_learned_under_accept_new() {
    let dir = test_dir();
    let sshd = Sshd::start();
    let echo = EchoServer::start();
    let defaults = defaults_for(&sshd, dir.path());
    let known_hosts = dir.path().join("known_hosts");
    std::fs::write(&known_hosts, "").unwrap();

    let (config, _) = one_tunnel(dir.path(), &sshd, &defaults, &echo);
    let mut strict = run(&config);
    // Both files were looked in (the global one is the built-in default, absent or not), and the
    // message says where a checked key is pinned.
    let expected = format!(
        "host key of [127.0.0.1]:{} is not in {} or /etc/tunneld/known_hosts (policy strict); \
         pin it in /etc/tunneld/known_hosts",
        sshd.port(),
        known_hosts.display()
    );
    strict.expect_log(&expected, LOG_TIMEOUT);
    assert!(!sshd.log().contains("Accepted publickey"));
    strict.signal(Signal::SIGTERM);
    strict.wait_exit(Duration::from_secs(2)).expect("stops");

    let accept_new = defaults.replace(
        "[defaults]\n",
        "[defaults]\nhost_key_policy = \"accept-new\"\n",
    );
    let (config, port) = one_tunnel(dir.path(), &sshd, &accept_new, &echo);
    let learner = run(&config);
    learner.expect_log("tunnel up", LOG_TIMEOUT);
    assert_eq!(echo_once(port, b"learned"), b"learned");
    let learned = std::fs::read_to_string(&known_hosts).unwrap();
    assert_eq!(
        learned,
        format!(
            "[127.0.0.1]:{} {}\n",
            sshd.port(),
            sshd.host_key().public_key()
        )
    );
}

#[test]
fn two_processes_learning_into_one_known_hosts_keep_both_entries() {
    let dir = test_dir();
    let shared = dir.path().join("shared_known_hosts");
    let echo = EchoServer::start();
    let servers: Vec<Sshd> = (0..4).map(|_| Sshd::start()).collect();
    let mut daemons = Vec::new();
    for (i, sshd) in servers.iter().enumerate() {
        let sub = dir.path().join(format!("d{i}"));
        std::fs::create_dir(&sub).unwrap();
        let defaults = defaults_for(sshd, &sub).replace(
            &format!("known_hosts = \"{}\"", sub.join("known_hosts").display()),
            &format!(
                "known_hosts = \"{}\"\nhost_key_policy = \"accept-new\"",
                shared.display()
            ),
        );
        let (config, _) = one_tunnel(&sub, sshd, &defaults, &echo);
        daemons.push(config);
    }
    // All four started together, racing to append to the same file.
    let running: Vec<TunneldProcess> = daemons.iter().map(|c| run(c)).collect();
    for daemon in &running {
        daemon.expect_log("tunnel up", LOG_TIMEOUT);
    }
    let learned = std::fs::read_to_string(&shared).unwrap();
    for sshd in &servers {
        let line = format!(
            "[127.0.0.1]:{} {}",
            sshd.port(),
            sshd.host_key().public_key()
        );
        assert_eq!(
            learned.lines().filter(|l| *l == line).count(),
            1,
            "{line} in:\n{learned}"
        );
    }
    assert_eq!(learned.lines().count(), servers.len());
}

#[test]
fn a_key_the_server_does_not_accept_is_an_authentication_failure() {
    let dir = test_dir();
    let sshd = Sshd::start();
    let echo = EchoServer::start();
    let stranger = KeyPair::generate(dir.path(), "stranger");
    let defaults = defaults_for(&sshd, dir.path()).replace(
        &sshd.client_key().private.display().to_string(),
        &stranger.private.display().to_string(),
    );
    let (config, _) = one_tunnel(dir.path(), &sshd, &defaults, &echo);
    let tunneld = run(&config);
    let expected = format!(
        "authentication refused for {}@127.0.0.1:{} (tried: {})",
        sshd.user(),
        sshd.port(),
        stranger.private.display()
    );
    tunneld.expect_log(&expected, LOG_TIMEOUT);
    assert!(tunneld.logs().contains("error_kind=auth"));
    assert!(tunneld.logs().contains("permanent=true"));
}

#[test]
fn an_encrypted_or_world_readable_key_is_a_clear_error_not_a_prompt() {
    let dir = test_dir();
    let sshd = Sshd::start();
    let echo = EchoServer::start();
    let encrypted = KeyPair::generate_encrypted(dir.path(), "locked", "secret");
    let defaults = defaults_for(&sshd, dir.path()).replace(
        &sshd.client_key().private.display().to_string(),
        &encrypted.private.display().to_string(),
    );
    let (config, _) = one_tunnel(dir.path(), &sshd, &defaults, &echo);
    let tunneld = run(&config);
    let expected = format!(
        "{} is encrypted with a passphrase; tunneld cannot prompt for it",
        encrypted.private.display()
    );
    tunneld.expect_log(&expected, LOG_TIMEOUT);
    drop(tunneld);

    let open = KeyPair::generate(dir.path(), "open");
    std::fs::set_permissions(&open.private, std::fs::Permissions::from_mode(0o644)).unwrap();
    let defaults = defaults_for(&sshd, dir.path()).replace(
        &sshd.client_key().private.display().to_string(),
        &open.private.display().to_string(),
    );
    let (config, _) = one_tunnel(dir.path(), &sshd, &defaults, &echo);
    let tunneld = run(&config);
    let expected = format!(
        "{} is readable by group/others; refusing to use it",
        open.private.display()
    );
    tunneld.expect_log(&expected, LOG_TIMEOUT);
}

#[test]
fn agent_authentication_works_with_a_real_ssh_agent() {
    let dir = test_dir();
    let sshd = Sshd::start();
    let echo = EchoServer::start();
    let agent = SshAgent::start(dir.path());
    agent.add(sshd.client_key());
    let defaults = defaults_for(&sshd, dir.path()).replace(
        &format!(
            "identity_files = [\"{}\"]\n",
            sshd.client_key().private.display()
        ),
        "use_agent = true\n",
    );
    assert!(!defaults.contains("identity_files"));
    let (config, port) = one_tunnel(dir.path(), &sshd, &defaults, &echo);
    let tunneld = TunneldProcess::spawn(
        &["run", "--config", config.to_str().unwrap()],
        &[("SSH_AUTH_SOCK", agent.socket().to_str().unwrap())],
    );
    tunneld.expect_log("authenticated with an agent key", LOG_TIMEOUT);
    let payload = random_bytes(200_000, 7);
    assert_eq!(echo_once(port, &payload), payload);
    assert!(
        sshd.log()
            .contains(&format!("Accepted publickey for {}", sshd.user()))
    );
}

#[test]
fn check_exits_0_for_a_valid_file_and_78_for_an_invalid_one() {
    let dir = test_dir();
    let sshd = Sshd::start();
    let echo = EchoServer::start();
    let (config, port) = one_tunnel(dir.path(), &sshd, &defaults_for(&sshd, dir.path()), &echo);
    let out = std::process::Command::new(harness::tunneld_bin())
        .args(["check", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.starts_with(&format!(
            "t: {}@127.0.0.1:{}; local {port}:127.0.0.1:",
            sshd.user(),
            sshd.port()
        )),
        "{stdout}"
    );

    let bad = write_config(
        dir.path(),
        "[tunnels.db]\nhost = \"db\"\nlocal = [\"5432:localhost\"]\nuse_agent = true\n",
    );
    let out = std::process::Command::new(harness::tunneld_bin())
        .args(["check", "--config", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        format!(
            "{}:3:10: tunnels.db.local[0]: \"5432:localhost\" is not [bind:]port:host:hostport",
            bad.display()
        )
    );

    // A key file readable by others is a check failure too.
    let key = KeyPair::generate(dir.path(), "loose");
    std::fs::set_permissions(&key.private, std::fs::Permissions::from_mode(0o640)).unwrap();
    let loose = write_config(
        dir.path(),
        &format!(
            "[tunnels.db]\nhost = \"db\"\nidentity_files = [\"{}\"]\nlocal = [\"5432:localhost:5432\"]\n",
            key.private.display()
        ),
    );
    let out = std::process::Command::new(harness::tunneld_bin())
        .args(["check", "--config", loose.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is readable by group/others"));
}

#[test]
fn run_exits_78_on_an_invalid_or_missing_file() {
    let dir = test_dir();
    let bad = write_config(dir.path(), "[tunnels.db]\nhost = \"db\"\nlokal = []\n");
    let mut tunneld = run(&bad);
    let status = tunneld.wait_exit(Duration::from_secs(10)).expect("exits");
    assert_eq!(status.code(), Some(78));
    let expected = format!("{}:3:1: tunnels.db.lokal: unknown field", bad.display());
    tunneld.expect_log(&expected, LOG_TIMEOUT);

    let mut missing = run(&dir.path().join("nope.toml"));
    assert_eq!(
        missing
            .wait_exit(Duration::from_secs(10))
            .expect("exits")
            .code(),
        Some(78)
    );
}

/// Makes `sshd` present a host certificate signed by a new CA for `principal`; returns the CA.
fn present_host_certificate(sshd: &mut Sshd, dir: &Path, principal: &str) -> KeyPair {
    let ca = KeyPair::generate(dir, "host_ca");
    let signed = std::process::Command::new("ssh-keygen")
        .args(["-q", "-s"])
        .arg(&ca.private)
        .args(["-h", "-I", "test-host", "-n", principal])
        .arg(&sshd.host_key().public)
        .status()
        .unwrap();
    assert!(signed.success());
    let cert = sshd.host_key().private.with_file_name(format!(
        "{}-cert.pub",
        sshd.host_key()
            .private
            .file_name()
            .unwrap()
            .to_string_lossy()
    ));
    assert!(cert.exists(), "{} was not written", cert.display());
    let mut config = std::fs::read_to_string(sshd.config_path()).unwrap();
    config.push_str(&format!("HostCertificate {}\n", cert.display()));
    std::fs::write(sshd.config_path(), config).unwrap();
    sshd.restart();
    ca
}

#[test]
fn a_host_certificate_is_trusted_through_cert_authority_and_checked() {
    let dir = test_dir();
    let echo = EchoServer::start();

    // Signed for the name tunneld connects to: trusted with only a @cert-authority line.
    let mut sshd = Sshd::start();
    let ca = present_host_certificate(&mut sshd, dir.path(), "127.0.0.1");
    let defaults = defaults_for(&sshd, dir.path());
    let known_hosts = dir.path().join("known_hosts");
    std::fs::write(
        &known_hosts,
        format!("@cert-authority [127.0.0.1]:* {}\n", ca.public_key()),
    )
    .unwrap();
    let (config, port) = one_tunnel(dir.path(), &sshd, &defaults, &echo);
    let tunneld = run(&config);
    tunneld.expect_log("tunnel up", LOG_TIMEOUT);
    assert_eq!(echo_once(port, b"certified"), b"certified");
    drop(tunneld);

    // Signed for another name: refused, and the message says why.
    let other_dir = test_dir();
    let mut wrong = Sshd::start();
    let ca = present_host_certificate(&mut wrong, other_dir.path(), "db.example.com");
    let defaults = defaults_for(&wrong, other_dir.path());
    let known_hosts = other_dir.path().join("known_hosts");
    std::fs::write(
        &known_hosts,
        format!("@cert-authority [127.0.0.1]:* {}\n", ca.public_key()),
    )
    .unwrap();
    let (config, _) = one_tunnel(other_dir.path(), &wrong, &defaults, &echo);
    let tunneld = run(&config);
    let expected = "its principals (db.example.com) do not include 127.0.0.1";
    tunneld.expect_log(expected, LOG_TIMEOUT);
    assert!(!wrong.log().contains("Accepted publickey"));
}

/// The names of `pid`'s threads (`/proc/PID/task/*/comm`).
fn thread_names(pid: u32) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .map(|name| name.trim_end().to_string())
        .collect();
    names.sort();
    names
}

#[test]
fn tunnels_run_on_threads_of_their_own_one_per_cpu_at_most() {
    let dir = test_dir();
    let sshd = Sshd::start();
    let echo = EchoServer::start();
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let mut text = defaults_for(&sshd, dir.path());
    for (index, port) in ports.iter().enumerate() {
        text += &format!(
            "[tunnels.t{index}]\n{}local = [\"{port}:127.0.0.1:{}\"]\n",
            host_line(&sshd),
            echo.port()
        );
    }
    let tunneld = run(&write_config(dir.path(), &text));
    assert!(
        tunneld.wait_for_log_count("tunnel up", 3, LOG_TIMEOUT),
        "three tunnels up:\n{}",
        tunneld.logs()
    );
    for port in &ports {
        assert_eq!(echo_once(*port, b"threads"), b"threads");
    }
    // One thread per tunnel while there are CPUs for them (tunneld-supervisor's threads.rs).
    let cpus = std::thread::available_parallelism().unwrap().get();
    let expected: Vec<String> = (0..ports.len().min(cpus))
        .map(|index| format!("tunnels-{index}"))
        .collect();
    let started: Vec<String> = thread_names(tunneld.pid())
        .into_iter()
        .filter(|name| name.starts_with("tunnels-"))
        .collect();
    assert_eq!(started, expected, "{cpus} CPUs, 3 tunnels");
}
