//! A network cut: the link goes silent (no RST) and new connections get no answer to their
//! SYNs, as when a route or a Wi-Fi link disappears. When it comes back, the tunnel must be back
//! within about a second plus the handshake, whatever backoff it had reached meanwhile.

// Helpers outside #[test] functions unwrap too: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod support;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use harness::{ChaosProxy, EchoServer, Mode, Sshd, free_port, random_bytes};
use support::{InProcess, defaults_for, echo_through, test_dir, write_config};
use tunneld_supervisor::TunnelState;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_network_cut_the_tunnel_is_back_about_a_second_after_the_network() {
    let dir = test_dir();
    let sshd = Sshd::start();
    let echo = EchoServer::start();
    let proxy = ChaosProxy::start(sshd.addr());
    let port = free_port();
    // known_hosts names the proxy's port: that is the address tunneld dials.
    let known_hosts = dir.path().join("known_hosts");
    let config = format!(
        "{}[tunnels.cut]\nhost = \"127.0.0.1:{}\"\nknown_hosts = \"{}\"\nkeepalive_interval = \"1s\"\nkeepalive_max = 2\nbackoff_max = \"30s\"\nlocal = [\"{port}:127.0.0.1:{}\"]\n",
        defaults_for(&sshd, dir.path()),
        proxy.port(),
        known_hosts.display(),
        echo.port()
    );
    std::fs::write(&known_hosts, sshd.known_hosts_line_for_port(proxy.port())).unwrap();
    let tunneld = InProcess::start(&write_config(dir.path(), &config));
    let TunnelState::Up {
        connection: first, ..
    } = tunneld.wait_up("cut").await
    else {
        unreachable!()
    };

    // Cut: the open connection goes silent, new SYNs go unanswered.
    proxy.set_accepting(false);
    proxy.set_mode(Mode::BlackHole);
    let cut_at = Instant::now();
    tunneld
        .wait_for("cut", Duration::from_secs(20), |s| !s.is_up())
        .await;
    let detected = cut_at.elapsed();
    eprintln!("cut detected after {detected:?} (keepalive 1s x 2: budget 3s)");

    // Stay cut long enough for several attempts to hang on SYNs and fail.
    let mut failures = 0;
    while failures < 2 {
        let state = tunneld
            .wait_for(
                "cut",
                Duration::from_secs(40),
                |s| matches!(s, TunnelState::BackingOff { failures: f, .. } if *f > failures),
            )
            .await;
        if let TunnelState::BackingOff {
            failures: f,
            reason,
            ..
        } = state
        {
            eprintln!("attempt failed while cut: {reason}");
            failures = f;
        }
    }

    // The network is back.
    proxy.set_mode(Mode::Pass);
    proxy.set_accepting(true);
    let back_at = Instant::now();
    let TunnelState::Up {
        connection: second, ..
    } = tunneld
        .wait_for("cut", Duration::from_secs(20), TunnelState::is_up)
        .await
    else {
        unreachable!()
    };
    let recovered = back_at.elapsed();
    eprintln!("tunnel back {recovered:?} after the network");
    assert_ne!(
        first, second,
        "a new SSH connection must replace the dead one"
    );
    // About a second plus the handshake; generous for a loaded machine, but far below the
    // 10 s connect_timeout and the backoff cap that a naive retry would wait out.
    assert!(
        recovered < Duration::from_secs(6),
        "the tunnel took {recovered:?} to come back after the network did"
    );
    let payload = random_bytes(100_000, 9);
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    assert_eq!(echo_through(addr, &payload).await, payload);
    tunneld.stop().await;
}
