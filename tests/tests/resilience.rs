//! Resilience: break things between tunneld and a real OpenSSH sshd and check that each tunnel
//! notices, says why, and comes back (docs/design.md, docs/resilience.md).
//!
//! The faults: sshd killed and restarted, a black-holed link (no RST), a frozen link with data in
//! flight, the server's session SIGSTOPped, authentication refused, a changed host key, 50
//! kill/restart cycles (fds and RSS of the binary measured), a healthy tunnel beside a broken
//! one, SIGTERM in the middle of a reconnect, and a client that arrives while the tunnel is down.
//!
//! Keepalives are 1 s x 2 (a dead-peer budget of 3 s) and backoff 100 ms..1 s, so that everything
//! is quick; bounds are several times those (the machines are shared and noisy). Measured times
//! are printed with `eprintln!`: run with `--nocapture` to see them (docs/resilience.md).

// Helpers outside #[test] functions unwrap too: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use harness::{
    ChaosProxy, EchoServer, Failure, KeyPair, Mode, Sshd, TunneldProcess, backing_off,
    connection_id, exchange, fd_count, free_port, is_backing_off, localhost, random_bytes, rss_kib,
    try_echo, up_with_new_connection, wait_until,
};
use nix::sys::signal::Signal;
use support::{InProcess, test_dir, write_config};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::block_in_place;
use tunneld_ssh::FailureKind;
use tunneld_supervisor::TunnelState;

/// The configured keepalive: `keepalive_interval = "1s"`, `keepalive_max = 2`.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(1);
const KEEPALIVE_MAX: u32 = 2;
/// (max + 1) x interval: how long a silent peer is tolerated.
const BUDGET: Duration = Duration::from_secs(3);
/// A dead link must be noticed within this: four times the budget, for a noisy machine.
const DETECT_BOUND: Duration = Duration::from_secs(12);
/// A tunnel must be back (and carrying bytes) within this once the fault is gone.
const RECOVER_BOUND: Duration = Duration::from_secs(30);
/// How long a state may take to show up in general.
const STATE_TIMEOUT: Duration = Duration::from_secs(20);

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// One `[tunnels.NAME]` block, self-contained (it carries its own user, key and known_hosts, so
/// that tunnels to different sshds can share a file), with the quick test settings.
struct TunnelSpec<'a> {
    name: &'a str,
    sshd: &'a Sshd,
    /// The port tunneld dials: sshd's own, or that of a proxy in front of it.
    via_port: u16,
    /// The local forward: `forward_port:127.0.0.1:target_port`.
    forward_port: u16,
    target_port: u16,
    backoff_max: &'a str,
    connect_timeout: &'a str,
    /// Another private key instead of the one sshd authorizes.
    identity: Option<PathBuf>,
    /// Another public key (`ssh-ed25519 AAAA...`) to trust for the server instead of its own.
    trusted_key: Option<String>,
}

impl<'a> TunnelSpec<'a> {
    fn new(name: &'a str, sshd: &'a Sshd, via_port: u16, target_port: u16) -> Self {
        TunnelSpec {
            name,
            sshd,
            via_port,
            forward_port: free_port(),
            target_port,
            backoff_max: "1s",
            connect_timeout: "10s",
            identity: None,
            trusted_key: None,
        }
    }

    fn toml(&self, dir: &Path) -> String {
        let known_hosts = dir.join(format!("known_hosts_{}", self.name));
        let key = self
            .trusted_key
            .clone()
            .unwrap_or_else(|| self.sshd.host_key().public_key());
        std::fs::write(
            &known_hosts,
            format!("[127.0.0.1]:{} {key}\n", self.via_port),
        )
        .unwrap();
        let identity = self
            .identity
            .clone()
            .unwrap_or_else(|| self.sshd.client_key().private.clone());
        format!(
            "[tunnels.{name}]\n\
             host = \"127.0.0.1:{via}\"\n\
             user = \"{user}\"\n\
             identity_files = [\"{identity}\"]\n\
             known_hosts = \"{kh}\"\n\
             keepalive_interval = \"{ka}s\"\n\
             keepalive_max = {kamax}\n\
             backoff_min = \"100ms\"\n\
             backoff_max = \"{bmax}\"\n\
             connect_timeout = \"{ct}\"\n\
             local = [\"{fport}:127.0.0.1:{tport}\"]\n\n",
            name = self.name,
            via = self.via_port,
            user = self.sshd.user(),
            identity = identity.display(),
            kh = known_hosts.display(),
            ka = KEEPALIVE_INTERVAL.as_secs(),
            kamax = KEEPALIVE_MAX,
            bmax = self.backoff_max,
            ct = self.connect_timeout,
            fport = self.forward_port,
            tport = self.target_port,
        )
    }
}

