//! Heavy traffic never drops a tunnel: parallel streams through `remote`, `local` and `dynamic`
//! forwards, one direction at a time and both at once, with key re-exchanges made frequent by a
//! small `rekey_limit` (and by sshd's own `RekeyLimit`), a slow reader beside fast ones,
//! compression, every byte verified, and the tunnel on one connection from start to end.
//!
//! CI runs a reduced matrix with the defaults below. `bench/heavy-traffic.sh` runs the full one
//! (4 and 16 streams of 1 GiB) through the same tests, sized by environment variables:
//! `TUNNELD_HEAVY_STREAMS`, `TUNNELD_HEAVY_MIB` (per stream), `TUNNELD_HEAVY_PARALLEL` and
//! `TUNNELD_HEAVY_PARALLEL_MIB` (the one-direction tests). Streams are generated and checked as
//! they flow, so a 1 GiB stream costs no memory here.

// Helpers outside #[test] functions unwrap too: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use harness::{Sshd, free_port, localhost};
use support::{InProcess, test_dir, write_one_tunnel};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tunneld_supervisor::TunnelState;

const REKEY: &str = "rekey_limit = \"16M\"\n";

/// `name` from the environment, or `default`.
fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Full-duplex streams: each one's bytes go out and come back through an echo at once.
/// Compression runs at zlib's speed, a tenth of the others': the full matrix may give it
/// smaller streams (`TUNNELD_HEAVY_COMPRESSED_MIB`).
fn duplex(compressed: bool) -> (usize, u64) {
    let mib = env("TUNNELD_HEAVY_MIB", 64);
    let mib = if compressed {
        env("TUNNELD_HEAVY_COMPRESSED_MIB", mib)
    } else {
        mib
    };
    (env("TUNNELD_HEAVY_STREAMS", 4), mib as u64 * (1 << 20))
}

/// One-direction streams: many channels busy at once when a key exchange starts, each with a
/// full window in flight (16 channels hold 32 MiB, against russh's former budget of 4 MiB).
fn one_way() -> (usize, u64) {
    (
        env("TUNNELD_HEAVY_PARALLEL", 16),
        env("TUNNELD_HEAVY_PARALLEL_MIB", 16) as u64 * (1 << 20),
    )
}

/// The bytes of stream `seed`, generated as they are needed (an xorshift, so that any length
/// costs no memory and any damage, loss or reordering shows).
struct Pattern {
    state: u64,
    spare: Vec<u8>,
}

impl Pattern {
    fn new(seed: u64) -> Self {
        Pattern {
            state: (seed ^ 0x9E37_79B9_7F4A_7C15) | 1,
            spare: Vec::new(),
        }
    }

    fn fill(&mut self, buf: &mut [u8]) {
        let mut at = 0;
        let take = self.spare.len().min(buf.len());
        buf[..take].copy_from_slice(&self.spare[..take]);
        self.spare.drain(..take);
        at += take;
        while at < buf.len() {
            self.state ^= self.state >> 12;
            self.state ^= self.state << 25;
            self.state ^= self.state >> 27;
            let word = self.state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
            let n = word.len().min(buf.len() - at);
            buf[at..at + n].copy_from_slice(&word[..n]);
            self.spare.extend_from_slice(&word[n..]);
            at += n;
        }
    }
}

/// Writes `len` bytes of stream `seed`, then shuts the write side.
async fn send(mut writer: impl AsyncWriteExt + Unpin, seed: u64, len: u64) {
    let mut pattern = Pattern::new(seed);
    let mut buf = vec![0u8; 64 << 10];
    let mut left = len;
    while left > 0 {
        let n = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        pattern.fill(&mut buf[..n]);
        writer.write_all(&buf[..n]).await.unwrap();
        left -= n as u64;
    }
    writer.shutdown().await.unwrap();
}

