//! Failures that retrying cannot fix until someone changes something: authentication refused
//! and a changed host key. Each is reported as permanent, says why, and is retried at the
//! backoff cap (not sooner), and a client of the forward gets nothing through meanwhile.

use std::time::{Duration, Instant};

use harness::{EchoServer, Failure, KeyPair, Sshd, backing_off, localhost};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tunneld_ssh::FailureKind;
use tunneld_supervisor::TunnelState;

use crate::support::{InProcess, test_dir};
use crate::{STATE_TIMEOUT, TunnelSpec, config_file, secs};

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