fn config_file(dir: &Path, tunnels: &[&TunnelSpec<'_>]) -> PathBuf {
    let text: String = tunnels.iter().map(|t| t.toml(dir)).collect();
    write_config(dir, &text)
}

/// An echo round trip of `len` bytes through the forward on `port`, bounded in time.
async fn round_trip(port: u16, len: usize, seed: u64) {
    let payload = random_bytes(len, seed);
    let back = tokio::time::timeout(
        STATE_TIMEOUT,
        support::echo_through(localhost(port), &payload),
    )
    .await
    .expect("the round trip through the forward did not finish in time");
    assert_eq!(back.len(), payload.len(), "echoed length");
    assert!(back == payload, "the echoed bytes differ");
}

fn run_binary(config: &Path) -> TunneldProcess {
    TunneldProcess::spawn(&["run", "--config", config.to_str().unwrap()], &[])
}

/// fds of `pid` once they stop changing (a forwarded connection that just ended may still be
/// closing): the value that held for 5 polls in a row, or the last one after 3 s.
fn settled_fd_count(pid: u32) -> usize {
    let mut last = fd_count(pid);
    let mut same = 0;
    wait_until(Duration::from_secs(3), || {
        let now = fd_count(pid);
        if now == last {
            same += 1;
        } else {
            same = 0;
            last = now;
        }
        same >= 5
    });
    last
}

// (1) ------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sshd_killed_and_restarted_the_forward_works_again_over_a_new_connection() {
    harness::init_tracing();
    let dir = test_dir();
    let mut sshd = Sshd::start();
    let echo = EchoServer::start();
    let spec = TunnelSpec::new("t", &sshd, sshd.port(), echo.port());
    let port = spec.forward_port;
    let tunneld = InProcess::start(&config_file(dir.path(), &[&spec]));
    drop(spec);
    let first = connection_id(&tunneld.wait_up("t").await);
    round_trip(port, 64 * 1024, 1).await;

    let killed = Instant::now();
    block_in_place(|| sshd.kill());
    let Failure {
        reason,
        kind,
        permanent,
        ..
    } = tunneld.wait_failure("t", DETECT_BOUND).await;
    let noticed = killed.elapsed();
    eprintln!(
        "[sshd kill] noticed after {:.3} s: {reason} (kind {kind})",
        secs(noticed)
    );
    assert!(!permanent, "a server that went away is not permanent");
    assert!(
        matches!(kind, FailureKind::Network),
        "kind {kind}: {reason}"
    );
    // "noticed at once": well under the keepalive budget.
    assert!(
        noticed < BUDGET,
        "a killed sshd must be noticed from the closed socket, not by keepalives: {noticed:?}"
    );

    block_in_place(|| sshd.restart());
    let restarted = Instant::now();
    let up = tunneld
        .wait_for("t", RECOVER_BOUND, up_with_new_connection(first))
        .await;
    let up_after = restarted.elapsed();
    round_trip(port, 64 * 1024, 2).await;
    let works_after = restarted.elapsed();
    eprintln!(
        "[sshd kill] after restart: up in {:.3} s, first round trip done in {:.3} s (connection {} -> {})",
        secs(up_after),
        secs(works_after),
        first,
        connection_id(&up)
    );
    assert_eq!(sshd.logins(), 2, "one login before the kill, one after");
    tunneld.stop().await;
}

// (2) ------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_black_holed_link_is_detected_within_the_keepalive_budget_and_replaced() {
    harness::init_tracing();
    let dir = test_dir();
    let sshd = Sshd::start();
    let proxy = ChaosProxy::start(sshd.addr());
    let echo = EchoServer::start();
    let mut spec = TunnelSpec::new("t", &sshd, proxy.port(), echo.port());
    // An attempt started while the link is black-holed loses its banner for good (the proxy
    // drops the bytes, TCP would have retransmitted them): it can only time out. Keep that
    // short so that recovery does not wait for it for long.
    spec.connect_timeout = "4s";
    let port = spec.forward_port;
    let tunneld = InProcess::start(&config_file(dir.path(), &[&spec]));
    let first = connection_id(&tunneld.wait_up("t").await);
    round_trip(port, 64 * 1024, 1).await;
    assert_eq!(sshd.logins(), 1);

    proxy.set_mode(Mode::BlackHole);
    let cut = Instant::now();
    let Failure {
        reason,
        kind,
        permanent,
        ..
    } = tunneld.wait_failure("t", DETECT_BOUND).await;
    let detected = cut.elapsed();
    eprintln!(
        "[black hole] detected after {:.3} s (budget {} s): {reason}",
        secs(detected),
        BUDGET.as_secs()
    );
    assert_eq!(kind, FailureKind::Timeout, "{reason}");
    assert!(!permanent);
    assert!(
        reason.contains(&format!("127.0.0.1:{}", proxy.port())),
        "the reason must name the server: {reason}"
    );
    // Not before the budget: the peer had until then to answer.
    assert!(
        detected >= BUDGET - KEEPALIVE_INTERVAL,
        "detected too early: {detected:?}"
    );

    proxy.set_mode(Mode::Pass);
    let restored = Instant::now();
    let up = tunneld
        .wait_for("t", RECOVER_BOUND, up_with_new_connection(first))
        .await;
    let up_after = restored.elapsed();
    round_trip(port, 64 * 1024, 2).await;
    eprintln!(
        "[black hole] link restored: up again after {:.3} s (connection {first} -> {})",
        secs(up_after),
        connection_id(&up)
    );
    // A NEW SSH connection replaced the old one, on the server's side too.
    assert!(
        sshd.wait_for_log_count("Accepted publickey", 2, STATE_TIMEOUT),
        "sshd did not log a second login:\n{}",
        sshd.log()
    );
    tunneld.stop().await;
}