/// Reads until EOF and checks that it was exactly `len` bytes of stream `seed`; `pause` after
/// each read makes a slow reader. Returns whether every byte was right.
async fn receive(
    mut reader: impl AsyncReadExt + Unpin,
    seed: u64,
    len: u64,
    pause: Option<Duration>,
) -> bool {
    let mut pattern = Pattern::new(seed);
    let (mut buf, mut expected) = (vec![0u8; 64 << 10], vec![0u8; 64 << 10]);
    let mut got = 0u64;
    loop {
        let n = reader.read(&mut buf).await.unwrap();
        if n == 0 {
            return got == len;
        }
        pattern.fill(&mut expected[..n]);
        if buf[..n] != expected[..n] {
            return false;
        }
        got += n as u64;
        if let Some(pause) = pause {
            tokio::time::sleep(pause).await;
        }
    }
}

/// An echo server whose clients send at full speed while they read, as `iperf3 --bidir` does.
async fn echo_server() -> SocketAddr {
    serve(|mut stream| async move {
        let (mut reader, mut writer) = stream.split();
        let _ = tokio::io::copy(&mut reader, &mut writer).await;
        let _ = writer.shutdown().await;
    })
    .await
}

/// A server that takes one-way streams: 8 bytes of seed, then the stream; it answers "ok" or
/// "bad" once the client has finished sending.
async fn verifying_sink(len: u64) -> SocketAddr {
    serve(move |mut stream| async move {
        let seed = stream.read_u64().await.unwrap();
        let (reader, mut writer) = stream.split();
        let verdict: &[u8] = if receive(reader, seed, len, None).await {
            b"ok"
        } else {
            b"bad"
        };
        writer.write_all(verdict).await.unwrap();
        writer.shutdown().await.unwrap();
    })
    .await
}

/// A server that sends one-way streams: it reads 8 bytes of seed and sends that stream.
async fn source(len: u64) -> SocketAddr {
    serve(move |mut stream| async move {
        let seed = stream.read_u64().await.unwrap();
        send(stream, seed, len).await;
    })
    .await
}

async fn serve<F, Fut>(handle: F) -> SocketAddr
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            stream.set_nodelay(true).unwrap();
            tokio::spawn(handle(stream));
        }
    });
    addr
}

/// What to run through a forward.
#[derive(Clone, Copy)]
enum Load {
    /// Each stream sent and echoed back at once; the first one reads slowly if `slow`.
    Duplex { slow: bool },
    /// Each stream from the client to a verifying sink.
    Upload,
    /// Each stream from a source to the client.
    Download,
}

