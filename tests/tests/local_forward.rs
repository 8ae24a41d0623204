//! `local` forwards through a real OpenSSH sshd, with tunneld running in process.

// Helpers outside #[test] functions unwrap too: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod support;

use std::net::Ipv4Addr;
use std::time::Duration;

use harness::{
    ClosedPort, EchoServer, Failure, Sshd, connection_id, free_port, localhost, random_bytes,
};
use support::{InProcess, defaults_for, echo_through, test_dir, write_config, write_one_tunnel};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tunneld_supervisor::{ListenerState, TunnelState};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_64_mib_payload_arrives_byte_identical() {
    let dir = test_dir();
    let sshd = Sshd::start();
    let echo = EchoServer::start();
    let port = free_port();
    let block = format!("local = [\"{port}:127.0.0.1:{}\"]\n", echo.port());
    let tunneld = InProcess::start(&write_one_tunnel(dir.path(), &sshd, "bulk", &block));
    tunneld.wait_up("bulk").await;

    let payload = random_bytes(64 << 20, 64);
    let back = echo_through(localhost(port), &payload).await;
    assert_eq!(back.len(), payload.len());
    assert!(back == payload, "the echoed bytes differ from the payload");
    tunneld.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_connections_all_complete_with_their_own_bytes() {
    let dir = test_dir();
    let sshd = Sshd::start();
    let echo = EchoServer::start();
    let port = free_port();
    let block = format!("local = [\"{port}:127.0.0.1:{}\"]\n", echo.port());
    let tunneld = InProcess::start(&write_one_tunnel(dir.path(), &sshd, "busy", &block));
    let up = tunneld.wait_up("busy").await;

    let clients: Vec<_> = (0..200u64)
        .map(|i| {
            tokio::spawn(async move {
                let payload = random_bytes(16 * 1024 + i as usize * 7, i);
                let back = echo_through(localhost(port), &payload).await;
                back == payload
            })
        })
        .collect();
    let mut ok = 0;
    for client in clients {
        if client.await.unwrap() {
            ok += 1;
        }
    }
    assert_eq!(
        ok, 200,
        "every connection must get exactly its own bytes back"
    );
    assert!(echo.connections_total() >= 200);
    // All of them over the one SSH connection.
    let now = tunneld.wait_up("busy").await;
    assert_eq!(connection_id(&now), connection_id(&up));
    tunneld.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_forwards_share_one_connection() {
    let dir = test_dir();
    let sshd = Sshd::start();
    let echoes = [
        EchoServer::start(),
        EchoServer::start(),
        EchoServer::start(),
    ];
    let ports = [free_port(), free_port(), free_port()];
    let forwards: Vec<String> = ports
        .iter()
        .zip(&echoes)
        .map(|(port, echo)| format!("\"{port}:127.0.0.1:{}\"", echo.port()))
        .collect();
    let block = format!("local = [{}]\n", forwards.join(", "));
    let tunneld = InProcess::start(&write_one_tunnel(dir.path(), &sshd, "three", &block));
    tunneld.wait_up("three").await;

    for (i, (port, echo)) in ports.iter().zip(&echoes).enumerate() {
        let payload = random_bytes(100_000, i as u64);
        assert_eq!(echo_through(localhost(*port), &payload).await, payload);
        assert_eq!(
            echo.connections_total(),
            1,
            "forward {i} reached its own target"
        );
    }
    // One SSH session carried all three: sshd accepted exactly one login.
    assert_eq!(sshd.logins(), 1);
    tunneld.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_the_server_refuses_fails_only_that_connection() {
    let dir = test_dir();
    let allowed = EchoServer::start();
    let forbidden = EchoServer::start();
    let sshd = Sshd::builder()
        .config_line(format!("PermitOpen 127.0.0.1:{}", allowed.port()))
        .start();
    let (good, bad) = (free_port(), free_port());
    let block = format!(
        "local = [\"{good}:127.0.0.1:{}\", \"{bad}:127.0.0.1:{}\"]\n",
        allowed.port(),
        forbidden.port()
    );
    let tunneld = InProcess::start(&write_one_tunnel(dir.path(), &sshd, "mixed", &block));
    let up = tunneld.wait_up("mixed").await;

    for round in 0..3u64 {
        // The refused one: accepted, then closed cleanly without a byte.
        let mut refused = TcpStream::connect(localhost(bad)).await.unwrap();
        let mut buf = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(15), refused.read_to_end(&mut buf))
            .await
            .expect("a refused connection must be closed, not left hanging");
        assert!(read.is_ok() || buf.is_empty());
        assert!(
            buf.is_empty(),
            "nothing may come back from a refused target"
        );
        // The permitted one still works, over the same connection.
        let payload = random_bytes(50_000, round);
        assert_eq!(echo_through(localhost(good), &payload).await, payload);
    }
    assert_eq!(forbidden.connections_total(), 0);
    assert!(
        sshd.wait_for_log("denied", Duration::from_secs(5)),
        "sshd log: {}",
        sshd.log()
    );
    let now = tunneld.wait_up("mixed").await;
    assert_eq!(
        connection_id(&now),
        connection_id(&up),
        "the tunnel must not reconnect"
    );
    tunneld.stop().await;
}

/// With exit_on_forward_failure, as with OpenSSH's ExitOnForwardFailure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_listen_port_fails_the_tunnel_with_the_reason() {
    let dir = test_dir();
    let sshd = Sshd::start();
    let squatter = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let port = squatter.local_addr().unwrap().port();
    let target = ClosedPort::new();
    let block = format!(
        "exit_on_forward_failure = true\nlocal = [\"127.0.0.1:{port}:127.0.0.1:{}\"]\n",
        target.port()
    );
    let tunneld = InProcess::start(&write_one_tunnel(dir.path(), &sshd, "taken", &block));
    let Failure { reason, kind, .. } = tunneld.wait_failure("taken", support::UP_TIMEOUT).await;
    assert_eq!(
        reason,
        format!("listen 127.0.0.1:{port}: Address already in use (os error 98)")
    );
    assert_eq!(kind, tunneld_ssh::FailureKind::ForwardRefused);
    // It never connected: a tunnel that cannot listen is not "up".
    assert!(!sshd.log().contains("Accepted publickey"));

    // Once the port is free, the retry binds it and the tunnel comes up.
    drop(squatter);
    tunneld.wait_up("taken").await;
    tunneld.stop().await;
}

/// By default a port that another program holds takes nothing else down: the tunnel connects,
/// its other forward serves, and once the squatter goes the port is bound and the tunnel is up,
/// on the same connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_listen_port_leaves_the_other_forwards_serving_and_is_bound_once_free() {
    let dir = test_dir();
    let sshd = Sshd::start();
    let echo = EchoServer::start();
    let squatter = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let taken = squatter.local_addr().unwrap().port();
    let good = free_port();
    let block = format!(
        "local = [\"127.0.0.1:{taken}:127.0.0.1:{echo}\", \"{good}:127.0.0.1:{echo}\"]\n",
        echo = echo.port()
    );
    let tunneld = InProcess::start(&write_one_tunnel(dir.path(), &sshd, "taken", &block));
    let degraded = tunneld
        .wait_for("taken", support::UP_TIMEOUT, TunnelState::is_degraded)
        .await;
    let TunnelState::Degraded {
        connection,
        listeners,
        ..
    } = &degraded
    else {
        unreachable!()
    };
    let reason = format!("listen 127.0.0.1:{taken}: Address already in use (os error 98)");
    assert_eq!(
        listeners[0].state,
        ListenerState::Retrying {
            reason: reason.clone()
        }
    );
    assert_eq!(listeners[1].state, ListenerState::Listening);
    let status = tunneld.supervisor.report().status;
    assert_eq!(
        status,
        format!(
            "0/1 tunnels up, 1 degraded; taken: degraded (127.0.0.1:{}), 1/2 forwards up; {reason}",
            sshd.port()
        )
    );

    // The other forward serves meanwhile.
    for round in 0..3u64 {
        let payload = random_bytes(20_000, round);
        assert_eq!(echo_through(localhost(good), &payload).await, payload);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // The squatter goes: the port is ours within a couple of seconds, on the same connection.
    drop(squatter);
    let freed = std::time::Instant::now();
    let up = tunneld.wait_up("taken").await;
    eprintln!(
        "port {taken} bound {:?} after it was freed",
        freed.elapsed()
    );
    assert_eq!(
        connection_id(&up),
        *connection,
        "the tunnel must not reconnect"
    );
    for port in [taken, good] {
        let payload = random_bytes(30_000, u64::from(port));
        assert_eq!(echo_through(localhost(port), &payload).await, payload);
    }
    assert_eq!(sshd.logins(), 1, "{}", sshd.log());
    assert_eq!(tunneld.supervisor.report().status, "1/1 tunnels up");
    tunneld.stop().await;
}

async fn negotiated_with(ciphers: &str, compression: bool) -> (tunneld_ssh::Negotiated, String) {
    let dir = test_dir();
    let sshd = Sshd::builder().log_level("DEBUG1").start();
    let echo = EchoServer::start();
    let port = free_port();
    let block = format!(
        "ciphers = [{ciphers}]\ncompression = {compression}\nlocal = [\"{port}:127.0.0.1:{}\"]\n",
        echo.port()
    );
    let tunneld = InProcess::start(&write_one_tunnel(dir.path(), &sshd, "algo", &block));
    let TunnelState::Up { negotiated, .. } = tunneld.wait_up("algo").await else {
        unreachable!()
    };
    // Compressible data round-trips too.
    let payload = vec![b'z'; 1 << 20];
    assert_eq!(echo_through(localhost(port), &payload).await, payload);
    assert!(sshd.wait_for_log("kex: client->server cipher", Duration::from_secs(5)));
    tunneld.stop().await;
    let line = sshd
        .log()
        .lines()
        .find(|l| l.contains("kex: client->server cipher"))
        .unwrap_or_default()
        .to_string();
    (negotiated, line)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_cipher_and_compression_are_what_sshd_negotiates() {
    let (negotiated, server_says) = negotiated_with(
        "\"aes256-gcm@openssh.com\", \"chacha20-poly1305@openssh.com\"",
        true,
    )
    .await;
    assert_eq!(negotiated.cipher, "aes256-gcm@openssh.com");
    assert_eq!(negotiated.compression, "zlib@openssh.com");
    assert!(
        server_says.contains("cipher: aes256-gcm@openssh.com")
            && server_says.contains("compression: zlib@openssh.com"),
        "sshd says: {server_says}"
    );

    let (negotiated, server_says) =
        negotiated_with("\"chacha20-poly1305@openssh.com\"", false).await;
    assert_eq!(negotiated.cipher, "chacha20-poly1305@openssh.com");
    assert_eq!(negotiated.compression, "none");
    assert!(
        server_says.contains("cipher: chacha20-poly1305@openssh.com")
            && server_says.contains("compression: none"),
        "sshd says: {server_says}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_speaks_times_out_the_handshake() {
    let dir = test_dir();
    let sshd = Sshd::start();
    // The kernel completes TCP handshakes into the backlog; nobody ever sends a banner.
    let mute = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let mute_port = mute.local_addr().unwrap().port();
    let config = format!(
        "{}[tunnels.mute]\nhost = \"127.0.0.1:{mute_port}\"\nconnect_timeout = \"1s\"\nlocal = [\"{}:127.0.0.1:9\"]\n",
        defaults_for(&sshd, dir.path()),
        free_port()
    );
    let tunneld = InProcess::start(&write_config(dir.path(), &config));
    let Failure { reason, kind, .. } = tunneld.wait_failure("mute", support::UP_TIMEOUT).await;
    assert_eq!(
        reason,
        format!("127.0.0.1:{mute_port}: timed out after 1s during SSH handshake")
    );
    assert_eq!(kind, tunneld_ssh::FailureKind::Timeout);
    tunneld.stop().await;
    drop(mute);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_target_name_is_resolved_by_the_server_not_by_tunneld() {
    let dir = test_dir();
    let sshd = Sshd::builder().log_level("DEBUG1").start();
    let echo = EchoServer::start();
    let port = free_port();
    // A name tunneld never looks up: it travels in the direct-tcpip request, as with ssh -L.
    let block = format!("local = [\"{port}:localhost:{}\"]\n", echo.port());
    let tunneld = InProcess::start(&write_one_tunnel(dir.path(), &sshd, "named", &block));
    tunneld.wait_up("named").await;
    let payload = random_bytes(10_000, 3);
    assert_eq!(echo_through(localhost(port), &payload).await, payload);
    let expected = format!("target localhost port {}", echo.port());
    assert!(
        sshd.wait_for_log(&expected, Duration::from_secs(5)),
        "no {expected:?} in sshd's log:\n{}",
        sshd.log()
    );
    tunneld.stop().await;
}

/// Clients that connect one after the other reach the target in that order, as through ssh -L:
/// iperf3 --bidir tells its two data connections apart by the order they were opened, and hangs
/// when a forwarder swaps them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_reach_the_target_in_the_order_clients_made_them() {
    use tokio::net::TcpListener;

    // Fewer than the 10 messages that russh's queue into the session holds: more could wait
    // for room there, and room is given in no particular order.
    const CLIENTS: u32 = 9;
    let dir = test_dir();
    let sshd = Sshd::start();
    let target = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target_port = target.local_addr().unwrap().port();
    let port = free_port();
    let block = format!("local = [\"{port}:127.0.0.1:{target_port}\"]\n");
    let tunneld = InProcess::start(&write_one_tunnel(dir.path(), &sshd, "order", &block));
    tunneld.wait_up("order").await;

    // Each client connects (and the kernel completes it) before the next one starts.
    support::assert_arrival_order(localhost(port), &target, CLIENTS).await;
    tunneld.stop().await;
}
