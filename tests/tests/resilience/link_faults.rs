//! Faults of the link or the server that tunneld must detect and recover from, each by a new
//! connection: sshd killed (noticed at once from the closed socket), a black-holed link and a
//! frozen link with writes stuck (noticed by keepalives within their budget), and the server's
//! session SIGSTOPped.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use harness::{ChaosProxy, EchoServer, Failure, Mode, Sshd, localhost, random_bytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::block_in_place;
use tunneld_ssh::FailureKind;

use crate::support::test_dir;
use crate::{
    BUDGET, KEEPALIVE_INTERVAL, STATE_TIMEOUT, TunnelSpec, secs, start_up, wait_detected,
    wait_recovered, wait_timed_out,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sshd_killed_and_restarted_the_forward_works_again_over_a_new_connection() {
    harness::init_tracing();
    let dir = test_dir();
    let mut sshd = Sshd::start();
    let echo = EchoServer::start();
    let spec = TunnelSpec::new("t", &sshd, sshd.port(), echo.port());
    let port = spec.forward_port;
    let (tunneld, first) = start_up(dir.path(), &spec).await;
    drop(spec);

    let killed = Instant::now();
    block_in_place(|| sshd.kill());
    let (
        Failure {
            reason,
            kind,
            permanent,
            ..
        },
        noticed,
    ) = wait_detected(&tunneld, killed).await;
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
    let (second, up_after) = wait_recovered(&tunneld, port, first, restarted).await;
    let works_after = restarted.elapsed();
    eprintln!(
        "[sshd kill] after restart: up in {:.3} s, first round trip done in {:.3} s (connection {} -> {})",
        secs(up_after),
        secs(works_after),
        first,
        second
    );
    assert_eq!(sshd.logins(), 2, "one login before the kill, one after");
    tunneld.stop().await;
}

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
    let (tunneld, first) = start_up(dir.path(), &spec).await;
    assert_eq!(sshd.logins(), 1);

    proxy.set_mode(Mode::BlackHole);
    let cut = Instant::now();
    let (reason, detected) = wait_timed_out(&tunneld, cut).await;
    eprintln!(
        "[black hole] detected after {:.3} s (budget {} s): {reason}",
        secs(detected),
        BUDGET.as_secs()
    );
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
    let (second, up_after) = wait_recovered(&tunneld, port, first, restored).await;
    eprintln!(
        "[black hole] link restored: up again after {:.3} s (connection {first} -> {second})",
        secs(up_after),
    );
    // A NEW SSH connection replaced the old one, on the server's side too.
    assert!(
        sshd.wait_for_log_count("Accepted publickey", 2, STATE_TIMEOUT),
        "sshd did not log a second login:\n{}",
        sshd.log()
    );
    tunneld.stop().await;
}

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
    let (tunneld, first) = start_up(dir.path(), &spec).await;

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
    let (reason, detected) = wait_timed_out(&tunneld, frozen).await;
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
    let (second, up_after) = wait_recovered(&tunneld, port, first, thawed).await;
    eprintln!(
        "[freeze] link thawed: up again after {:.3} s (connection {first} -> {second})",
        secs(up_after),
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
    let (tunneld, first) = start_up(dir.path(), &spec).await;

    let stopped = block_in_place(|| sshd.stop_sessions());
    assert!(!stopped.is_empty(), "sshd has no session process to stop");
    let frozen = Instant::now();
    let (reason, detected) = wait_timed_out(&tunneld, frozen).await;
    eprintln!(
        "[SIGSTOP] session {stopped:?} stopped: detected after {:.3} s (budget {} s): {reason}",
        secs(detected),
        BUDGET.as_secs()
    );
    assert!(
        detected >= BUDGET - KEEPALIVE_INTERVAL,
        "detected too early: {detected:?}"
    );

    // sshd's listener still runs: the next attempt gets a fresh session.
    let (second, up_after) = wait_recovered(&tunneld, port, first, frozen + detected).await;
    eprintln!(
        "[SIGSTOP] up again {:.3} s after detection (connection {first} -> {second})",
        secs(up_after),
    );
    assert!(sshd.wait_for_log_count("Accepted publickey", 2, STATE_TIMEOUT));
    sshd.cont_sessions();
    tunneld.stop().await;
}
