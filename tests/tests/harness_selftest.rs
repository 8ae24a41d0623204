//! Tests of the harness itself: each part does what it claims, against the real programs.

// Test code, helpers included: a failed unwrap is a failed test, with its location.
#![allow(clippy::unwrap_used)]

use std::io::ErrorKind;
use std::net::TcpStream as StdTcpStream;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use harness::{
    ChaosProxy, ClosedPort, EchoServer, HttpServer, KeyKind, KeyPair, Mode, SshAgent, Sshd,
    TestDir, TunneldProcess, echo_all, exchange, process_state, random_bytes, wait_until,
};
use nix::sys::signal::Signal;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const LONG: Duration = Duration::from_secs(20);

fn stdout_of(output: &Output) -> String {
    assert!(
        output.status.success(),
        "command failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `ssh ... echo hello` through the real OpenSSH client, spelled out as a user would.
fn ssh_echo_hello(sshd: &Sshd, known_hosts: &std::path::Path) -> Output {
    Command::new("ssh")
        .args(["-F", "/dev/null", "-o", "BatchMode=yes", "-o"])
        .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
        .args(["-o", "StrictHostKeyChecking=yes", "-i"])
        .arg(&sshd.client_key().private)
        .args(["-p", &sshd.port().to_string()])
        .arg(format!("{}@127.0.0.1", sshd.user()))
        .args(["echo", "hello"])
        .env_remove("SSH_AUTH_SOCK")
        .stdin(Stdio::null())
        .output()
        .expect("run ssh")
}

#[test]
fn sshd_lets_the_openssh_client_in_with_generated_keys_and_known_hosts() {
    let sshd = Sshd::start();
    let line = sshd.known_hosts_line();
    let prefix = format!("[127.0.0.1]:{} ssh-ed25519 AAAA", sshd.port());
    assert!(line.starts_with(&prefix), "{line}");
    assert_eq!(line.split_whitespace().count(), 3, "no comment: {line}");
    assert!(sshd.host_key_public_line().starts_with("ssh-ed25519 "));
    assert_eq!(
        sshd.addr().to_string(),
        format!("127.0.0.1:{}", sshd.port())
    );

    let dir = TestDir::new();
    let known_hosts = dir.join("known_hosts");
    sshd.write_known_hosts(&known_hosts);
    assert_eq!(stdout_of(&ssh_echo_hello(&sshd, &known_hosts)), "hello\n");
    // The convenience command is the same thing.
    let output = sshd.ssh_command().args(["echo", "again"]).output().unwrap();
    assert_eq!(stdout_of(&output), "again\n");
    assert!(
        sshd.wait_for_log("Accepted publickey for", LONG),
        "{}",
        sshd.log()
    );
}

#[test]
fn sshd_refuses_a_wrong_host_key_entry() {
    let sshd = Sshd::start();
    let other = Sshd::start();
    let dir = TestDir::new();
    let known_hosts = dir.join("known_hosts");
    // Another server's key under this server's name: StrictHostKeyChecking must refuse.
    std::fs::write(
        &known_hosts,
        other.known_hosts_line_for_port(sshd.port()) + "\n",
    )
    .unwrap();
    let output = ssh_echo_hello(&sshd, &known_hosts);
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("HOST IDENTIFICATION HAS CHANGED"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn sshd_puts_per_test_directives_first_and_honours_log_level() {
    let sshd = Sshd::builder()
        .config_line("PermitOpen 127.0.0.1:9")
        .config_line("Match User nobody-at-all")
        .config_line("  AllowTcpForwarding no")
        .log_level("DEBUG1")
        .start();
    let config = std::fs::read_to_string(sshd.config_path()).unwrap();
    let permit = config.find("PermitOpen 127.0.0.1:9").unwrap();
    let listen = config.find("ListenAddress").unwrap();
    let matched = config.find("Match User").unwrap();
    assert!(permit < listen && listen < matched, "{config}");

    // PermitOpen is in force: ssh -W to another port is refused by policy.
    let output = sshd
        .ssh_command()
        .args(["-W", "127.0.0.1:10"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        sshd.wait_for_log("debug1:", LONG),
        "DEBUG1 logs debug1 lines"
    );
    assert!(
        sshd.wait_for_log(
            "to connect to host 127.0.0.1 port 10, but the request was denied",
            LONG
        ),
        "{}",
        sshd.log()
    );
}

#[test]
#[should_panic(expected = "sshd -t rejects the config")]
fn sshd_reports_a_bad_config_with_its_own_message() {
    let _sshd = Sshd::builder().config_line("NoSuchDirective yes").start();
}

#[test]
fn sshd_kill_and_restart_on_the_same_port() {
    let mut sshd = Sshd::start();
    let port = sshd.port();
    let first_pid = sshd.pid();
    assert_eq!(
        stdout_of(&sshd.ssh_command().arg("echo one").output().unwrap()),
        "one\n"
    );
    sshd.kill();
    assert!(sshd.session_pids().is_empty());
    let refused = StdTcpStream::connect(sshd.addr()).unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::ConnectionRefused);

    let mark = sshd.log_mark();
    sshd.restart();
    assert_eq!(sshd.port(), port);
    assert_ne!(sshd.pid(), first_pid);
    assert_eq!(
        stdout_of(&sshd.ssh_command().arg("echo two").output().unwrap()),
        "two\n"
    );
    assert!(sshd.wait_for_log_since(mark, "Accepted publickey", LONG));
    // restart() on a running sshd kills it first.
    sshd.restart();
    assert_eq!(sshd.port(), port);
}

#[test]
fn sshd_stops_and_continues_sessions_but_not_the_listener() {
    let mut sshd = Sshd::start();
    let mut client = sshd
        .ssh_command()
        .args(["sleep", "30"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(
        sshd.wait_for_log("Starting session: command", LONG),
        "{}",
        sshd.log()
    );
    assert!(wait_until(LONG, || !sshd.session_pids().is_empty()));

    let stopped = sshd.stop_sessions();
    assert!(!stopped.is_empty());
    let states: Vec<Option<char>> = stopped.iter().map(|&pid| process_state(pid)).collect();
    // A probe connection's process may be exiting (Z) or gone (None); the rest are stopped.
    assert!(
        states.iter().all(|s| matches!(s, Some('T' | 'Z') | None)),
        "{stopped:?}: {states:?}"
    );
    assert!(states.contains(&Some('T')), "{stopped:?}: {states:?}");
    assert_ne!(process_state(sshd.pid()), Some('T'), "listener stopped");
    // The listener still serves new connections while the old session is frozen.
    assert_eq!(
        stdout_of(&sshd.ssh_command().arg("echo alive").output().unwrap()),
        "alive\n"
    );

    sshd.cont_sessions();
    assert!(wait_until(LONG, || {
        stopped.iter().all(|&pid| process_state(pid) != Some('T'))
    }));
    assert!(client.try_wait().unwrap().is_none(), "session survived");

    // kill() takes the session processes with it, not only the listener.
    let sessions = sshd.session_pids();
    sshd.kill();
    for pid in sessions {
        assert!(
            matches!(process_state(pid), None | Some('Z')),
            "{pid} alive"
        );
    }
    let status = client.wait().unwrap();
    assert!(!status.success());
}

#[test]
fn keys_are_generated_as_asked() {
    let dir = TestDir::new();
    let plain = KeyPair::generate(dir.path(), "plain");
    let mode = std::fs::metadata(&plain.private)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(plain.public_line().starts_with("ssh-ed25519 AAAA"));
    assert!(plain.public_line().ends_with(" plain"));
    assert!(plain.fingerprint().starts_with("SHA256:"));

    let rsa = KeyPair::generate_rsa(dir.path(), "rsa");
    assert_eq!(rsa.kind, KeyKind::Rsa2048);
    assert!(rsa.public_line().starts_with("ssh-rsa AAAA"));

    let encrypted = KeyPair::generate_encrypted(dir.path(), "enc", "secret");
    let derive = |passphrase: &str| {
        Command::new("ssh-keygen")
            .args(["-y", "-P", passphrase, "-f"])
            .arg(&encrypted.private)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    assert!(!derive("wrong").status.success());
    let public = stdout_of(&derive("secret"));
    assert_eq!(public.trim(), encrypted.public_line());
}

#[test]
fn agent_holds_keys_and_ssh_logs_in_through_it() {
    let dir = TestDir::new();
    let encrypted = KeyPair::generate_encrypted(dir.path(), "agent_key", "s3cret pass");
    let sshd = Sshd::builder()
        .authorized_key(encrypted.public_line())
        .start();
    let agent = SshAgent::start(dir.path());
    assert_eq!(agent.list(), "");
    agent.add(&encrypted);
    agent.add(sshd.client_key());
    let listed = agent.list();
    assert!(listed.contains(&encrypted.public_key()), "{listed}");
    assert!(listed.contains(&sshd.client_key().public_key()), "{listed}");
    agent.remove_all();
    assert_eq!(agent.list(), "");
    agent.add(&encrypted);

    // Only the agent has the decrypted key; BatchMode cannot ask for a passphrase.
    let known_hosts = dir.join("known_hosts");
    sshd.write_known_hosts(&known_hosts);
    let output = Command::new("ssh")
        .args(["-F", "/dev/null", "-o", "BatchMode=yes", "-o"])
        .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
        .arg("-o")
        .arg(format!("IdentityAgent={}", agent.socket().display()))
        .args(["-p", &sshd.port().to_string()])
        .arg(format!("{}@127.0.0.1", sshd.user()))
        .arg("echo via-agent")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(stdout_of(&output), "via-agent\n");
}

/// One exchange with the echo server behind `stream`, on a connection that stays open.
async fn round_trip(stream: &mut TcpStream, payload: &[u8]) {
    let back = exchange(stream, payload, LONG)
        .await
        .expect("echo within the deadline");
    assert_eq!(back, payload);
}

#[tokio::test(flavor = "multi_thread")]
async fn echo_server_serves_many_connections_at_once() {
    let echo = EchoServer::start();
    let mut tasks = Vec::new();
    for seed in 0..50 {
        let addr = echo.addr();
        tasks.push(tokio::spawn(async move {
            let payload = random_bytes(64 * 1024, seed);
            let stream = TcpStream::connect(addr).await.unwrap();
            assert_eq!(echo_all(stream, payload.clone()).await, payload);
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(echo.connections_total(), 50);
}

#[tokio::test(flavor = "multi_thread")]
async fn chaos_pass_forwards_every_byte_both_ways() {
    let echo = EchoServer::start();
    let proxy = ChaosProxy::start(echo.addr());
    assert_eq!(proxy.mode(), Mode::Pass);
    let payload = random_bytes(4 << 20, 7);
    let stream = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(echo_all(stream, payload.clone()).await, payload);
    assert_eq!(proxy.connections_total(), 1);
    assert!(wait_until(LONG, || proxy.connections_open() == 0));
}

#[tokio::test(flavor = "multi_thread")]
async fn chaos_black_hole_drops_bytes_keeps_the_connection_and_recovers() {
    let echo = EchoServer::start();
    let proxy = ChaosProxy::start(echo.addr());
    let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
    round_trip(&mut stream, b"before").await;

    proxy.set_mode(Mode::BlackHole);
    stream.write_all(b"lost in the hole").await.unwrap();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_millis(300), stream.read(&mut buf)).await;
    assert!(read.is_err(), "nothing comes back, not even EOF: {read:?}");
    assert_eq!(proxy.connections_open(), 1);

    proxy.set_mode(Mode::Pass);
    round_trip(&mut stream, b"after").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn chaos_freeze_blocks_writers_and_loses_nothing() {
    let echo = EchoServer::start();
    let proxy = ChaosProxy::start(echo.addr());
    let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
    round_trip(&mut stream, b"warm").await;

    proxy.set_mode(Mode::Freeze);
    let payload = random_bytes(32 << 20, 3);
    let transfer = tokio::spawn(echo_all(stream, payload.clone()));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!transfer.is_finished(), "a frozen link let 32 MiB through");
    assert_eq!(proxy.connections_open(), 1);

    proxy.set_mode(Mode::Pass);
    let back = tokio::time::timeout(LONG, transfer).await.unwrap().unwrap();
    assert!(back == payload, "{} bytes back", back.len());
}

#[tokio::test(flavor = "multi_thread")]
async fn chaos_delay_adds_latency_each_way() {
    let echo = EchoServer::start();
    let proxy = ChaosProxy::start(echo.addr());
    let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
    round_trip(&mut stream, b"x").await;
    proxy.set_mode(Mode::Delay(Duration::from_millis(150)));
    let start = Instant::now();
    round_trip(&mut stream, b"slow").await;
    assert!(
        start.elapsed() >= Duration::from_millis(300),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn chaos_reset_all_sends_rst_and_later_connections_work() {
    let echo = EchoServer::start();
    let proxy = ChaosProxy::start(echo.addr());
    let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
    round_trip(&mut stream, b"hello").await;
    proxy.reset_all();
    assert_eq!(proxy.connections_open(), 0);
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(LONG, stream.read(&mut buf))
        .await
        .unwrap();
    assert_eq!(
        read.map_err(|e| e.kind()),
        Err(ErrorKind::ConnectionReset),
        "RST, not FIN"
    );

    let mut again = TcpStream::connect(proxy.addr()).await.unwrap();
    round_trip(&mut again, b"again").await;
    assert_eq!(proxy.connections_total(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn chaos_stop_accepting_makes_connect_hang_until_resumed() {
    let echo = EchoServer::start();
    let proxy = ChaosProxy::start(echo.addr());
    proxy.set_accepting(false);
    let hung = tokio::time::timeout(Duration::from_millis(500), TcpStream::connect(proxy.addr()));
    assert!(hung.await.is_err(), "connect completed while not accepting");

    // A connect started during the pause completes after it, at a SYN retransmission.
    let addr = proxy.addr();
    let pending = tokio::spawn(async move { TcpStream::connect(addr).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!pending.is_finished());
    proxy.set_accepting(true);
    let mut stream = tokio::time::timeout(LONG, pending)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    round_trip(&mut stream, b"late").await;
    let mut fresh = TcpStream::connect(proxy.addr()).await.unwrap();
    round_trip(&mut fresh, b"fresh").await;
    // The proxy's own plug connection is not counted.
    assert_eq!(proxy.connections_total(), 2);
}

#[test]
fn chaos_proxy_carries_a_real_ssh_session() {
    let sshd = Sshd::start();
    let proxy = ChaosProxy::start(sshd.addr());
    let output = sshd
        .ssh_command_via(proxy.port())
        .arg("echo proxied")
        .output()
        .unwrap();
    assert_eq!(stdout_of(&output), "proxied\n");
}

#[test]
fn http_server_answers_curl_with_keep_alive() {
    let body = random_bytes(1 << 20, 11);
    let http = HttpServer::start(body.clone());
    let dir = TestDir::new();
    let (first, second) = (dir.join("first"), dir.join("second"));
    let output = Command::new("curl")
        .args(["-sS", "--fail", "--noproxy", "*"])
        .arg(http.url())
        .arg("-o")
        .arg(&first)
        .arg(http.url())
        .arg("-o")
        .arg(&second)
        .output()
        .unwrap();
    stdout_of(&output);
    assert!(std::fs::read(&first).unwrap() == body);
    assert!(std::fs::read(&second).unwrap() == body);
    assert_eq!(http.requests_total(), 2);
    assert_eq!(http.connections_total(), 1, "curl reused the connection");
}

#[test]
fn closed_port_refuses() {
    let closed = ClosedPort::new();
    let err = StdTcpStream::connect(closed.addr()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
}

#[test]
fn process_output_is_collected_and_signals_arrive() {
    let script = "echo out; echo err >&2; sleep 30 & trap 'kill $!; echo got TERM; exit 3' TERM; \
                  echo ready; wait $!";
    let mut process =
        TunneldProcess::spawn_program("/bin/sh".as_ref(), &["-c", script], &[("X", "1")]);
    assert!(process.wait_for_log("ready", LONG), "{}", process.logs());
    assert!(process.logs().contains("out\n"));
    // stderr has a reader of its own: its lines may land after later stdout lines.
    assert!(process.wait_for_log("err\n", LONG), "{}", process.logs());
    assert!(process.is_running());
    assert_eq!(process.wait_exit(Duration::from_millis(100)), None);
    process.signal(Signal::SIGTERM);
    let status = process.wait_exit(LONG).expect("exits on SIGTERM");
    assert_eq!(status.code(), Some(3));
    assert!(process.wait_for_log("got TERM", LONG));
    assert_eq!(process.count_in_logs("TERM"), 1);
}

#[test]
fn tunneld_binary_builds_and_reports_its_version() {
    let bin = harness::tunneld_bin();
    let output = Command::new(&bin).arg("--version").output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", bin.display());
    assert_eq!(
        stdout.trim(),
        format!("tunneld {}", env!("CARGO_PKG_VERSION"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn util_helpers_work() {
    harness::init_tracing();
    harness::init_tracing();
    tracing::info!("tracing goes to the test writer");

    assert_eq!(random_bytes(1000, 5), random_bytes(1000, 5));
    assert_ne!(random_bytes(1000, 5), random_bytes(1000, 6));
    assert_eq!(random_bytes(13, 0).len(), 13);

    let me = std::process::id();
    assert!(harness::fd_count(me) >= 3);
    assert!(harness::rss_kib(me) > 0);

    let start = Instant::now();
    let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let setter = flag.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        setter.store(true, std::sync::atomic::Ordering::SeqCst);
    });
    let seen = harness::wait_until_async(LONG, || {
        let flag = flag.clone();
        async move { flag.load(std::sync::atomic::Ordering::SeqCst) }
    })
    .await;
    assert!(seen && start.elapsed() < LONG);
    assert!(!wait_until(Duration::from_millis(60), || false));

    let dir = TestDir::new();
    let path = dir.write_mode("secret", "x", 0o600);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn harness_types_can_be_shared_across_threads_and_tasks() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Sshd>();
    send_sync::<ChaosProxy>();
    send_sync::<EchoServer>();
    send_sync::<HttpServer>();
    send_sync::<SshAgent>();
    send_sync::<TunneldProcess>();
    send_sync::<KeyPair>();
}
