//! `remote` forwards (like `ssh -R`) through a real OpenSSH sshd, with tunneld in process.

// Helpers outside #[test] functions unwrap too: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use harness::{
    ChaosProxy, ClosedPort, EchoServer, Failure, Mode, Sshd, free_port, localhost, random_bytes,
    wait_until_async,
};
use support::{InProcess, defaults_for, echo_through, test_dir, write_config, write_one_tunnel};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tunneld_supervisor::{ListenerState, RemoteState, TunnelState};

/// `127.0.0.1:port` for a port as the SSH protocol carries it.
fn local(port: u32) -> SocketAddr {
    localhost(u16::try_from(port).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_64_mib_payload_round_trips_byte_identical() {
    let dir = test_dir();
    let sshd = Sshd::start();
    let echo = EchoServer::start();
    let port = free_port();
    let block = format!("remote = [\"{port}:127.0.0.1:{}\"]\n", echo.port());
    let tunneld = InProcess::start(&write_one_tunnel(dir.path(), &sshd, "back", &block));
    let (_, ports) = tunneld.wait_remote_listening("back").await;
    assert_eq!(ports, vec![u32::from(port)]);

    // A client on the server's side, through sshd's listener, back to our echo server.
    let payload = random_bytes(64 << 20, 46);
    let back = echo_through(local(ports[0]), &payload).await;
    assert_eq!(back.len(), payload.len());
    assert!(back == payload, "the echoed bytes differ from the payload");
    tunneld.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_connections_and_a_port_the_server_picks() {
    let dir = test_dir();
    let sshd = Sshd::start();
    let echo = EchoServer::start();
    let fixed = free_port();
    let block = format!(
        "remote = [\"{fixed}:127.0.0.1:{echo}\", \"0:127.0.0.1:{echo}\"]\n",
        echo = echo.port()
    );
    let tunneld = InProcess::start(&write_one_tunnel(dir.path(), &sshd, "both", &block));
    let (_, ports) = tunneld.wait_remote_listening("both").await;
    assert_eq!(ports[0], u32::from(fixed));
    assert_ne!(
        ports[1], 0,
        "port 0 asks the server to pick one; the state keeps it"
    );

    let clients: Vec<_> = (0..100u64)
        .map(|i| {
            let port = ports[(i % 2) as usize];
            tokio::spawn(async move {
                let payload = random_bytes(20_000 + i as usize, i);
                echo_through(local(port), &payload).await == payload
            })
        })
        .collect();
    for client in clients {
        assert!(client.await.unwrap());
    }
    tunneld.stop().await;
}

/// With exit_on_forward_failure, as with OpenSSH's ExitOnForwardFailure: the refusal drops the
/// connection, and the tunnel backs off at the cap and tries again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_forbids_remote_forwarding_fails_the_tunnel_permanently() {
    for forbid in ["AllowTcpForwarding local", "PermitListen 127.0.0.1:1"] {
        let dir = test_dir();
        let sshd = Sshd::builder().config_line(forbid).start();
        let port = free_port();
        let block = format!("exit_on_forward_failure = true\nremote = [\"{port}:127.0.0.1:9\"]\n");
        let tunneld = InProcess::start(&write_one_tunnel(dir.path(), &sshd, "nope", &block));
        let Failure {
            reason,
            permanent,
            kind,
            ..
        } = tunneld.wait_failure("nope", support::UP_TIMEOUT).await;
        assert_eq!(
            reason,
            format!(
                "127.0.0.1:{} refuses remote port forwarding of {port}:127.0.0.1:9 (AllowTcpForwarding / PermitListen / permitlisten)",
                sshd.port()
            ),
            "with {forbid}"
        );
        assert!(permanent, "with {forbid}");
        assert_eq!(kind, tunneld_ssh::FailureKind::ForwardRefused);
        // It tries again, on a new connection, and is refused again.
        assert!(
            wait_until_async(support::UP_TIMEOUT, || async { sshd.logins() >= 2 }).await,
            "with {forbid}: {}",
            sshd.log()
        );
        let again = tunneld.wait_failure("nope", support::UP_TIMEOUT).await;
        assert_eq!(again.reason, reason, "with {forbid}");
        tunneld.stop().await;
    }
}

/// By default one remote forward that the server refuses by policy takes nothing else down:
/// the tunnel's local forwards carry bytes the whole time, on one connection, while the refused
/// one is asked for again at backoff_max; the tunnel is degraded and says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_forward_refused_by_policy_leaves_the_local_forwards_serving() {
    let dir = test_dir();
    let sshd = Sshd::builder()
        .config_line("PermitListen 127.0.0.1:1")
        .start();
    let echo = EchoServer::start();
    let (first, second, refused) = (free_port(), free_port(), free_port());
    let block = format!(
        "local = [\"{first}:127.0.0.1:{echo}\", \"{second}:127.0.0.1:{echo}\"]\n\
         remote = [\"{refused}:127.0.0.1:{echo}\"]\n",
        echo = echo.port()
    );
    let tunneld = InProcess::start(&write_one_tunnel(dir.path(), &sshd, "db", &block));
    let is_refused = |s: &TunnelState| match s {
        TunnelState::Degraded { remote, .. } => {
            matches!(remote[0].state, RemoteState::Refused { .. })
        }
        _ => false,
    };
    let degraded = tunneld
        .wait_for("db", support::UP_TIMEOUT, is_refused)
        .await;
    let connection = degraded.connection().unwrap();
    let TunnelState::Degraded {
        remote, listeners, ..
    } = &degraded
    else {
        unreachable!()
    };
    let reason = format!(
        "127.0.0.1:{} refuses remote port forwarding of {refused}:127.0.0.1:{} \
         (AllowTcpForwarding / PermitListen / permitlisten)",
        sshd.port(),
        echo.port()
    );
    assert_eq!(
        remote[0].state,
        RemoteState::Refused {
            reason: reason.clone()
        }
    );
    assert!(
        listeners
            .iter()
            .all(|l| l.state == ListenerState::Listening),
        "{listeners:?}"
    );
    let status = tunneld.supervisor.report();
    assert!(status.ready, "{status:?}");
    assert!(status.healthy(), "{status:?}");
    assert_eq!(
        status.status,
        format!(
            "0/1 tunnels up, 1 degraded; db: degraded (127.0.0.1:{}), 2/3 forwards up; {reason}",
            sshd.port()
        )
    );

    // Round trips through both local forwards at several moments, across several refusals
    // (backoff_max is 2 s here), all on the one connection.
    let started = Instant::now();
    let mut round = 0u64;
    while started.elapsed() < Duration::from_secs(7) {
        for port in [first, second] {
            let payload = random_bytes(20_000, round);
            assert_eq!(echo_through(localhost(port), &payload).await, payload);
        }
        let now = tunneld
            .wait_for("db", Duration::from_secs(1), |s| s.is_degraded())
            .await;
        assert_eq!(
            now.connection(),
            Some(connection),
            "the tunnel must not reconnect"
        );
        round += 1;
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    eprintln!("{round} rounds of round trips through the local forwards while degraded");
    assert_eq!(sshd.logins(), 1, "{}", sshd.log());
    // Nothing listens on the refused port on the server.
    assert!(TcpStream::connect(localhost(refused)).await.is_err());
    tunneld.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_that_is_down_fails_only_that_connection() {
    let dir = test_dir();
    let sshd = Sshd::start();
    let echo = EchoServer::start();
    let down = ClosedPort::new();
    let block = format!(
        "remote = [\"0:127.0.0.1:{}\", \"0:127.0.0.1:{}\"]\n",
        down.port(),
        echo.port()
    );
    let tunneld = InProcess::start(&write_one_tunnel(dir.path(), &sshd, "half", &block));
    let (connection, ports) = tunneld.wait_remote_listening("half").await;

    for round in 0..3u64 {
        let mut refused = TcpStream::connect(local(ports[0])).await.unwrap();
        let mut buf = Vec::new();
        let closed =
            tokio::time::timeout(Duration::from_secs(15), refused.read_to_end(&mut buf)).await;
        assert!(
            closed.is_ok(),
            "a connection to a dead target must be closed, not left hanging"
        );
        assert!(buf.is_empty());
        let payload = random_bytes(30_000, round);
        assert_eq!(echo_through(local(ports[1]), &payload).await, payload);
    }
    let (still, _) = tunneld.wait_remote_listening("half").await;
    assert_eq!(still, connection, "the tunnel must not reconnect");
    tunneld.stop().await;
}

/// The stale port: after the link dies, the server keeps the old session (and its port) until
/// it expires it; tunneld must keep the new connection and win the port back as soon as the
/// server lets go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_still_held_by_the_dead_session_is_won_back_on_the_new_connection() {
    let dir = test_dir();
    let sshd = Sshd::builder()
        .config_line("ClientAliveInterval 1")
        .config_line("ClientAliveCountMax 2")
        .start();
    let echo = EchoServer::start();
    let other = EchoServer::start();
    let proxy = ChaosProxy::start(sshd.addr());
    let port = free_port();
    let known_hosts = dir.path().join("known_hosts");
    let config = format!(
        "{}[tunnels.pi]\nhost = \"127.0.0.1:{}\"\nknown_hosts = \"{}\"\nkeepalive_interval = \"1s\"\nkeepalive_max = 2\nremote = [\"{port}:127.0.0.1:{}\", \"0:127.0.0.1:{}\"]\n",
        defaults_for(&sshd, dir.path()),
        proxy.port(),
        known_hosts.display(),
        echo.port(),
        other.port()
    );
    std::fs::write(&known_hosts, sshd.known_hosts_line_for_port(proxy.port())).unwrap();
    let tunneld = InProcess::start(&write_config(dir.path(), &config));
    let (first, _) = tunneld.wait_remote_listening("pi").await;

    // The old connection dies silently; new ones get through.
    proxy.pin_existing(Mode::BlackHole);
    let cut = Instant::now();
    let waiting = tunneld
        .wait_for("pi", Duration::from_secs(30), |s| match s {
            TunnelState::Degraded {
                connection, remote, ..
            } => {
                *connection != first
                    && matches!(
                        remote.first().map(|r| &r.state),
                        Some(RemoteState::Waiting { .. })
                    )
            }
            _ => false,
        })
        .await;
    let reconnected = cut.elapsed();
    let TunnelState::Degraded { remote, .. } = &waiting else {
        unreachable!()
    };
    let RemoteState::Waiting { reason } = &remote[0].state else {
        unreachable!()
    };
    assert_eq!(
        reason,
        &format!(
            "remote port {port} still held by a previous session on the server (or in use there); retrying"
        )
    );

    // Meanwhile the tunnel's other forward serves on the new connection.
    let (_, ports) = {
        let state = tunneld
            .wait_for("pi", Duration::from_secs(30), |s| match s {
                TunnelState::Up { remote, .. } | TunnelState::Degraded { remote, .. } => {
                    matches!(
                        remote.get(1).map(|r| &r.state),
                        Some(RemoteState::Listening { .. })
                    )
                }
                _ => false,
            })
            .await;
        let (TunnelState::Up {
            connection, remote, ..
        }
        | TunnelState::Degraded {
            connection, remote, ..
        }) = state
        else {
            unreachable!()
        };
        let ports: Vec<u32> = remote
            .iter()
            .filter_map(|r| match r.state {
                RemoteState::Listening { port } => Some(port),
                _ => None,
            })
            .collect();
        (connection, ports)
    };
    let payload = random_bytes(10_000, 1);
    assert_eq!(
        echo_through(local(*ports.last().unwrap()), &payload).await,
        payload
    );

    // sshd expires the dead session; the port comes back on the same new connection.
    let (second, ports) = tunneld.wait_remote_listening("pi").await;
    let won_back = cut.elapsed();
    assert_ne!(second, first);
    assert_eq!(ports[0], u32::from(port));
    assert!(
        sshd.wait_for_log("Timeout, client not responding", Duration::from_secs(5)),
        "{}",
        sshd.log()
    );
    eprintln!("reconnected after {reconnected:?}; port {port} won back {won_back:?} after the cut");
    let payload = random_bytes(100_000, 2);
    assert_eq!(
        echo_through(local(u32::from(port)), &payload).await,
        payload
    );
    tunneld.stop().await;
}

/// The Raspberry Pi scenario: a reverse forward to the Pi's own sshd, then a real `ssh -p PORT`
/// on the server side runs a command on the Pi.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reverse_ssh_to_the_pi_runs_a_command() {
    let dir = test_dir();
    let vps = Sshd::start();
    let pi = Sshd::start();
    let port = free_port();
    let block = format!("remote = [\"{port}:localhost:{}\"]\n", pi.port());
    let tunneld = InProcess::start(&write_one_tunnel(dir.path(), &vps, "pi", &block));
    tunneld.wait_remote_listening("pi").await;

    let output = tokio::task::spawn_blocking(move || {
        let output = pi
            .ssh_command_via(port)
            .arg("echo hello from the pi")
            .output()
            .unwrap();
        (output, pi)
    })
    .await
    .unwrap();
    let (output, pi) = output;
    assert!(
        output.status.success(),
        "ssh failed: {}\npi's sshd:\n{}",
        String::from_utf8_lossy(&output.stderr),
        pi.log()
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "hello from the pi\n"
    );
    tunneld.stop().await;
}

/// The server's clients reach the target here in the order they connected, as through ssh -R
/// (the local_forward test of the same name says why it matters).
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
    let block = format!("remote = [\"{port}:127.0.0.1:{target_port}\"]\n");
    let tunneld = InProcess::start(&write_one_tunnel(dir.path(), &sshd, "order", &block));
    let (_, ports) = tunneld.wait_remote_listening("order").await;

    // sshd accepts them, and opens their channels, in the order they connect.
    support::assert_arrival_order(local(ports[0]), &target, CLIENTS).await;
    tunneld.stop().await;
}
