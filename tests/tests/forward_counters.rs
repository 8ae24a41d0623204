//! What each forward has carried (the counters that `tunneld status` and the metrics read) and
//! the keepalive round trip, with real traffic through a real OpenSSH sshd, tunneld in process.

// Helpers outside #[test] functions unwrap too: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use harness::{
    EchoServer, SilentServer, Sshd, connection_id, exchange, free_port, random_bytes,
    up_with_new_connection, wait_until_async,
};
use support::{InProcess, UP_TIMEOUT, test_dir, write_one_tunnel};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tunneld_supervisor::{ForwardKind, ForwardSnapshot};

const WAIT: Duration = Duration::from_secs(20);

/// Waits until the forward's counters read (active, connections_total, bytes_in, bytes_out).
async fn wait_counts(tunneld: &InProcess, tunnel: &str, spec: &str, want: (u64, u64, u64, u64)) {
    let counts = |f: &ForwardSnapshot| (f.active, f.connections_total, f.bytes_in, f.bytes_out);
    let reached = wait_until_async(WAIT, || async {
        counts(&tunneld.forward(tunnel, spec)) == want
    })
    .await;
    assert!(
        reached,
        "{spec}: (active, total, in, out) = {:?}, wanted {want:?}",
        counts(&tunneld.forward(tunnel, spec))
    );
}

/// The port the server picked for the tunnel's only remote forward.
async fn remote_port(tunneld: &InProcess, tunnel: &str) -> u16 {
    let (_, ports) = tunneld.wait_remote_listening(tunnel).await;
    u16::try_from(ports[0]).unwrap()
}

