//! Heavy traffic never drops a tunnel: parallel full-duplex streams through `remote`, `local`
//! and `dynamic` forwards, with key re-exchanges made frequent by a small `rekey_limit` (and by
//! sshd's own `RekeyLimit`), a slow reader beside fast ones, all bytes verified, and the tunnel
//! on one connection from start to end. This is the reduced matrix that CI runs;
//! `bench/heavy-traffic.sh` runs the full one (docs/testing.md).

// Helpers outside #[test] functions unwrap too: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use harness::{EchoServer, Sshd, connection_id, free_port, localhost, random_bytes};
use support::{InProcess, test_dir, write_one_tunnel};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tunneld_supervisor::{RemoteState, TunnelState};

/// Each stream's payload, both ways at once: 4 streams make 512 MiB through the tunnel, which a
/// rekey every 16 MiB turns into some 30 key exchanges, each with every channel busy.
const STREAM: usize = 64 << 20;
const STREAMS: usize = 4;
/// Uploads: many channels busy at once when a key exchange starts, each with a full window in
/// flight (32 MiB through 16 channels, against russh's former budget of 4 MiB).
const UPLOADS: usize = 16;
const UPLOAD: usize = 16 << 20;
const REKEY: &str = "rekey_limit = \"16M\"\n";

/// The tunnel's connection, once it is up with every remote forward listening.
async fn up(tunneld: &InProcess, tunnel: &str) -> (u64, Vec<u32>) {
    let state = tunneld
        .wait_for(tunnel, support::UP_TIMEOUT, |s| match s {
            TunnelState::Up { remote, .. } => remote
                .iter()
                .all(|r| matches!(r.state, RemoteState::Listening { .. })),
            _ => false,
        })
        .await;
    let ports = match &state {
        TunnelState::Up { remote, .. } => remote
            .iter()
            .filter_map(|r| match r.state {
                RemoteState::Listening { port } => Some(port),
                _ => None,
            })
            .collect(),
        _ => unreachable!(),
    };
    (connection_id(&state), ports)
}

/// The tunnel is still up on connection `id`: nothing dropped it meanwhile.
fn still_on(tunneld: &InProcess, tunnel: &str, id: u64) {
    let state = tunneld.supervisor.state(tunnel).unwrap().borrow().clone();
    assert!(
        matches!(state, TunnelState::Up { connection, .. } if connection == id),
        "the tunnel did not stay on its connection: {state:?}"
    );
}

/// Sends `payload` through `stream` to an echo server while reading the echo, at full speed both
/// ways; `pause` slows the reader down (a slow client). Returns what came back.
async fn echo_stream(stream: TcpStream, payload: Vec<u8>, pause: Option<Duration>) -> Vec<u8> {
    stream.set_nodelay(true).unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let writing = tokio::spawn(async move {
        writer.write_all(&payload).await.unwrap();
        writer.shutdown().await.unwrap();
    });
    let mut back = Vec::with_capacity(STREAM);
    let mut chunk = vec![0u8; 64 << 10];
    loop {
        let n = reader.read(&mut chunk).await.unwrap();
        if n == 0 {
            break;
        }
        back.extend_from_slice(&chunk[..n]);
        if let Some(pause) = pause {
            tokio::time::sleep(pause).await;
        }
    }
    writing.await.unwrap();
    back
}

/// Runs `STREAMS` echo streams through `connect` at once, each with its own payload, and checks
/// every byte. The stream of index `slow`, if any, reads slowly. Returns the seconds it took.
async fn parallel_echo<F, Fut>(connect: F, slow: Option<usize>) -> f64
where
    F: Fn() -> Fut,
    Fut: Future<Output = TcpStream>,
{
    let started = Instant::now();
    let mut streams = Vec::new();
    for index in 0..STREAMS {
        let payload = random_bytes(STREAM, 1400 + index as u64);
        let stream = connect().await;
        // 64 KiB every 2 ms: about 30 MB/s, far below the others.
        let pause = (slow == Some(index)).then_some(Duration::from_millis(2));
        streams.push(tokio::spawn(async move {
            let back = echo_stream(stream, payload.clone(), pause).await;
            (back == payload, back.len())
        }));
    }
    for (index, stream) in streams.into_iter().enumerate() {
        let (same, len) = stream.await.unwrap();
        assert_eq!(len, STREAM, "stream {index} came back short");
        assert!(same, "stream {index} came back with other bytes");
    }
    started.elapsed().as_secs_f64()
}

