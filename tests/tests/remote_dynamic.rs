//! Remote dynamic forwarding (like `ssh -R port`, OpenSSH 7.6+) through a real OpenSSH sshd:
//! the server's port is a SOCKS proxy whose connections leave from this side. The clients are
//! on the "server side" (sshd's listener on loopback), the targets on this side.

// Helpers outside #[test] functions unwrap too: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use harness::{ClosedPort, HttpServer, Sshd, free_port, localhost, random_bytes};
use support::socks::{curl, domain_request, ipv4_request, socks5_connect};
use support::{InProcess, test_dir, write_one_tunnel};
use tunneld_supervisor::{ForwardKind, TunnelState};

/// Starts a tunnel with `remote = ["PORT"]` and waits until the server listens; returns tunneld,
/// the port and the connection id.
async fn socks_back(sshd: &Sshd, dir: &std::path::Path) -> (InProcess, u16, u64) {
    let port = free_port();
    let block = format!("remote = [\"{port}\"]\n");
    let tunneld = InProcess::start(&write_one_tunnel(dir, sshd, "back", &block));
    let (connection, ports) = tunneld.wait_remote_listening("back").await;
    assert_eq!(ports, [u32::from(port)]);
    (tunneld, port, connection)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_on_the_server_side_fetches_exact_bytes_from_this_side() {
    let dir = test_dir();
    let sshd = Sshd::start();
    let body = random_bytes(300_000, 61);
    let web = HttpServer::start(body.clone());
    let (tunneld, port, _) = socks_back(&sshd, dir.path()).await;
    let proxy = format!("127.0.0.1:{port}");
    let results = tokio::task::spawn_blocking(move || {
        // `localhost` is resolved on this side (socks5h and 4a send the name).
        let hostname_url = format!("http://localhost:{}/", web.port());
        let ip_url = format!("http://127.0.0.1:{}/", web.port());
        vec![
            (
                "socks5-hostname",
                curl(&["--socks5-hostname", &proxy], &hostname_url),
            ),
            ("socks5", curl(&["--socks5", &proxy], &ip_url)),
            ("socks4a", curl(&["--socks4a", &proxy], &hostname_url)),
            ("socks4", curl(&["--socks4", &proxy], &ip_url)),
        ]
    })
    .await
    .unwrap();
    for (mode, (ok, fetched, stderr)) in results {
        assert!(ok, "{mode}: {stderr}");
        assert!(
            fetched == body,
            "{mode}: {} bytes, not the exact body",
            fetched.len()
        );
    }

    // status and the metrics show it as the remote forward it is, with what it carried.
    let snapshot = tunneld.supervisor.snapshot();
    let forward = snapshot.tunnels[0]
        .forwards
        .iter()
        .find(|f| f.spec == port.to_string())
        .unwrap()
        .clone();
    assert_eq!(forward.kind, ForwardKind::Remote);
    assert_eq!(forward.connections_total, 4);
    assert!(forward.bytes_out >= 4 * body.len() as u64, "{forward:?}");
    tunneld.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_that_fails_gets_its_socks_reply_and_the_tunnel_stays_up() {
    let dir = test_dir();
    let sshd = Sshd::start();
    let closed = ClosedPort::new();
    let web = HttpServer::start(b"still here".to_vec());
    let (tunneld, port, connection) = socks_back(&sshd, dir.path()).await;
    let closed_port = closed.port();
    let web_port = web.port();
    tokio::task::spawn_blocking(move || {
        assert_eq!(
            socks5_connect(port, &ipv4_request(1, closed_port)),
            5,
            "connection refused"
        );
        assert_eq!(
            socks5_connect(port, &domain_request(1, "no-such-host.invalid", 80)),
            4,
            "host unreachable"
        );
        assert_eq!(
            socks5_connect(port, &ipv4_request(2, 80)),
            7,
            "BIND: command not supported"
        );
        // SOCKS4 to a refused target: rejected (0x5B).
        let mut s = TcpStream::connect(localhost(port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut req = vec![4, 1];
        req.extend_from_slice(&closed_port.to_be_bytes());
        req.extend_from_slice(&[127, 0, 0, 1, 0]);
        s.write_all(&req).unwrap();
        let mut reply = [0u8; 8];
        s.read_exact(&mut reply).unwrap();
        assert_eq!(reply[1], 0x5B);

        // The proxy still serves, on the same SSH connection.
        let (ok, fetched, stderr) = curl(
            &["--socks5-hostname", &format!("127.0.0.1:{port}")],
            &format!("http://127.0.0.1:{web_port}/"),
        );
        assert!(ok, "{stderr}");
        assert_eq!(fetched, b"still here");
    })
    .await
    .unwrap();
    let state = tunneld.supervisor.state("back").unwrap().borrow().clone();
    match state {
        TunnelState::Up {
            connection: now, ..
        } => assert_eq!(now, connection),
        other => panic!("the tunnel is no longer up: {other}"),
    }
    tunneld.stop().await;
}