// (3) ------------------------------------------------------------------------------------------

/// A client of the forward that sends a first 64 KiB, then, once `go` is notified, pushes up to
/// `limit` bytes, and drains what comes back, counting both; stops at the first error or EOF.
struct Pusher {
    sent: Arc<AtomicU64>,
    received: Arc<AtomicU64>,
    reader_done: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Pusher {
    async fn start(port: u16, limit: u64, go: Arc<tokio::sync::Notify>) -> Pusher {
        let stream = TcpStream::connect(localhost(port)).await.unwrap();
        let (mut read, mut write) = stream.into_split();
        let sent = Arc::new(AtomicU64::new(0));
        let received = Arc::new(AtomicU64::new(0));
        let reader_done = Arc::new(AtomicBool::new(false));
        let chunk = random_bytes(64 * 1024, 3);
        let s = sent.clone();
        let writer = tokio::spawn(async move {
            if write.write_all(&chunk).await.is_err() {
                return;
            }
            s.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            go.notified().await;
            while s.load(Ordering::Relaxed) < limit {
                if write.write_all(&chunk).await.is_err() {
                    return;
                }
                s.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            }
            let _ = write.shutdown().await;
        });
        let r = received.clone();
        let done = reader_done.clone();
        let reader = tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match read.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        r.fetch_add(n as u64, Ordering::Relaxed);
                    }
                }
            }
            done.store(true, Ordering::Relaxed);
        });
        Pusher {
            sent,
            received,
            reader_done,
            tasks: vec![writer, reader],
        }
    }
}

