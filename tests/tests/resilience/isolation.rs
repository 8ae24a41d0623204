//! What an outage must not disturb: a tunnel on a healthy link beside one whose link is
//! black-holed (same tunneld, same forward target) keeps its connection and its open forwarded
//! connection; and a client that arrives while the tunnel is down is accepted, waits, and gets
//! through once the server is back.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use harness::{
    ChaosProxy, EchoServer, Mode, Sshd, connection_id, exchange, is_backing_off, localhost,
    random_bytes, up_with_new_connection,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::block_in_place;
use tunneld_supervisor::TunnelState;

use crate::support::{InProcess, test_dir};
use crate::{DETECT_BOUND, RECOVER_BOUND, STATE_TIMEOUT, TunnelSpec, config_file, secs, start_up};

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
    let disturbed = Arc::new(Mutex::new(Vec::<String>::new()));
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
    let (tunneld, first) = start_up(dir.path(), &spec).await;
    drop(spec);

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
