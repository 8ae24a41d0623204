//! `dynamic` forwards (SOCKS, like `ssh -D`) through a real OpenSSH sshd: real curl for the
//! happy paths, a raw client for the exact reply bytes of every failure.

// Helpers outside #[test] functions unwrap too: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use harness::{ClosedPort, HttpServer, Sshd, free_port, localhost, random_bytes};
use support::socks::{curl, domain_request, ipv4_request, socks5_connect};
use support::{InProcess, test_dir, write_one_tunnel};
use tunneld_supervisor::TunnelState;

/// A tunnel with one dynamic forward; returns tunneld and the SOCKS port.
async fn socks_tunnel(sshd: &Sshd, dir: &Path, extra: &str) -> (InProcess, u16) {
    let port = free_port();
    let block = format!("{extra}dynamic = [\"{port}\"]\n");
    let tunneld = InProcess::start(&write_one_tunnel(dir, sshd, "socks", &block));
    tunneld.wait_up("socks").await;
    (tunneld, port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_fetches_exact_bytes_with_socks5_hostname_socks5_and_socks4a() {
    let dir = test_dir();
    let sshd = Sshd::builder().log_level("DEBUG1").start();
    let body = random_bytes(300_000, 5);
    let web = HttpServer::start(body.clone());
    let (tunneld, port) = socks_tunnel(&sshd, dir.path(), "").await;
    let proxy = format!("127.0.0.1:{port}");
    let results = tokio::task::spawn_blocking(move || {
        // `localhost` is resolved by the server (socks5h and 4a send the name).
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
    // The name travelled to the server, which resolved it.
    assert!(
        sshd.log().contains("target localhost port"),
        "{}",
        sshd.log()
    );
    tunneld.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_failure_gets_the_reply_that_says_what_happened() {
    let dir = test_dir();
    let closed = ClosedPort::new();
    let sshd = Sshd::start();
    let (tunneld, port) = socks_tunnel(&sshd, dir.path(), "").await;
    let closed_port = closed.port();
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
        assert_eq!(
            socks5_connect(port, &ipv4_request(3, 80)),
            7,
            "UDP: command not supported"
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
    })
    .await
    .unwrap();
    tunneld.stop().await;

    // A server that forbids the channel: "not allowed by ruleset".
    let dir = test_dir();
    let strict = Sshd::builder()
        .config_line("PermitOpen 127.0.0.1:1")
        .start();
    let (tunneld, port) = socks_tunnel(&strict, dir.path(), "").await;
    tokio::task::spawn_blocking(move || {
        assert_eq!(
            socks5_connect(port, &ipv4_request(1, 80)),
            2,
            "not allowed by ruleset"
        );
    })
    .await
    .unwrap();
    tunneld.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn username_and_password_are_required_when_an_auth_file_is_set() {
    let dir = test_dir();
    let sshd = Sshd::start();
    let web = HttpServer::start(b"members only".to_vec());
    let users = dir.path().join("socks-users");
    std::fs::write(&users, "alice:s3cret:with:colons\nbob:hunter2\n").unwrap();
    std::fs::set_permissions(&users, std::fs::Permissions::from_mode(0o600)).unwrap();
    let port = free_port();
    let block = format!(
        "dynamic = [{{ listen = \"127.0.0.1:{port}\", auth_file = \"{}\" }}]\n",
        users.display()
    );
    let tunneld = InProcess::start(&write_one_tunnel(dir.path(), &sshd, "socks", &block));
    tunneld.wait_up("socks").await;
    let url = format!("http://127.0.0.1:{}/", web.port());
    let (good, wrong, none) = tokio::task::spawn_blocking(move || {
        let good = curl(
            &[
                "--proxy",
                &format!("socks5h://alice:s3cret:with:colons@127.0.0.1:{port}"),
            ],
            &url,
        );
        let wrong = curl(
            &["--proxy", &format!("socks5h://alice:nope@127.0.0.1:{port}")],
            &url,
        );
        // A client that offers only "no authentication" is told no method is acceptable.
        let mut s = TcpStream::connect(localhost(port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.write_all(&[5, 1, 0]).unwrap();
        let mut choice = [0u8; 2];
        s.read_exact(&mut choice).unwrap();
        // SOCKS4 cannot authenticate: refused outright when a password is required.
        let mut s4 = TcpStream::connect(localhost(port)).unwrap();
        s4.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s4.write_all(&[4, 1, 0, 80, 127, 0, 0, 1, b'x', 0]).unwrap();
        let mut reply = [0u8; 8];
        s4.read_exact(&mut reply).unwrap();
        assert_eq!(
            reply[1], 0x5B,
            "SOCKS4 must be rejected when an auth_file is set"
        );
        (good, wrong, choice)
    })
    .await
    .unwrap();
    assert!(good.0, "{}", good.2);
    assert_eq!(good.1, b"members only");
    assert!(!wrong.0, "a wrong password must not get through");
    assert_eq!(none, [5, 0xFF]);
    tunneld.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_clients_are_closed_in_bounded_time_and_harm_no_one() {
    let dir = test_dir();
    let sshd = Sshd::start();
    let body = random_bytes(10_000, 8);
    let web = HttpServer::start(body.clone());
    let (tunneld, port) = socks_tunnel(&sshd, dir.path(), "").await;
    let web_port = web.port();
    tokio::task::spawn_blocking(move || {
        // A slow-loris client: one byte, then nothing.
        let mut loris = TcpStream::connect(localhost(port)).unwrap();
        loris.write_all(&[5]).unwrap();
        let started = Instant::now();
        // Garbage, an absurd method count, an HTTP request: closed at once.
        for junk in [
            &b"\x05\x00"[..],
            b"GET / HTTP/1.1\r\n\r\n",
            b"\x05\x01\x00\x05\x01\x00\x09",
        ] {
            let mut s = TcpStream::connect(localhost(port)).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
            s.write_all(junk).unwrap();
            let mut rest = Vec::new();
            let _ = s.read_to_end(&mut rest);
        }
        // Meanwhile a well-behaved client is served.
        let proxy = format!("127.0.0.1:{port}");
        let (ok, fetched, stderr) = curl(
            &["--socks5-hostname", &proxy],
            &format!("http://localhost:{web_port}/"),
        );
        assert!(ok, "{stderr}");
        assert_eq!(fetched, body);
        // The slow-loris client is closed after the handshake limit (10 s), not kept forever.
        loris
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut rest = Vec::new();
        loris
            .read_to_end(&mut rest)
            .expect("closed by tunneld, not by the read timeout");
        let waited = started.elapsed();
        eprintln!("slow-loris client closed after {waited:?}");
        assert!(
            waited >= Duration::from_secs(9) && waited < Duration::from_secs(25),
            "{waited:?}"
        );
    })
    .await
    .unwrap();
    tunneld.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_socks_clients_and_the_listener_outlives_a_reconnect() {
    let dir = test_dir();
    let mut sshd = Sshd::start();
    let body = random_bytes(50_000, 11);
    let web = HttpServer::start(body.clone());
    let (tunneld, port) = socks_tunnel(
        &sshd,
        dir.path(),
        "keepalive_interval = \"1s\"\nkeepalive_max = 2\n",
    )
    .await;
    let web_port = web.port();
    let fetches: Vec<_> = (0..100)
        .map(|_| {
            let body = body.clone();
            tokio::task::spawn_blocking(move || {
                let proxy = format!("127.0.0.1:{port}");
                let (ok, fetched, stderr) = curl(
                    &["--socks5-hostname", &proxy],
                    &format!("http://localhost:{web_port}/"),
                );
                ok && fetched == body || panic!("{stderr}")
            })
        })
        .collect();
    for fetch in fetches {
        assert!(fetch.await.unwrap());
    }

    // sshd goes away: the SOCKS port stays bound (no "connection refused"), and comes back.
    sshd.kill();
    tunneld
        .wait_for("socks", Duration::from_secs(20), |s| !s.is_up())
        .await;
    assert!(
        TcpStream::connect(localhost(port)).is_ok(),
        "the listener must stay bound"
    );
    sshd.restart();
    tunneld
        .wait_for("socks", Duration::from_secs(20), TunnelState::is_up)
        .await;
    let (ok, fetched, stderr) = tokio::task::spawn_blocking(move || {
        curl(
            &["--socks5-hostname", &format!("127.0.0.1:{port}")],
            &format!("http://localhost:{web_port}/"),
        )
    })
    .await
    .unwrap();
    assert!(ok, "{stderr}");
    assert_eq!(fetched, body);
    tunneld.stop().await;
}