impl Drop for Pusher {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// The largest send queue (bytes written and not yet acknowledged) of the established IPv4
/// connections to 127.0.0.1:`port`, from `/proc/net/tcp`: how much tunneld's SSH socket has
/// stuck in it when `port` is the proxy's.
fn send_queue_to(port: u16) -> u64 {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let remote = format!("0100007F:{port:04X}");
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (rem, st, queues) = (fields.get(2)?, fields.get(3)?, fields.get(4)?);
            if *rem != remote || *st != "01" {
                return None;
            }
            u64::from_str_radix(queues.split(':').next()?, 16).ok()
        })
        .max()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_link_with_writes_stuck_is_detected_and_replaced() {
    harness::init_tracing();
    let dir = test_dir();
    let sshd = Sshd::start();
    let proxy = ChaosProxy::start(sshd.addr());
    let echo = EchoServer::start();
    let spec = TunnelSpec::new("t", &sshd, proxy.port(), echo.port());
    let port = spec.forward_port;
    let tunneld = InProcess::start(&config_file(dir.path(), &[&spec]));
    let first = connection_id(&tunneld.wait_up("t").await);
    round_trip(port, 64 * 1024, 1).await;

    // Forwarded connections whose channels are open and have carried their first bytes; then
    // the link freezes and big payloads follow through them. Each channel may have 2 MiB (sshd's
    // window) in flight: together more than tunneld's socket buffer and the proxy's receive
    // buffer (small, since next to nothing was read before) can hold, so tunneld's writes to the
    // SSH socket get stuck.
    const PUSHERS: usize = 6;
    let mut pushers = Vec::new();
    let mut gates = Vec::new();
    for _ in 0..PUSHERS {
        let go = Arc::new(tokio::sync::Notify::new());
        pushers.push(Pusher::start(port, 1 << 30, go.clone()).await);
        gates.push(go);
    }
    for pusher in &pushers {
        assert!(
            harness::wait_until_async(STATE_TIMEOUT, || {
                let received = pusher.received.load(Ordering::Relaxed);
                async move { received >= 64 * 1024 }
            })
            .await,
            "the first bytes do not come back through the forward"
        );
    }
    let sent = |pushers: &[Pusher]| -> u64 {
        pushers.iter().map(|p| p.sent.load(Ordering::Relaxed)).sum()
    };
    proxy.set_mode(Mode::Freeze);
    let frozen = Instant::now();
    for go in &gates {
        go.notify_one();
    }
    let sent_at_freeze = sent(&pushers);
    // Meanwhile, watch how much tunneld's SSH socket has stuck in its send queue.
    let stuck = Arc::new(AtomicU64::new(0));
    let watching = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (stuck, watching, proxy_port) = (stuck.clone(), watching.clone(), proxy.port());
        std::thread::spawn(move || {
            while watching.load(Ordering::Relaxed) {
                stuck.fetch_max(send_queue_to(proxy_port), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let Failure {
        reason,
        kind,
        permanent,
        ..
    } = tunneld.wait_failure("t", DETECT_BOUND).await;
    let detected = frozen.elapsed();
    watching.store(false, Ordering::Relaxed);
    sampler.join().unwrap();
    let stuck = stuck.load(Ordering::Relaxed);
    let pushed_while_frozen = sent(&pushers) - sent_at_freeze;
    eprintln!(
        "[freeze] detected after {:.3} s (budget {} s): {reason}; the client pushed {} KiB after the freeze; up to {} KiB stuck unacknowledged in tunneld's SSH socket",
        secs(detected),
        BUDGET.as_secs(),
        pushed_while_frozen / 1024,
        stuck / 1024
    );
    assert!(
        stuck > 0,
        "nothing was left in flight in tunneld's SSH socket: not the stuck-write case"
    );
    assert_eq!(kind, FailureKind::Timeout, "{reason}");
    assert!(!permanent);
    // The clients of the dead connection are told (EOF or reset), not left hanging.
    assert!(
        harness::wait_until_async(STATE_TIMEOUT, || {
            let done = pushers
                .iter()
                .all(|p| p.reader_done.load(Ordering::Relaxed));
            async move { done }
        })
        .await,
        "a forwarded connection of the dead session was never closed"
    );
    drop(pushers);

    proxy.set_mode(Mode::Pass);
    let thawed = Instant::now();
    let up = tunneld
        .wait_for("t", RECOVER_BOUND, up_with_new_connection(first))
        .await;
    let up_after = thawed.elapsed();
    round_trip(port, 64 * 1024, 2).await;
    eprintln!(
        "[freeze] link thawed: up again after {:.3} s (connection {first} -> {})",
        secs(up_after),
        connection_id(&up)
    );
    assert!(sshd.wait_for_log_count("Accepted publickey", 2, STATE_TIMEOUT));
    tunneld.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigstopped_server_session_is_detected_and_replaced() {
    harness::init_tracing();
    let dir = test_dir();
    let sshd = Sshd::start();
    let echo = EchoServer::start();
    let spec = TunnelSpec::new("t", &sshd, sshd.port(), echo.port());
    let port = spec.forward_port;
    let tunneld = InProcess::start(&config_file(dir.path(), &[&spec]));
    let first = connection_id(&tunneld.wait_up("t").await);
    round_trip(port, 64 * 1024, 1).await;

    let stopped = block_in_place(|| sshd.stop_sessions());
    assert!(!stopped.is_empty(), "sshd has no session process to stop");
    let frozen = Instant::now();
    let Failure {
        reason,
        kind,
        permanent,
        ..
    } = tunneld.wait_failure("t", DETECT_BOUND).await;
    let detected = frozen.elapsed();
    eprintln!(
        "[SIGSTOP] session {stopped:?} stopped: detected after {:.3} s (budget {} s): {reason}",
        secs(detected),
        BUDGET.as_secs()
    );
    assert_eq!(kind, FailureKind::Timeout, "{reason}");
    assert!(!permanent);
    assert!(
        detected >= BUDGET - KEEPALIVE_INTERVAL,
        "detected too early: {detected:?}"
    );

    // sshd's listener still runs: the next attempt gets a fresh session.
    let up = tunneld
        .wait_for("t", RECOVER_BOUND, up_with_new_connection(first))
        .await;
    let up_after = frozen.elapsed() - detected;
    round_trip(port, 64 * 1024, 2).await;
    eprintln!(
        "[SIGSTOP] up again {:.3} s after detection (connection {first} -> {})",
        secs(up_after),
        connection_id(&up)
    );
    assert!(sshd.wait_for_log_count("Accepted publickey", 2, STATE_TIMEOUT));
    sshd.cont_sessions();
    tunneld.stop().await;
}

// (4), (5) -------------------------------------------------------------------------------------

/// Waits for two failures in a row of `kind`, checks each is permanent and waits at the cap
/// (1 s: between 0.8 and 1.0 s), and that the second attempt came no sooner than the first
/// failure said. Returns the reason.
async fn permanent_failures_at_the_cap(tunneld: &InProcess, kind: FailureKind) -> String {
    let cap = Duration::from_secs(1);
    let first = tunneld
        .wait_for(
            "t",
            STATE_TIMEOUT,
            |s| matches!(s, TunnelState::BackingOff { kind: k, .. } if *k == kind),
        )
        .await;
    let first_seen = Instant::now();
    let Failure {
        reason,
        permanent,
        retry_in,
        failures,
        ..
    } = backing_off(&first);
    assert!(permanent, "{kind} must be permanent: {reason}");
    assert!(
        retry_in >= cap.mul_f64(0.8) && retry_in <= cap,
        "a permanent failure must back off at the cap (0.8..1.0 x {cap:?}), not {retry_in:?}"
    );
    eprintln!("[{kind}] failure {failures}: retry in {retry_in:?}: {reason}");

    let second = tunneld
        .wait_for(
            "t",
            STATE_TIMEOUT,
            |s| matches!(s, TunnelState::BackingOff { failures: f, .. } if *f > failures),
        )
        .await;
    let between = first_seen.elapsed();
    let Failure {
        reason: reason2,
        kind: kind2,
        permanent: permanent2,
        retry_in: retry_in2,
        failures: failures2,
    } = backing_off(&second);
    eprintln!(
        "[{kind}] failure {failures2} {:.3} s later: retry in {retry_in2:?}",
        secs(between)
    );
    assert_eq!(kind2, kind, "{reason2}");
    assert!(permanent2);
    assert_eq!(failures2, failures + 1, "exactly one attempt in between");
    assert!(
        retry_in2 >= cap.mul_f64(0.8) && retry_in2 <= cap,
        "the second failure must back off at the cap too, not {retry_in2:?}"
    );
    // It really waited: no hammering of the server. (Lower bound only: a slow machine can only
    // make it later.)
    assert!(
        between + Duration::from_millis(50) >= retry_in,
        "retried after {between:?}, sooner than the {retry_in:?} announced"
    );
    reason
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_authentication_says_so_and_retries_at_the_cap() {
    harness::init_tracing();
    let dir = test_dir();
    let sshd = Sshd::start();
    let echo = EchoServer::start();
    let stranger = KeyPair::generate(dir.path(), "stranger");
    let mut spec = TunnelSpec::new("t", &sshd, sshd.port(), echo.port());
    spec.identity = Some(stranger.private.clone());
    let tunneld = InProcess::start(&config_file(dir.path(), &[&spec]));
    let reason = permanent_failures_at_the_cap(&tunneld, FailureKind::Auth).await;
    assert!(
        reason.contains("authentication refused"),
        "the reason must say so: {reason}"
    );
    assert_eq!(sshd.logins(), 0);
    tunneld.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_host_key_is_refused_and_retried_at_the_cap() {
    harness::init_tracing();
    let dir = test_dir();
    let sshd = Sshd::start();
    let echo = EchoServer::start();
    let impostor = KeyPair::generate(dir.path(), "impostor");
    let mut spec = TunnelSpec::new("t", &sshd, sshd.port(), echo.port());
    spec.trusted_key = Some(impostor.public_key());
    // A client of the forward waits this long for a connection that never comes.
    spec.connect_timeout = "2s";
    let port = spec.forward_port;
    let tunneld = InProcess::start(&config_file(dir.path(), &[&spec]));
    let reason = permanent_failures_at_the_cap(&tunneld, FailureKind::HostKey).await;
    assert!(
        reason.contains("HOST KEY CHANGED"),
        "the reason must say so: {reason}"
    );
    // No connection: never logged in, and a client of the forward gets nothing through.
    assert_eq!(
        sshd.logins(),
        0,
        "it must not log in to a server it cannot verify"
    );
    let mut client = TcpStream::connect(localhost(port)).await.unwrap();
    let arrived = Instant::now();
    client.write_all(b"anyone there?").await.unwrap();
    let mut back = Vec::new();
    let read = tokio::time::timeout(STATE_TIMEOUT, client.read_to_end(&mut back))
        .await
        .expect("a client of a tunnel that cannot connect must be closed after connect_timeout");
    eprintln!(
        "[host-key] a client of the forward was closed after {:.3} s ({read:?}, connect_timeout 2 s)",
        secs(arrived.elapsed())
    );
    assert!(
        back.is_empty(),
        "bytes came back through a tunnel that never connected"
    );
    assert_eq!(echo.connections_total(), 0);
    tunneld.stop().await;
}

// (6) ------------------------------------------------------------------------------------------

#[test]
fn fifty_sshd_restarts_each_recover_without_growing_fds_or_rss() {
    const CYCLES: usize = 50;
    const WARM_UP: usize = 5;
    let dir = test_dir();
    let mut sshd = Sshd::start();
    let echo = EchoServer::start();
    let mut spec = TunnelSpec::new("t", &sshd, sshd.port(), echo.port());
    // The cap only sets how long each cycle waits before its reconnect (a connection that
    // lasted under 30 s does not reset the backoff, so every cycle waits about the cap).
    spec.backoff_max = "200ms";
    let port = spec.forward_port;
    let config = config_file(dir.path(), &[&spec]);
    drop(spec);
    let mut tunneld = run_binary(&config);
    tunneld.expect_log("tunnel up", STATE_TIMEOUT);
    let pid = tunneld.pid();
    let payload = random_bytes(32 * 1024, 6);
    assert_eq!(try_echo(port, &payload, STATE_TIMEOUT).unwrap(), payload);
    let start_fds = settled_fd_count(pid);
    let start_rss = rss_kib(pid);
    eprintln!("[50 cycles] before: {start_fds} fds, RSS {start_rss} KiB");

    let mut fds = Vec::with_capacity(CYCLES);
    let mut rss = Vec::with_capacity(CYCLES);
    let mut recoveries = Vec::with_capacity(CYCLES);
    let mut retries_total = 0;
    let began = Instant::now();
    for cycle in 1..=CYCLES {
        let downs = tunneld.count_in_logs("tunnel down");
        let ups = tunneld.count_in_logs("tunnel up");
        sshd.kill();
        assert!(
            tunneld.wait_for_log_count("tunnel down", downs + 1, STATE_TIMEOUT),
            "cycle {cycle}: the kill went unnoticed"
        );
        sshd.restart();
        let restarted = Instant::now();
        // Every cycle recovers: a round trip through the forward works again. A client that
        // arrives while the tunnel reconnects waits for it, so one attempt should do; retry
        // anyway (and count), so that a failure here is about recovery, not about waiting.
        let deadline = restarted + RECOVER_BOUND;
        let mut retries = 0;
        loop {
            match try_echo(port, &payload, STATE_TIMEOUT) {
                Ok(back) if back == payload => break,
                other => {
                    retries += 1;
                    assert!(
                        Instant::now() < deadline,
                        "cycle {cycle}: no round trip within {RECOVER_BOUND:?} of the restart (last: {:?})\n{}",
                        other.map(|b| b.len()),
                        tunneld.logs()
                    );
                }
            }
        }
        recoveries.push(restarted.elapsed());
        retries_total += retries;
        // (The line is logged just after the connection is handed to the listeners: the round
        // trip may beat it.)
        assert!(
            tunneld.wait_for_log_count("tunnel up", ups + 1, STATE_TIMEOUT),
            "cycle {cycle}: the round trip went through without a new connection?"
        );
        fds.push(settled_fd_count(pid));
        rss.push(rss_kib(pid));
        assert!(tunneld.is_running(), "tunneld exited in cycle {cycle}");
    }
    let took = began.elapsed();

    let worst = recoveries.iter().max().copied().unwrap_or_default();
    let mean = recoveries.iter().sum::<Duration>() / CYCLES as u32;
    let mut sorted = recoveries.clone();
    sorted.sort();
    let median = sorted[CYCLES / 2];
    eprintln!(
        "[50 cycles] {CYCLES} kill/restart cycles in {:.1} s; recovery after restart (round trip done): mean {:.3} s, median {:.3} s, worst {:.3} s; {retries_total} round trips had to be retried",
        secs(took),
        secs(mean),
        secs(median),
        secs(worst)
    );
    eprintln!("[50 cycles] fds after each cycle: {fds:?}");
    eprintln!("[50 cycles] RSS KiB after each cycle: {rss:?}");
    let base_fds = fds[WARM_UP - 1];
    let base_rss = rss[WARM_UP - 1];
    let max_fds = fds[WARM_UP..].iter().max().copied().unwrap_or_default();
    let last_rss = rss[CYCLES - 1];
    let max_rss = rss[WARM_UP..].iter().max().copied().unwrap_or_default();
    eprintln!(
        "[50 cycles] fds: before {start_fds}, after cycle {WARM_UP} {base_fds}, max after {max_fds}, last {}; RSS KiB: before {start_rss}, after cycle {WARM_UP} {base_rss}, max after {max_rss}, last {last_rss} (growth {} KiB)",
        fds[CYCLES - 1],
        i64::try_from(last_rss).unwrap() - i64::try_from(base_rss).unwrap()
    );
    assert_eq!(
        retries_total, 0,
        "a client was turned away during a reconnect"
    );
    assert!(
        max_fds <= base_fds + 2,
        "open fds grow across reconnects: {base_fds} after cycle {WARM_UP}, up to {max_fds}: {fds:?}"
    );
    assert!(
        last_rss <= base_rss + 2048,
        "RSS grows across reconnects: {base_rss} KiB after cycle {WARM_UP}, {last_rss} KiB after {CYCLES}: {rss:?}"
    );

    tunneld.signal(Signal::SIGTERM);
    let status = tunneld
        .wait_exit(Duration::from_secs(5))
        .expect("tunneld stops on SIGTERM");
    assert!(status.success(), "{status:?}");
}

// (7) ------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tunnel_on_a_healthy_link_is_untouched_by_another_tunnels_outage() {
    harness::init_tracing();
    let dir = test_dir();
    let broken_sshd = Sshd::start();
    let healthy_sshd = Sshd::start();
    let proxy = ChaosProxy::start(broken_sshd.addr());
    let echo = EchoServer::start();
    let mut broken = TunnelSpec::new("broken", &broken_sshd, proxy.port(), echo.port());
    broken.connect_timeout = "4s";
    let healthy = TunnelSpec::new("healthy", &healthy_sshd, healthy_sshd.port(), echo.port());
    let healthy_port = healthy.forward_port;
    let tunneld = InProcess::start(&config_file(dir.path(), &[&broken, &healthy]));
    let broken_first = connection_id(&tunneld.wait_up("broken").await);
    let healthy_id = connection_id(&tunneld.wait_up("healthy").await);

    // Anything but "up on the same connection" on the healthy tunnel, from now on, is recorded.
    let disturbed = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut watch = tunneld.supervisor.state("healthy").unwrap();
    let record = disturbed.clone();
    let watcher = tokio::spawn(async move {
        while watch.changed().await.is_ok() {
            let state = watch.borrow_and_update().clone();
            if !matches!(state, TunnelState::Up { connection, .. } if connection == healthy_id) {
                record.lock().unwrap().push(state.to_string());
            }
        }
    });

    // An open forwarded connection on the healthy tunnel, used all through the outage.
    let mut open = TcpStream::connect(localhost(healthy_port)).await.unwrap();
    let mut exchanges = 0u64;
    let mut exchange = async |open: &mut TcpStream, what: &str| {
        let message = random_bytes(4096, exchanges);
        exchanges += 1;
        let back = exchange(open, &message, Duration::from_secs(5))
            .await
            .unwrap_or_else(|| {
                panic!("the open connection on the healthy tunnel stalled ({what})")
            });
        assert!(
            back == message,
            "wrong bytes on the healthy tunnel ({what})"
        );
    };
    exchange(&mut open, "before").await;

    proxy.set_mode(Mode::BlackHole);
    let cut = Instant::now();
    let mut broken_state = tunneld.supervisor.state("broken").unwrap();
    while !is_backing_off(&broken_state.borrow()) {
        assert!(
            cut.elapsed() < DETECT_BOUND,
            "the broken tunnel never noticed"
        );
        exchange(&mut open, "while the other link is black-holed").await;
        let _ = tokio::time::timeout(Duration::from_millis(100), broken_state.changed()).await;
    }
    let detected = cut.elapsed();
    proxy.set_mode(Mode::Pass);
    let recovered = up_with_new_connection(broken_first);
    while !recovered(&broken_state.borrow()) {
        assert!(
            cut.elapsed() < DETECT_BOUND + RECOVER_BOUND,
            "the broken tunnel never came back"
        );
        exchange(&mut open, "while the other tunnel reconnects").await;
        let _ = tokio::time::timeout(Duration::from_millis(100), broken_state.changed()).await;
    }
    let outage = cut.elapsed();
    exchange(&mut open, "after").await;
    eprintln!(
        "[isolation] other tunnel's outage: detected after {:.3} s, over after {:.3} s; {exchanges} exchanges on the healthy tunnel's open connection all went through",
        secs(detected),
        secs(outage)
    );

    let now = tunneld.wait_up("healthy").await;
    assert_eq!(
        connection_id(&now),
        healthy_id,
        "the healthy tunnel reconnected"
    );
    watcher.abort();
    let disturbed = disturbed.lock().unwrap().clone();
    assert!(
        disturbed.is_empty(),
        "the healthy tunnel left Up: {disturbed:?}"
    );
    assert_eq!(
        healthy_sshd.logins(),
        1,
        "the healthy tunnel logged in again"
    );
    assert!(broken_sshd.wait_for_log_count("Accepted publickey", 2, STATE_TIMEOUT));
    drop(open);
    tunneld.stop().await;
}

// (8) ------------------------------------------------------------------------------------------

/// Opens `n` forwarded connections to `port` and sends each a few bytes, without reading.
fn open_clients(port: u16, n: usize) -> Vec<std::net::TcpStream> {
    (0..n)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(localhost(port)).unwrap();
            s.write_all(b"mid-exchange").unwrap();
            s
        })
        .collect()
}

/// Opens `n` clients of the forward on `port` while the tunnel is down, and returns once tunneld
/// has accepted them (its fd count went up by `n`): they wait for the tunnel inside tunneld.
fn open_waiting_clients(tunneld: &TunneldProcess, port: u16, n: usize) -> Vec<std::net::TcpStream> {
    let before = fd_count(tunneld.pid());
    let clients = open_clients(port, n);
    assert!(
        wait_until(STATE_TIMEOUT, || fd_count(tunneld.pid()) >= before + n),
        "tunneld did not accept the clients"
    );
    clients
}

/// SIGTERM, then: exit status 0 within 2 s. Returns how long it took.
fn sigterm_stops_within_2s(tunneld: &mut TunneldProcess, what: &str) -> Duration {
    let asked = Instant::now();
    tunneld.signal(Signal::SIGTERM);
    let status = tunneld.wait_exit(Duration::from_secs(10));
    let took = asked.elapsed();
    let clean = !tunneld.logs().contains("did not stop in time");
    eprintln!(
        "[SIGTERM {what}] exited {status:?} after {:.3} s; all tasks finished within the grace period: {clean}",
        secs(took)
    );
    let status = status.unwrap_or_else(|| panic!("tunneld still runs 10 s after SIGTERM ({what})"));
    assert_eq!(status.code(), Some(0), "{}", tunneld.logs());
    assert!(
        took < Duration::from_secs(2),
        "tunneld took {took:?} to stop ({what})\n{}",
        tunneld.logs()
    );
    took
}

#[test]
fn sigterm_while_backing_off_with_connections_open_exits_0_within_2s() {
    let dir = test_dir();
    let mut sshd = Sshd::start();
    let echo = EchoServer::start();
    let mut spec = TunnelSpec::new("t", &sshd, sshd.port(), echo.port());
    // Long enough that the tunnel is surely waiting out a backoff when SIGTERM comes.
    spec.backoff_max = "5s";
    let port = spec.forward_port;
    let config = config_file(dir.path(), &[&spec]);
    drop(spec);
    let mut tunneld = run_binary(&config);
    tunneld.expect_log("tunnel up", STATE_TIMEOUT);
    let payload = random_bytes(10_000, 8);
    assert_eq!(try_echo(port, &payload, STATE_TIMEOUT).unwrap(), payload);
    let before = open_clients(port, 2);
    assert!(wait_until(STATE_TIMEOUT, || echo.connections_total() >= 3));

    sshd.kill();
    tunneld.expect_log("tunnel down", STATE_TIMEOUT);
    // Clients arriving now wait for the tunnel (connect_timeout 10 s).
    let waiting = open_waiting_clients(&tunneld, port, 2);
    assert!(
        tunneld.wait_for_log_count("tunnel down", 3, STATE_TIMEOUT),
        "{}",
        tunneld.logs()
    );
    sigterm_stops_within_2s(&mut tunneld, "while backing off");
    drop((before, waiting));
}

#[test]
fn sigterm_while_connecting_through_a_stalled_link_exits_0_within_2s() {
    let dir = test_dir();
    let sshd = Sshd::start();
    let proxy = ChaosProxy::start(sshd.addr());
    let echo = EchoServer::start();
    let spec = TunnelSpec::new("t", &sshd, proxy.port(), echo.port());
    let port = spec.forward_port;
    let config = config_file(dir.path(), &[&spec]);
    let mut tunneld = run_binary(&config);
    tunneld.expect_log("tunnel up", STATE_TIMEOUT);
    let payload = random_bytes(10_000, 9);
    assert_eq!(try_echo(port, &payload, STATE_TIMEOUT).unwrap(), payload);
    let before = open_clients(port, 2);
    assert!(wait_until(STATE_TIMEOUT, || echo.connections_total() >= 3));

    // New TCP connects hang in SYN-SENT; the current connection is reset.
    proxy.set_accepting(false);
    let dials = tunneld.count_in_logs(": connecting peer=");
    proxy.reset_all();
    tunneld.expect_log("tunnel down", STATE_TIMEOUT);
    // The next attempt is under way, stuck in its TCP connect.
    assert!(
        tunneld.wait_for_log_count(": connecting peer=", dials + 1, STATE_TIMEOUT),
        "{}",
        tunneld.logs()
    );
    let waiting = open_waiting_clients(&tunneld, port, 2);
    sigterm_stops_within_2s(&mut tunneld, "while connecting");
    drop((before, waiting));
}

/// Shutdown must not wait out the clients that wait for a down tunnel: they are not carrying
/// anything yet, and their wait (up to connect_timeout, 10 s here) is longer than the grace that
/// SIGTERM gives (1.5 s). The binary exits 0 within 2 s either way (the grace runs out); this
/// checks that it did not need the grace, i.e. that every task finished when asked.
#[test]
fn sigterm_does_not_wait_out_clients_waiting_for_a_down_tunnel() {
    let dir = test_dir();
    let mut sshd = Sshd::start();
    let echo = EchoServer::start();
    let spec = TunnelSpec::new("t", &sshd, sshd.port(), echo.port());
    let port = spec.forward_port;
    let config = config_file(dir.path(), &[&spec]);
    drop(spec);
    let mut tunneld = run_binary(&config);
    tunneld.expect_log("tunnel up", STATE_TIMEOUT);
    sshd.kill();
    tunneld.expect_log("tunnel down", STATE_TIMEOUT);
    let waiting = open_waiting_clients(&tunneld, port, 2);
    let took = sigterm_stops_within_2s(&mut tunneld, "with clients waiting for the tunnel");
    assert!(
        !tunneld.logs().contains("did not stop in time"),
        "shutdown waited out its whole grace ({took:?}) for clients that were only waiting for the tunnel:\n{}",
        tunneld.logs()
    );
    drop(waiting);
}

// (9) ------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_arriving_while_the_tunnel_is_down_waits_and_gets_through() {
    harness::init_tracing();
    let dir = test_dir();
    let mut sshd = Sshd::start();
    let echo = EchoServer::start();
    let spec = TunnelSpec::new("t", &sshd, sshd.port(), echo.port());
    assert_eq!(spec.connect_timeout, "10s");
    let connect_timeout = Duration::from_secs(10);
    let port = spec.forward_port;
    let tunneld = InProcess::start(&config_file(dir.path(), &[&spec]));
    drop(spec);
    let first = connection_id(&tunneld.wait_up("t").await);
    round_trip(port, 64 * 1024, 1).await;

    block_in_place(|| sshd.kill());
    tunneld.wait_for("t", DETECT_BOUND, is_backing_off).await;

    // The listener is still there: the client is accepted, not refused.
    let mut client = TcpStream::connect(localhost(port))
        .await
        .expect("a client was refused while the tunnel reconnects");
    let arrived = Instant::now();
    let payload = random_bytes(100_000, 9);
    client.write_all(&payload).await.unwrap();
    client.shutdown().await.unwrap();

    // Let the tunnel fail twice more with the client waiting (about a second), then bring sshd
    // back.
    let failures_then = match &*tunneld.supervisor.state("t").unwrap().borrow() {
        TunnelState::BackingOff { failures, .. } => *failures,
        TunnelState::Connecting { attempt, .. } | TunnelState::Authenticating { attempt, .. } => {
            attempt - 1
        }
        other => panic!("unexpected state {other}"),
    };
    tunneld
        .wait_for("t", STATE_TIMEOUT, |s| {
            matches!(s, TunnelState::BackingOff { failures, .. } if *failures >= failures_then + 2)
        })
        .await;
    let mut probe = [0u8; 1];
    match client.try_read(&mut probe) {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!(
            "the waiting client was closed after {:?} instead of waiting: {other:?}",
            arrived.elapsed()
        ),
    }
    let waited_before_restart = arrived.elapsed();
    block_in_place(|| sshd.restart());
    let restarted = Instant::now();

    let mut back = Vec::new();
    tokio::time::timeout(STATE_TIMEOUT, client.read_to_end(&mut back))
        .await
        .expect("the waiting client never got its bytes back")
        .unwrap();
    let total = arrived.elapsed();
    eprintln!(
        "[waiting client] arrived while down; sshd restarted {:.3} s later; bytes back {:.3} s after the restart ({:.3} s after arriving, connect_timeout {} s)",
        secs(waited_before_restart),
        secs(restarted.elapsed()),
        secs(total),
        connect_timeout.as_secs()
    );
    assert_eq!(back.len(), payload.len());
    assert!(back == payload, "the waiting client got other bytes back");
    assert!(
        total < connect_timeout,
        "it got through only after {total:?}"
    );
    let up = tunneld.wait_up("t").await;
    assert_ne!(connection_id(&up), first);
    tunneld.stop().await;
}