/// A server that takes uploads: each connection sends its stream's index (8 bytes) then the
/// stream's bytes; the server compares them with what that stream must carry and answers "ok"
/// or "bad" once the client has finished sending.
async fn verifying_sink() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let index = stream.read_u64().await.unwrap();
                let expected = random_bytes(UPLOAD, 1400 + index);
                let mut got = Vec::with_capacity(UPLOAD);
                stream.read_to_end(&mut got).await.unwrap();
                let verdict: &[u8] = if got == expected { b"ok" } else { b"bad" };
                stream.write_all(verdict).await.unwrap();
                stream.shutdown().await.unwrap();
            });
        }
    });
    addr
}

/// `UPLOADS` uploads through `connect` at once, as fast as the client can write (a fast
/// sender is what fills the server's side of every channel window when a key exchange starts).
/// Returns the seconds it took.
async fn parallel_upload<F, Fut>(connect: F) -> f64
where
    F: Fn() -> Fut,
    Fut: Future<Output = TcpStream>,
{
    let started = Instant::now();
    let mut streams = Vec::new();
    for index in 0..UPLOADS {
        let mut stream = connect().await;
        streams.push(tokio::spawn(async move {
            let payload = random_bytes(UPLOAD, 1400 + index as u64);
            stream.write_u64(index as u64).await.unwrap();
            stream.write_all(&payload).await.unwrap();
            stream.shutdown().await.unwrap();
            let mut verdict = Vec::new();
            stream.read_to_end(&mut verdict).await.unwrap();
            verdict
        }));
    }
    for (index, stream) in streams.into_iter().enumerate() {
        assert_eq!(
            stream.await.unwrap(),
            b"ok",
            "upload {index} arrived damaged or short"
        );
    }
    started.elapsed().as_secs_f64()
}

fn report(what: &str, secs: f64) {
    let megabytes = (STREAMS * STREAM * 2) as f64 / 1e6;
    eprintln!(
        "[{what}] {STREAMS} x {} MiB both ways in {secs:.2} s ({:.0} MB/s through the tunnel)",
        STREAM >> 20,
        megabytes / secs
    );
}

fn sshd() -> Sshd {
    // The server starts key exchanges too: every 32 MiB of its own.
    Sshd::builder().config_line("RekeyLimit 32M").start()
}