/// Runs `load` through `connect` (which reaches the matching server) and checks every byte.
async fn run<F, Fut>(what: &str, load: Load, connect: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = TcpStream>,
{
    let (streams, len) = match load {
        Load::Duplex { .. } => duplex(what.ends_with("compressed")),
        Load::Upload | Load::Download => one_way(),
    };
    let started = Instant::now();
    let mut tasks = Vec::new();
    for index in 0..streams {
        let mut stream = connect().await;
        stream.set_nodelay(true).unwrap();
        let seed = 1400 + index as u64;
        tasks.push(tokio::spawn(async move {
            match load {
                Load::Duplex { slow } => {
                    // 64 KiB every 2 ms: about 30 MB/s, far below the others.
                    let pause = (slow && index == 0).then_some(Duration::from_millis(2));
                    let (reader, writer) = stream.into_split();
                    let sending = tokio::spawn(send(writer, seed, len));
                    let right = receive(reader, seed, len, pause).await;
                    sending.await.unwrap();
                    right
                }
                Load::Upload => {
                    stream.write_u64(seed).await.unwrap();
                    let (mut reader, writer) = stream.into_split();
                    send(writer, seed, len).await;
                    let mut verdict = Vec::new();
                    reader.read_to_end(&mut verdict).await.unwrap();
                    verdict == b"ok"
                }
                Load::Download => {
                    stream.write_u64(seed).await.unwrap();
                    receive(stream, seed, len, None).await
                }
            }
        }));
    }
    for (index, task) in tasks.into_iter().enumerate() {
        assert!(
            task.await.unwrap(),
            "{what}: stream {index} came back damaged or short"
        );
    }
    let secs = started.elapsed().as_secs_f64();
    let ways = if matches!(load, Load::Duplex { .. }) {
        2
    } else {
        1
    };
    eprintln!(
        "[{what}] {streams} x {} MiB, {} in {secs:.2} s: {:.0} MB/s through the tunnel",
        len >> 20,
        if ways == 2 {
            "both ways at once"
        } else {
            "one way"
        },
        (streams as u64 * len * ways) as f64 / 1e6 / secs
    );
}

/// The tunnel's connection once it is up with every remote forward listening, and their ports.
async fn up(tunneld: &InProcess, tunnel: &str) -> (u64, Vec<u16>) {
    let (connection, ports) = tunneld.wait_remote_listening(tunnel).await;
    let ports = ports
        .into_iter()
        .filter_map(|p| u16::try_from(p).ok())
        .collect();
    (connection, ports)
}

/// The tunnel is still up on connection `id`: nothing dropped it meanwhile.
fn still_on(tunneld: &InProcess, tunnel: &str, id: u64) {
    let state = tunneld.supervisor.state(tunnel).unwrap().borrow().clone();
    assert!(
        matches!(state, TunnelState::Up { connection, .. } if connection == id),
        "the tunnel did not stay on its connection: {state:?}"
    );
}

fn sshd() -> Sshd {
    // The server starts key exchanges too: every 32 MiB of its own.
    Sshd::builder().config_line("RekeyLimit 32M").start()
}

/// Starts a tunnel with one forward of `kind` (`local`, `remote` or `dynamic`) to `target`,
/// runs `load` through it, and checks that it stayed on one connection.
async fn through(kind: &str, load: Load, target: SocketAddr, extra: &str) {
    let dir = test_dir();
    let sshd = sshd();
    let port = free_port();
    let forward = match kind {
        "dynamic" => format!("dynamic = [\"{port}\"]\n"),
        _ => format!("{kind} = [\"{port}:127.0.0.1:{}\"]\n", target.port()),
    };
    let config = write_one_tunnel(dir.path(), &sshd, "t", &format!("{REKEY}{extra}{forward}"));
    let tunneld = InProcess::start(&config);
    let (id, ports) = up(&tunneld, "t").await;
    let what = format!(
        "{kind}{}",
        if extra.is_empty() { "" } else { ", compressed" }
    );
    match kind {
        "remote" => {
            let server_side = localhost(ports[0]);
            run(&what, load, || async move {
                TcpStream::connect(server_side).await.unwrap()
            })
            .await;
        }
        "dynamic" => run(&what, load, || socks_connect(port, target.port())).await,
        _ => {
            run(&what, load, || async move {
                TcpStream::connect(localhost(port)).await.unwrap()
            })
            .await
        }
    }
    still_on(&tunneld, "t", id);
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
async fn full_duplex_streams_through_a_remote_forward() {
    through(
        "remote",
        Load::Duplex { slow: false },
        echo_server().await,
        "",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_duplex_streams_through_a_local_forward_with_a_slow_reader() {
    through(
        "local",
        Load::Duplex { slow: true },
        echo_server().await,
        "",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_duplex_streams_through_a_dynamic_forward_with_compression() {
    let extra = "compression = true\n";
    through(
        "dynamic",
        Load::Duplex { slow: false },
        echo_server().await,
        extra,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_uploads_through_a_remote_forward_survive_frequent_rekeys() {
    let (_, len) = one_way();
    through("remote", Load::Upload, verifying_sink(len).await, "").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_downloads_through_a_local_forward() {
    let (_, len) = one_way();
    through("local", Load::Download, source(len).await, "").await;
}

/// The full matrix's other cases, for `bench/heavy-traffic.sh`: every forward, each direction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "part of the full matrix: bench/heavy-traffic.sh"]
async fn matrix() {
    let (_, len) = one_way();
    for kind in ["remote", "local", "dynamic"] {
        through(kind, Load::Upload, verifying_sink(len).await, "").await;
        through(kind, Load::Download, source(len).await, "").await;
        through(kind, Load::Duplex { slow: false }, echo_server().await, "").await;
        through(kind, Load::Duplex { slow: true }, echo_server().await, "").await;
        let compressed = "compression = true\n";
        through(
            kind,
            Load::Duplex { slow: false },
            echo_server().await,
            compressed,
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_is_reset_when_the_tunnel_dies_under_it() {
    let dir = test_dir();
    let mut sshd = sshd();
    // A download in progress: this source never ends it.
    let endless = serve(|mut stream| async move {
        let chunk = vec![7u8; 64 << 10];
        while stream.write_all(&chunk).await.is_ok() {}
    })
    .await;
    let port = free_port();
    let block = format!("local = [\"{port}:127.0.0.1:{}\"]\n", endless.port());
    let tunneld = InProcess::start(&write_one_tunnel(dir.path(), &sshd, "stream", &block));
    up(&tunneld, "stream").await;

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

/// Memory is bounded by flow control, not by how much the servers send: 16 clients that never
/// read, each on an endless download, cost the daemon at most their channel windows (2 MiB each,
/// held by russh) and pipe buffers (256 KiB each), and the sources stop once those are full.
#[test]
fn sixteen_slow_readers_hold_the_daemon_to_its_bound() {
    use std::io::Read;
    const READERS: usize = 16;
    // The window (2 MiB, queued in russh) and the pipe's buffer (256 KiB), plus what they cost
    // in packet buffers, allocator rounding and per-connection state: measured at 2.3 MiB a
    // connection when the machine is busy, 0.75 MiB when it is not.
    const PER_CONNECTION_KIB: u64 = 3 << 10;
    let dir = test_dir();
    let sshd = Sshd::start();
    let source = harness::SourceServer::start();
    let port = free_port();
    let block = format!("local = [\"{port}:127.0.0.1:{}\"]\n", source.port());
    let config = write_one_tunnel(dir.path(), &sshd, "t", &block);
    let tunneld =
        harness::TunneldProcess::spawn(&["run", "--config", config.to_str().unwrap()], &[]);
    tunneld.expect_log("tunnel up", Duration::from_secs(30));
    // One connection that reads, to warm up the allocator's pools before the baseline.
    let mut warm = std::net::TcpStream::connect(localhost(port)).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut read = 0;
    while read < 64 << 20 {
        read += warm.read(&mut buf).unwrap();
    }
    drop(warm);
    let baseline = harness::rss_kib(tunneld.pid());

    let readers: Vec<_> = (0..READERS)
        .map(|_| std::net::TcpStream::connect(localhost(port)).unwrap())
        .collect();
    // The sources stop when every window and buffer on the way is full: wait for a plateau
    // (no byte sent for half a second; a measurement interval, not a synchronisation).
    let mut last = source.bytes_sent();
    // Filling every window and socket buffer on the way (about 14 MiB a connection) takes
    // seconds alone, and minutes while the other tests of this binary run beside it.
    let settled = harness::wait_until(Duration::from_secs(240), || {
        std::thread::sleep(Duration::from_millis(500));
        let now = source.bytes_sent();
        let still = now == last;
        last = now;
        still
    });
    assert!(
        settled,
        "the sources never stopped: nothing holds them back"
    );
    let loaded = harness::rss_kib(tunneld.pid());
    let bound = READERS as u64 * PER_CONNECTION_KIB;
    eprintln!(
        "[slow readers] {READERS} clients that never read: tunneld RSS {baseline} KiB before, \
         {loaded} KiB after (+{} KiB; bound +{bound} KiB); the sources sent {} MiB in all, then stopped",
        loaded.saturating_sub(baseline),
        last >> 20
    );
    assert!(
        loaded.saturating_sub(baseline) <= bound,
        "tunneld grew by {} KiB for {READERS} stalled connections (bound {bound} KiB)",
        loaded.saturating_sub(baseline)
    );
    drop(readers);
}
