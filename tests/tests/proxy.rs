//! `proxy`: the first hop reached through a real HTTP proxy (tinyproxy, CONNECT) and a real
//! SOCKS5 proxy (tunneld's own `dynamic` forward), with bytes through the tunnel, and the
//! messages of a proxy that refuses.

// Helpers outside #[test] functions unwrap too: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use harness::{
    ClosedPort, EchoServer, Sshd, TunneldProcess, free_port, localhost, random_bytes, wait_until,
};
use support::{InProcess, defaults_for, echo_through, test_dir, write_config};

/// tinyproxy, or `None` (the test is skipped) when it is not installed and `CI` is not set.
fn tinyproxy_bin() -> Option<PathBuf> {
    let found = ["/usr/bin/tinyproxy", "/usr/sbin/tinyproxy"]
        .iter()
        .map(PathBuf::from)
        .find(|path| path.is_file());
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "tinyproxy is not installed (apt-get install tinyproxy)"
        );
        eprintln!("skipped: tinyproxy is not installed");
    }
    found
}

/// tinyproxy in the foreground on a free port of 127.0.0.1, allowing CONNECT to
/// `connect_port` only. Returns it and its port.
fn tinyproxy(bin: &Path, dir: &Path, connect_port: u16) -> (TunneldProcess, u16) {
    let port = free_port();
    let conf = dir.join("tinyproxy.conf");
    std::fs::write(
        &conf,
        format!(
            "Port {port}\nListen 127.0.0.1\nAllow 127.0.0.1\nConnectPort {connect_port}\n\
             LogLevel Connect\nMaxClients 20\nTimeout 60\n"
        ),
    )
    .unwrap();
    let process = TunneldProcess::spawn_program(bin, &["-d", "-c", conf.to_str().unwrap()], &[]);
    assert!(
        wait_until(Duration::from_secs(10), || std::net::TcpStream::connect(
            localhost(port)
        )
        .is_ok()),
        "tinyproxy did not start:\n{}",
        process.logs()
    );
    (process, port)
}

/// Runs `tunneld check --connect --config CONFIG`: exit status and stdout.
fn check_connect(config: &Path) -> (Option<i32>, String) {
    let out = std::process::Command::new(harness::tunneld_bin())
        .args(["check", "--connect", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    (out.status.code(), format!("{stdout}{stderr}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tunnel_through_an_http_proxy_carries_bytes() {
    let Some(bin) = tinyproxy_bin() else { return };
    let dir = test_dir();
    let sshd = Sshd::start();
    let echo = EchoServer::start();
    let (proxy, proxy_port) = tinyproxy(&bin, dir.path(), sshd.port());
    let local = free_port();
    let config = write_config(
        dir.path(),
        &format!(
            "{}[tunnels.db]\nhost = \"127.0.0.1:{}\"\nproxy = \"http://127.0.0.1:{proxy_port}\"\n\
             local = [\"{local}:127.0.0.1:{}\"]\n",
            defaults_for(&sshd, dir.path()),
            sshd.port(),
            echo.port()
        ),
    );
    let tunneld = InProcess::start(&config);
    tunneld.wait_up("db").await;
    let payload = random_bytes(1 << 20, 61);
    let back = echo_through(localhost(local), &payload).await;
    assert!(back == payload, "the echoed bytes differ from the payload");
    let needle = format!("CONNECT 127.0.0.1:{} HTTP/1.1", sshd.port());
    assert!(
        proxy.wait_for_log(&needle, Duration::from_secs(5)),
        "tinyproxy did not carry the tunnel:\n{}",
        proxy.logs()
    );
    tunneld.stop().await;
    let (status, out) = check_connect(&config);
    assert_eq!(status, Some(0), "{out}");
    assert!(
        out.contains(&format!(" through proxy http://127.0.0.1:{proxy_port};")),
        "{out}"
    );
}

#[test]
fn a_refused_connect_names_the_proxy_and_its_status_line() {
    let Some(bin) = tinyproxy_bin() else { return };
    let dir = test_dir();
    let sshd = Sshd::start();
    // CONNECT is allowed to another port only.
    let (proxy, proxy_port) = tinyproxy(&bin, dir.path(), ClosedPort::new().port());
    let config = write_config(
        dir.path(),
        &format!(
            "{}[tunnels.db]\nhost = \"127.0.0.1:{}\"\nproxy = \"http://127.0.0.1:{proxy_port}\"\n\
             local = [\"{}:127.0.0.1:9\"]\n",
            defaults_for(&sshd, dir.path()),
            sshd.port(),
            free_port()
        ),
    );
    let (status, out) = check_connect(&config);
    assert_eq!(status, Some(1), "{out}\n{}", proxy.logs());
    let line = format!(
        "db: FAILED: proxy http://127.0.0.1:{proxy_port} refused CONNECT 127.0.0.1:{}: HTTP/1.1 \
         403 Access violation\n",
        sshd.port()
    );
    assert!(out.contains(&line), "no {line:?} in:\n{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tunnel_through_a_socks5_proxy_carries_bytes_and_a_refusal_is_in_words() {
    let dir = test_dir();
    let sshd = Sshd::start();
    let echo = EchoServer::start();
    let (socks, local) = (free_port(), free_port());
    // Tunnel `socks` is the SOCKS5 proxy (a dynamic forward); tunnel `db` reaches the same sshd
    // through it, by a name that the proxy resolves.
    let config = write_config(
        dir.path(),
        &format!(
            "{}[tunnels.socks]\nhost = \"127.0.0.1:{port}\"\ndynamic = [\"127.0.0.1:{socks}\"]\n\n\
             [tunnels.db]\nhost = \"localhost:{port}\"\nproxy = \"socks5://127.0.0.1:{socks}\"\n\
             local = [\"{local}:127.0.0.1:{echo}\"]\n",
            defaults_for(&sshd, dir.path()),
            port = sshd.port(),
            echo = echo.port()
        ),
    );
    // known_hosts names 127.0.0.1 (and its port): `localhost` needs its own line.
    let known = dir.path().join("known_hosts");
    let line = sshd
        .known_hosts_line()
        .replacen("127.0.0.1", "localhost", 1);
    let mut text = std::fs::read_to_string(&known).unwrap();
    text.push_str(&format!("{line}\n"));
    std::fs::write(&known, text).unwrap();

    let tunneld = InProcess::start(&config);
    tunneld.wait_up("db").await;
    let payload = random_bytes(1 << 20, 62);
    let back = echo_through(localhost(local), &payload).await;
    assert!(back == payload, "the echoed bytes differ from the payload");

    // A server the proxy cannot connect to: the SOCKS reply, in words.
    let closed = ClosedPort::new();
    let other = test_dir();
    let refused = write_config(
        other.path(),
        &format!(
            "{}[tunnels.nowhere]\nhost = \"127.0.0.1:{}\"\nproxy = \"socks5://127.0.0.1:{socks}\"\n\
             local = [\"{}:127.0.0.1:9\"]\n",
            defaults_for(&sshd, other.path()),
            closed.port(),
            free_port()
        ),
    );
    let (status, out) = tokio::task::spawn_blocking(move || check_connect(&refused))
        .await
        .unwrap();
    assert_eq!(status, Some(1), "{out}");
    let line = format!(
        "nowhere: FAILED: proxy socks5://127.0.0.1:{socks} refused CONNECT 127.0.0.1:{}: \
         connection refused (SOCKS5 reply 5)\n",
        closed.port()
    );
    assert!(out.contains(&line), "no {line:?} in:\n{out}");
    tunneld.stop().await;
}