async fn connect(addr: SocketAddr) -> TcpStream {
    TcpStream::connect(addr).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_streams_through_a_remote_forward_survive_frequent_rekeys() {
    let dir = test_dir();
    let sshd = sshd();
    let echo = EchoServer::start();
    let port = free_port();
    let block = format!("{REKEY}remote = [\"{port}:127.0.0.1:{}\"]\n", echo.port());
    let tunneld = InProcess::start(&write_one_tunnel(dir.path(), &sshd, "back", &block));
    let (id, ports) = up(&tunneld, "back").await;
    let server_side = localhost(u16::try_from(ports[0]).unwrap());

    let secs = parallel_echo(|| connect(server_side), None).await;
    report("remote", secs);
    still_on(&tunneld, "back", id);
    tunneld.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_uploads_through_a_remote_forward_survive_frequent_rekeys() {
    let dir = test_dir();
    let sshd = sshd();
    let sink = verifying_sink().await;
    let port = free_port();
    let block = format!("{REKEY}remote = [\"{port}:127.0.0.1:{}\"]\n", sink.port());
    let tunneld = InProcess::start(&write_one_tunnel(dir.path(), &sshd, "up", &block));
    let (id, ports) = up(&tunneld, "up").await;
    let server_side = localhost(u16::try_from(ports[0]).unwrap());

    let secs = parallel_upload(|| connect(server_side)).await;
    eprintln!(
        "[remote, uploads] {UPLOADS} x {} MiB in {secs:.2} s ({:.0} MB/s)",
        UPLOAD >> 20,
        (UPLOADS * UPLOAD) as f64 / 1e6 / secs
    );
    still_on(&tunneld, "up", id);
    tunneld.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_streams_through_a_local_forward_with_a_slow_reader() {
    let dir = test_dir();
    let sshd = sshd();
    let echo = EchoServer::start();
    let port = free_port();
    let block = format!("{REKEY}local = [\"{port}:127.0.0.1:{}\"]\n", echo.port());
    let tunneld = InProcess::start(&write_one_tunnel(dir.path(), &sshd, "fwd", &block));
    let (id, _) = up(&tunneld, "fwd").await;

    let secs = parallel_echo(|| connect(localhost(port)), Some(0)).await;
    report("local, one slow reader", secs);
    still_on(&tunneld, "fwd", id);
    tunneld.stop().await;
}

/// A SOCKS5 CONNECT to `127.0.0.1:target` through the dynamic forward on `port`.
async fn socks_connect(port: u16, target: u16) -> TcpStream {
    let mut stream = TcpStream::connect(localhost(port)).await.unwrap();
    stream.write_all(&[5, 1, 0]).await.unwrap();
    let mut choice = [0u8; 2];
    stream.read_exact(&mut choice).await.unwrap();
    assert_eq!(choice, [5, 0]);
    let mut request = vec![5, 1, 0, 1, 127, 0, 0, 1];
    request.extend_from_slice(&target.to_be_bytes());
    stream.write_all(&request).await.unwrap();
    let mut reply = [0u8; 10];
    stream.read_exact(&mut reply).await.unwrap();
    assert_eq!(reply[..2], [5, 0], "the SOCKS CONNECT was refused");
    stream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_streams_through_a_dynamic_forward_with_compression() {
    let dir = test_dir();
    let sshd = sshd();
    let echo = EchoServer::start();
    let port = free_port();
    let block = format!("{REKEY}compression = true\ndynamic = [\"{port}\"]\n");
    let tunneld = InProcess::start(&write_one_tunnel(dir.path(), &sshd, "socks", &block));
    let (id, _) = up(&tunneld, "socks").await;

    let secs = parallel_echo(|| socks_connect(port, echo.port()), None).await;
    report("dynamic, compressed", secs);
    still_on(&tunneld, "socks", id);
    tunneld.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_is_reset_when_the_tunnel_dies_under_it() {
    let dir = test_dir();
    let mut sshd = sshd();
    let source = harness::SourceServer::start();
    let port = free_port();
    let block = format!("local = [\"{port}:127.0.0.1:{}\"]\n", source.port());
    let tunneld = InProcess::start(&write_one_tunnel(dir.path(), &sshd, "stream", &block));
    up(&tunneld, "stream").await;

    // A download in progress: the source never ends it.
    let mut client = TcpStream::connect(localhost(port)).await.unwrap();
    let mut buf = vec![0u8; 64 << 10];
    let mut got = 0usize;
    while got < 1 << 20 {
        got += client.read(&mut buf).await.unwrap();
    }

    // The server goes: the transfer is cut, and the client must be told so, not see an end.
    sshd.kill();
    let ended = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match client.read(&mut buf).await {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(err) => return Err(err),
            }
        }
    })
    .await
    .expect("the client was left hanging after the tunnel died");
    match ended {
        Err(err) => assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}"),
        Ok(()) => panic!("the client saw a clean end of stream (FIN) for a cut transfer"),
    }
    tunneld.stop().await;
}