/// A SOCKS5 CONNECT to 127.0.0.1:`port` through the proxy at `proxy`, handshake done.
async fn socks5(proxy: u16, port: u16) -> TcpStream {
    let mut stream = TcpStream::connect(("127.0.0.1", proxy)).await.unwrap();
    stream.write_all(&[5, 1, 0]).await.unwrap();
    let mut choice = [0u8; 2];
    stream.read_exact(&mut choice).await.unwrap();
    assert_eq!(choice, [5, 0]);
    let [hi, lo] = port.to_be_bytes();
    stream
        .write_all(&[5, 1, 0, 1, 127, 0, 0, 1, hi, lo])
        .await
        .unwrap();
    let mut reply = [0u8; 10];
    stream.read_exact(&mut reply).await.unwrap();
    assert_eq!(reply[1], 0, "SOCKS reply {reply:?}");
    stream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_forward_kind_counts_its_connections_and_exact_bytes() {
    let dir = test_dir();
    let sshd = Sshd::start();
    let echo = EchoServer::start();
    let (local_port, socks_port) = (free_port(), free_port());
    let local = format!("{local_port}:127.0.0.1:{}", echo.port());
    let remote = format!("0:127.0.0.1:{}", echo.port());
    let dynamic = format!("{socks_port}");
    let block =
        format!("local = [\"{local}\"]\nremote = [\"{remote}\"]\ndynamic = [\"{dynamic}\"]\n");
    let tunneld = InProcess::start(&write_one_tunnel(dir.path(), &sshd, "all", &block));
    let server_port = remote_port(&tunneld, "all").await;

    // The local and dynamic forwards show the addresses they are really bound to.
    let listen = tunneld.forward("all", &local).listen;
    assert!(
        listen.contains(&format!("127.0.0.1:{local_port}")),
        "local listens on {listen:?}"
    );
    let listen = tunneld.forward("all", &dynamic).listen;
    assert!(
        listen.contains(&format!("127.0.0.1:{socks_port}")),
        "dynamic listens on {listen:?}"
    );
    assert_eq!(
        tunneld.forward("all", &remote).listen,
        vec![format!("localhost:{server_port}")]
    );

    let payload = random_bytes(300_000, 15);
    let n = payload.len() as u64;
    let clients: [(&str, SocketAddr); 2] = [
        (&local, SocketAddr::from(([127, 0, 0, 1], local_port))),
        (&remote, SocketAddr::from(([127, 0, 0, 1], server_port))),
    ];
    for (spec, addr) in clients {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let back = exchange(&mut stream, &payload, WAIT).await.unwrap();
        assert!(back == payload, "{spec}: the echoed bytes differ");
        wait_counts(&tunneld, "all", spec, (1, 1, n, n)).await;
        drop(stream);
        wait_counts(&tunneld, "all", spec, (0, 1, n, n)).await;
    }

    // SOCKS: the handshake is not counted, only what goes through.
    let mut stream = socks5(socks_port, echo.port()).await;
    let back = exchange(&mut stream, &payload, WAIT).await.unwrap();
    assert!(back == payload, "dynamic: the echoed bytes differ");
    wait_counts(&tunneld, "all", &dynamic, (1, 1, n, n)).await;
    drop(stream);
    wait_counts(&tunneld, "all", &dynamic, (0, 1, n, n)).await;

    // Kinds, in the configuration's order.
    let kinds: Vec<ForwardKind> = tunneld.supervisor.snapshot().tunnels[0]
        .forwards
        .iter()
        .map(|f| f.kind)
        .collect();
    assert_eq!(
        kinds,
        [
            ForwardKind::Local,
            ForwardKind::Remote,
            ForwardKind::Dynamic
        ]
    );
    tunneld.stop().await;
}

/// A target that answers nothing tells the directions apart: what the client sends is "in",
/// whichever side of the tunnel the client is on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_is_what_the_client_sent_on_either_side_of_the_tunnel() {
    let dir = test_dir();
    let sshd = Sshd::start();
    let silent = SilentServer::start();
    let local_port = free_port();
    let local = format!("{local_port}:127.0.0.1:{}", silent.port());
    let remote = format!("0:127.0.0.1:{}", silent.port());
    let block = format!("local = [\"{local}\"]\nremote = [\"{remote}\"]\n");
    let tunneld = InProcess::start(&write_one_tunnel(dir.path(), &sshd, "one-way", &block));
    let server_port = remote_port(&tunneld, "one-way").await;

    let payload = random_bytes(5000, 16);
    let mut held = Vec::new();
    for (spec, port) in [(&local, local_port), (&remote, server_port)] {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        stream.write_all(&payload).await.unwrap();
        wait_counts(&tunneld, "one-way", spec, (1, 1, 5000, 0)).await;
        held.push(stream);
    }
    tunneld.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_keepalive_round_trip_is_measured_and_counters_survive_a_reconnect() {
    let dir = test_dir();
    let mut sshd = Sshd::start();
    let echo = EchoServer::start();
    let local_port = free_port();
    let local = format!("{local_port}:127.0.0.1:{}", echo.port());
    let block = format!("keepalive_interval = \"1s\"\nlocal = [\"{local}\"]\n");
    let tunneld = InProcess::start(&write_one_tunnel(dir.path(), &sshd, "rtt", &block));
    let first = connection_id(&tunneld.wait_up("rtt").await);

    let rtt = || tunneld.supervisor.snapshot().tunnels[0].keepalive_rtt;
    assert!(
        wait_until_async(WAIT, || async { rtt().is_some() }).await,
        "no keepalive round trip measured"
    );
    // Loopback: anything under a generous bound is plausible; only its presence is the point.
    let measured = rtt().unwrap();
    assert!(measured < Duration::from_secs(5), "rtt {measured:?}");

    let payload = random_bytes(1000, 17);
    let mut stream = TcpStream::connect(("127.0.0.1", local_port)).await.unwrap();
    exchange(&mut stream, &payload, WAIT).await.unwrap();
    drop(stream);
    wait_counts(&tunneld, "rtt", &local, (0, 1, 1000, 1000)).await;

    // A new SSH connection keeps the tunnel's counters.
    sshd.restart();
    tunneld
        .wait_for("rtt", UP_TIMEOUT, up_with_new_connection(first))
        .await;
    let mut stream = TcpStream::connect(("127.0.0.1", local_port)).await.unwrap();
    exchange(&mut stream, &payload, WAIT).await.unwrap();
    drop(stream);
    wait_counts(&tunneld, "rtt", &local, (0, 2, 2000, 2000)).await;
    tunneld.stop().await;
}
