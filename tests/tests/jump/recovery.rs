//! Recovery of a chain: a hop's sshd killed and restarted (the first or the middle one), or the
//! first hop frozen, is detected and the whole chain is rebuilt over a new connection; the death
//! of a jump host is reported as that hop's.

use std::time::Instant;

use harness::{EchoServer, Failure, Sshd, connection_id, up_with_new_connection, wait_until};
use tokio::task::block_in_place;
use tunneld_ssh::FailureKind;

use crate::support::{InProcess, test_dir};
use crate::{
    DETECT_BOUND, LOG_TIMEOUT, RECOVER_BOUND, STATE_TIMEOUT, chain_config, debug_sshd, hops,
    round_trip_eventually, tunnel,
};

/// The chain client -> A -> B -> C with a forward to an echo server behind C; kills (and
/// restarts) the sshd of hop `which` (0 = A, 1 = B) and checks that the tunnel notices, comes
/// back over a new connection, and carries bytes again.
async fn kill_and_restart_hop(which: usize) {
    harness::init_tracing();
    let dir = test_dir();
    let mut sshds = [debug_sshd(), debug_sshd(), debug_sshd()];
    let echo = EchoServer::start();
    let (block, port) = tunnel("chain", "hop-c", r#"["hop-a", "hop-b"]"#, echo.port());
    let hops = hops(dir.path(), &sshds);
    let tunneld = InProcess::start(&chain_config(dir.path(), &[&hops, &block]));
    let first = connection_id(&tunneld.wait_up("chain").await);
    round_trip_eventually(port, 64 * 1024, 1, STATE_TIMEOUT).await;

    let name = ["hop-a", "hop-b"][which];
    let killed = Instant::now();
    block_in_place(|| sshds[which].kill());
    let down = tunneld
        .wait_for("chain", DETECT_BOUND, |s| !s.is_up())
        .await;
    let noticed = killed.elapsed();
    eprintln!(
        "[{name} killed] noticed after {:.3} s: {down}",
        noticed.as_secs_f64()
    );
    let Failure {
        reason,
        kind,
        permanent,
        ..
    } = tunneld.wait_failure("chain", DETECT_BOUND).await;
    eprintln!("[{name} killed] {reason} (kind {kind})");
    assert!(
        !permanent,
        "a hop that went away is not permanent: {reason}"
    );

    block_in_place(|| sshds[which].restart());
    let restarted = Instant::now();
    let up = tunneld
        .wait_for("chain", RECOVER_BOUND, up_with_new_connection(first))
        .await;
    round_trip_eventually(port, 64 * 1024, 2, RECOVER_BOUND).await;
    eprintln!(
        "[{name} killed] back {:.3} s after the restart (connection {first} -> {})",
        restarted.elapsed().as_secs_f64(),
        connection_id(&up)
    );
    // The whole chain was rebuilt: every hop saw a second login.
    for (hop, sshd) in ["hop-a", "hop-b", "hop-c"].iter().zip(&sshds) {
        assert!(
            wait_until(LOG_TIMEOUT, || sshd.logins() >= 2),
            "{hop} must see the rebuilt chain log in again ({} logins)",
            sshd.logins()
        );
    }
    tunneld.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_hops_sshd_killed_and_restarted_the_chain_comes_back() {
    kill_and_restart_hop(0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_middle_hops_sshd_killed_and_restarted_the_chain_comes_back() {
    kill_and_restart_hop(1).await;
}

/// Hop 1's session process frozen (SIGSTOP): no RST, nothing closes; only keepalives can tell.
/// They run on the target's session, whose packets cross hop 1, so the freeze is detected within
/// the keepalive budget and the chain is rebuilt through a fresh session of hop 1's sshd.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_first_hop_is_detected_by_keepalives_and_the_chain_rebuilt() {
    harness::init_tracing();
    let dir = test_dir();
    let (a, b) = (debug_sshd(), debug_sshd());
    let echo = EchoServer::start();
    let (block, port) = tunnel("frozen", "hop-b", r#"["hop-a"]"#, echo.port());
    let hops = hops(dir.path(), [&a, &b]);
    let tunneld = InProcess::start(&chain_config(dir.path(), &[&hops, &block]));
    let first = connection_id(&tunneld.wait_up("frozen").await);
    round_trip_eventually(port, 64 * 1024, 1, STATE_TIMEOUT).await;

    let stopped = block_in_place(|| a.stop_sessions());
    let frozen = Instant::now();
    let Failure { reason, kind, .. } = tunneld.wait_failure("frozen", DETECT_BOUND).await;
    eprintln!(
        "[hop-a frozen] detected after {:.3} s: {reason} (kind {kind})",
        frozen.elapsed().as_secs_f64()
    );
    assert_eq!(kind, FailureKind::Timeout, "{reason}");
    // A's listener still serves new sessions: the chain comes back while the old one is frozen.
    let up = tunneld
        .wait_for("frozen", RECOVER_BOUND, up_with_new_connection(first))
        .await;
    round_trip_eventually(port, 64 * 1024, 2, RECOVER_BOUND).await;
    eprintln!("[hop-a frozen] back on connection {}", connection_id(&up));
    for pid in stopped {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap()),
            nix::sys::signal::Signal::SIGCONT,
        );
    }
    tunneld.stop().await;
}

/// When a jump host dies, the error says which hop it was, not only that the target's session
/// closed: errors say which hop failed and why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_death_of_the_first_hop_is_reported_as_that_hops() {
    harness::init_tracing();
    let dir = test_dir();
    let (mut a, b) = (Sshd::start(), Sshd::start());
    let echo = EchoServer::start();
    let (block, port) = tunnel("dies", "hop-b", r#"["hop-a"]"#, echo.port());
    let hops = hops(dir.path(), [&a, &b]);
    let tunneld = InProcess::start(&chain_config(dir.path(), &[&hops, &block]));
    tunneld.wait_up("dies").await;
    round_trip_eventually(port, 64 * 1024, 1, STATE_TIMEOUT).await;

    block_in_place(|| a.kill());
    let Failure {
        reason,
        kind,
        permanent,
        ..
    } = tunneld.wait_failure("dies", DETECT_BOUND).await;
    eprintln!("[hop-a died] {reason} (kind {kind})");
    assert_eq!(kind, FailureKind::Network);
    assert!(!permanent);
    let prefix = "hop 1 (hop-a): ";
    assert!(
        reason.starts_with(prefix),
        "the error must blame hop 1 as {prefix:?}; tunneld says: {reason:?}"
    );
    tunneld.stop().await;
}
