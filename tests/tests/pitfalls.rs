//! The russh 0.65 pitfalls of docs/design.md, proven handled against a real OpenSSH sshd:
//!
//! - 1 and 11: tens of thousands of short forwarded connections, closed first by either side,
//!   leave the daemon's memory and descriptors flat; a target that never closes its half does not
//!   keep a channel forever.
//! - 2: a client that stops reading is dropped, and meanwhile the other connections of the same
//!   SSH connection keep flowing and the connection is not lost to keepalive.
//! - 4: nothing calls `send_keepalive(false)`.
//! - And the accept loop under descriptor exhaustion: it warns, pauses (no busy loop), survives,
//!   and accepts again once descriptors are free.

// Helpers outside #[test] functions unwrap too: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod support;

use std::io::Read;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use harness::{
    EchoServer, ReplyServer, SilentServer, SourceServer, Sshd, TunneldProcess, fd_count, free_port,
    localhost, random_bytes, rss_kib, try_echo, tunneld_bin, wait_until,
};
use support::{test_dir, write_one_tunnel};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tunneld_ssh::forward::{PipeEnd, PipeLimits, pipe};

const LOG_TIMEOUT: Duration = Duration::from_secs(20);

/// The log line of a listener that reached the open file limit (crates/tunneld-ssh/src/descriptors.rs).
const EXHAUSTED_LOG: &str = "open file limit reached (RLIMIT_NOFILE 64,";

fn run(config: &Path) -> TunneldProcess {
    TunneldProcess::spawn(&["run", "--config", config.to_str().unwrap()], &[])
}

/// A config of one tunnel `t` to `sshd`, with `extra` lines in the tunnel block and one local
/// forward per target port. Returns the config path and the listening port of each forward.
fn tunnel_config(dir: &Path, sshd: &Sshd, extra: &str, targets: &[u16]) -> (PathBuf, Vec<u16>) {
    let ports: Vec<u16> = targets.iter().map(|_| free_port()).collect();
    let forwards: Vec<String> = ports
        .iter()
        .zip(targets)
        .map(|(port, target)| format!("\"{port}:127.0.0.1:{target}\""))
        .collect();
    let block = format!("{extra}local = [{}]\n", forwards.join(", "));
    (write_one_tunnel(dir, sshd, "t", &block), ports)
}

fn wait_up(tunneld: &TunneldProcess) {
    tunneld.expect_log("tunnel up", LOG_TIMEOUT);
}

fn client_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Waits until `pid`'s descriptor count is within 2 of `baseline`; returns the last count seen.
fn wait_for_fds(pid: u32, baseline: usize, timeout: Duration) -> (bool, usize) {
    let mut seen = 0;
    let settled = wait_until(timeout, || {
        seen = fd_count(pid);
        seen.abs_diff(baseline) <= 2
    });
    (settled, seen)
}

// ---------------------------------------------------------------------------------------------
// Pitfalls 1 and 11: many short connections, closed first by either side.

const TOTAL_CONNECTIONS: usize = 20_000;
const WARM_UP: usize = 1_000;
const CONCURRENCY: usize = 32;
const GREETING: &[u8] = b"220 hello from the target, which hangs up now\r\n";

/// Client closes first: writes a line, reads its echo, closes.
async fn echo_then_close(port: u16, i: usize) -> std::io::Result<()> {
    let mut stream = tokio::net::TcpStream::connect(localhost(port)).await?;
    let line = format!("hello {i:08}\n");
    stream.write_all(line.as_bytes()).await?;
    let mut back = vec![0u8; line.len()];
    stream.read_exact(&mut back).await?;
    if back != line.as_bytes() {
        return Err(std::io::Error::other("echo differs"));
    }
    Ok(())
}

/// Target closes first: reads the greeting to EOF, then closes.
async fn read_greeting(port: u16) -> std::io::Result<()> {
    let mut stream = tokio::net::TcpStream::connect(localhost(port)).await?;
    let mut back = Vec::new();
    stream.read_to_end(&mut back).await?;
    if back != GREETING {
        return Err(std::io::Error::other(format!(
            "greeting differs: {} bytes",
            back.len()
        )));
    }
    Ok(())
}

/// Runs connections `range` through the two forwards, `CONCURRENCY` at a time: even ones closed
/// by the client first, odd ones by the target first. Returns the failures (at most 5 listed).
async fn short_connections(
    echo_port: u16,
    greet_port: u16,
    range: std::ops::Range<usize>,
) -> (usize, Vec<String>) {
    let next = Arc::new(AtomicUsize::new(range.start));
    let end = range.end;
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..CONCURRENCY {
        let next = next.clone();
        workers.spawn(async move {
            let mut failures = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= end {
                    return failures;
                }
                let op = async {
                    if i.is_multiple_of(2) {
                        echo_then_close(echo_port, i).await
                    } else {
                        read_greeting(greet_port).await
                    }
                };
                match tokio::time::timeout(Duration::from_secs(30), op).await {
                    Ok(Ok(())) => {}
                    Ok(Err(err)) => failures.push(format!("connection {i}: {err}")),
                    Err(_) => failures.push(format!("connection {i}: no end within 30 s")),
                }
            }
        });
    }
    let mut failures = Vec::new();
    while let Some(done) = workers.join_next().await {
        failures.extend(done.unwrap());
    }
    let count = failures.len();
    failures.truncate(5);
    (count, failures)
}

#[test]
fn memory_stays_flat_over_20000_short_connections() {
    let dir = test_dir();
    let sshd = Sshd::start();
    let echo = EchoServer::start();
    let greeter = ReplyServer::start(GREETING.to_vec());
    let (config, ports) = tunnel_config(dir.path(), &sshd, "", &[echo.port(), greeter.port()]);
    let (echo_port, greet_port) = (ports[0], ports[1]);
    let tunneld = run(&config);
    wait_up(&tunneld);
    let pid = tunneld.pid();
    let runtime = client_runtime();

    let fds_before = fd_count(pid);
    let rss_start = rss_kib(pid);
    let started = Instant::now();
    let (failed, examples) = runtime.block_on(short_connections(echo_port, greet_port, 0..WARM_UP));
    assert_eq!(
        failed,
        0,
        "warm-up failures: {examples:?}\n{}",
        tunneld.logs()
    );
    let (settled, fds) = wait_for_fds(pid, fds_before, Duration::from_secs(30));
    assert!(settled, "after warm-up: {fds} fds, {fds_before} before");
    let rss_warm = rss_kib(pid);

    let measured = Instant::now();
    let (failed, examples) = runtime.block_on(short_connections(
        echo_port,
        greet_port,
        WARM_UP..TOTAL_CONNECTIONS,
    ));
    let load_time = measured.elapsed();
    let rss_loaded = rss_kib(pid);
    assert_eq!(failed, 0, "failures: {examples:?}\n{}", tunneld.logs());

    // Channels close asynchronously: the descriptors must all come back.
    let (settled, fds_after) = wait_for_fds(pid, fds_before, Duration::from_secs(30));
    let rss_end = rss_kib(pid);
    let measured_connections = (TOTAL_CONNECTIONS - WARM_UP) as f64;
    let growth_kib = rss_end as f64 - rss_warm as f64;
    let per_connection = growth_kib / measured_connections;
    eprintln!(
        "pitfall 1: {TOTAL_CONNECTIONS} connections in {:.1} s ({:.1} s for the last {}, {:.0}/s); \
         RSS start {rss_start} KiB, after warm-up {rss_warm} KiB, right after load {rss_loaded} KiB, \
         settled {rss_end} KiB: growth {growth_kib:+.0} KiB = {per_connection:+.3} KiB per connection; \
         fds {fds_before} before, {fds_after} after",
        started.elapsed().as_secs_f64(),
        load_time.as_secs_f64(),
        TOTAL_CONNECTIONS - WARM_UP,
        measured_connections / load_time.as_secs_f64(),
    );
    assert!(
        echo.connections_total() >= (TOTAL_CONNECTIONS / 2) as u64
            && greeter.connections_total() >= (TOTAL_CONNECTIONS / 2) as u64,
        "echo {} greeter {}",
        echo.connections_total(),
        greeter.connections_total()
    );
    assert!(
        settled,
        "descriptors did not come back: {fds_after} now, {fds_before} before the run"
    );
    // A naive use leaks about 3.9 KiB per connection (docs/design.md, pitfall 1).
    assert!(
        per_connection < 0.5,
        "RSS grew {growth_kib:.0} KiB over {measured_connections} connections \
         ({per_connection:.3} KiB each): a leak"
    );
    // All of it over one SSH connection.
    assert_eq!(tunneld.count_in_logs("tunnel up"), 1, "{}", tunneld.logs());
}

// ---------------------------------------------------------------------------------------------
// Pitfall 2: a client that stops reading.

#[test]
fn a_client_that_stops_reading_does_not_stall_the_others() {
    let dir = test_dir();
    let sshd = Sshd::start();
    let source = SourceServer::start();
    let echo = EchoServer::start();
    // Budget 1 s x (3 + 1) = 4 s: a session stalled that long would be killed by keepalive or
    // the inactivity timeout, so the window below is three budgets long.
    let keepalive = "keepalive_interval = \"1s\"\nkeepalive_max = 3\n";
    let budget = Duration::from_secs(4);
    let (config, ports) =
        tunnel_config(dir.path(), &sshd, keepalive, &[source.port(), echo.port()]);
    let (stall_port, echo_port) = (ports[0], ports[1]);
    let tunneld = run(&config);
    wait_up(&tunneld);
    assert_eq!(
        try_echo(echo_port, b"before", LOG_TIMEOUT).unwrap(),
        b"before"
    );
    let rss_before = rss_kib(tunneld.pid());

    // A client of the streaming forward that never reads, for the whole window. Its channel's
    // window closes; the server stops sending on it; nothing else notices.
    let mut staller = std::net::TcpStream::connect(localhost(stall_port)).unwrap();
    let window = budget * 3;
    let trip_bound = Duration::from_secs(5);
    let mut trips: Vec<Duration> = Vec::new();
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < window {
        let payload = random_bytes(4096, n);
        let asked = Instant::now();
        let back = try_echo(echo_port, &payload, Duration::from_secs(20));
        let took = asked.elapsed();
        assert!(
            back.as_ref().is_ok_and(|b| *b == payload),
            "echo round trip {n} failed after {took:?}: {back:?}\n{}",
            tunneld.logs()
        );
        trips.push(took);
        n += 1;
    }
    let sent_while_stalled = source.bytes_sent();
    let rss_stalled = rss_kib(tunneld.pid());

    // The stalled client was kept, not dropped: reading again, it gets its stream.
    staller
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut buf = vec![0u8; 256 * 1024];
    let mut drained = 0u64;
    while drained < 16 << 20 {
        match staller.read(&mut buf) {
            Ok(0) => panic!("the stalled client was closed after {drained} bytes"),
            Ok(n) => drained += n as u64,
            Err(e) => panic!("the stalled client failed after {drained} bytes: {e}"),
        }
    }

    let slowest = trips.iter().max().copied().unwrap_or_default();
    eprintln!(
        "pitfall 2: {} echo round trips in {window:?} beside a client that did not read; \
         slowest trip {slowest:?}; the source had sent {} KiB into the stalled connection \
         (window and buffers), then {} MiB flowed when it read; tunneld RSS {rss_before} KiB \
         before, {rss_stalled} KiB while stalled",
        trips.len(),
        sent_while_stalled >> 10,
        drained >> 20,
    );
    assert!(
        slowest < trip_bound,
        "an echo round trip took {slowest:?} while a client stalled (bound {trip_bound:?})"
    );
    assert!(trips.len() >= 3, "only {} round trips", trips.len());
    // Flow control, not buffering: what the stalled connection holds is bounded by its channel
    // window (2 MiB) and the pipe's buffer (256 KiB), with the sockets' buffers on top.
    assert!(
        sent_while_stalled < 16 << 20,
        "{sent_while_stalled} bytes went into a connection whose client never read"
    );
    // The SSH connection survived: one "tunnel up", one login.
    assert_eq!(tunneld.count_in_logs("tunnel up"), 1, "{}", tunneld.logs());
    assert_eq!(
        tunneld.count_in_logs("tunnel down"),
        0,
        "{}",
        tunneld.logs()
    );
    assert_eq!(sshd.logins(), 1, "{}", sshd.log());
}

// ---------------------------------------------------------------------------------------------
// Pitfall 4: `send_keepalive(false)` kills the session at the next reply-bearing request.

/// Every `.rs` file under `dir`, recursively (skipping `target`).
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n != "target") {
                rust_files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The byte offsets of `send_keepalive ( false )` (any whitespace) in `text`.
fn keepalive_false_calls(text: &str) -> Vec<usize> {
    let mut found = Vec::new();
    for (at, _) in text.match_indices("send_keepalive") {
        let rest = text[at + "send_keepalive".len()..].trim_start();
        let Some(rest) = rest.strip_prefix('(') else {
            continue;
        };
        let Some(rest) = rest.trim_start().strip_prefix("false") else {
            continue;
        };
        if rest.trim_start().starts_with(')') {
            found.push(at);
        }
    }
    found
}

#[test]
fn no_keepalive_false_calls() {
    assert_eq!(keepalive_false_calls("h.send_keepalive( false )"), vec![2]);
    assert_eq!(
        keepalive_false_calls("h.send_keepalive(\n  false,\n)"),
        vec![]
    );
    assert_eq!(keepalive_false_calls("h.send_keepalive(true)"), vec![]);

    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates");
    let mut files = Vec::new();
    rust_files(&crates, &mut files);
    assert!(
        files.len() > 10,
        "scanned only {} files under {}",
        files.len(),
        crates.display()
    );
    let mut calls = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for at in keepalive_false_calls(&text) {
            let line = text[..at].lines().count().max(1);
            calls.push(format!("{}:{line}", file.display()));
        }
    }
    assert!(
        calls.is_empty(),
        "send_keepalive(false) kills the session (docs/design.md, pitfall 4): {calls:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// The accept loop when the process runs out of descriptors.

const FD_LIMIT: u32 = 64;

/// utime + stime of `pid` in clock ticks (`/proc/PID/stat` fields 14 and 15).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The fields after the command name (which may hold spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')').unwrap() + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state): utime is field 14, stime 15.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// Clock ticks per second of /proc's times (USER_HZ, 100 on every Linux architecture we run).
const TICKS_PER_SECOND: f64 = 100.0;

#[test]
fn accept_loop_survives_running_out_of_file_descriptors() {
    let dir = test_dir();
    let sshd = Sshd::start();
    let echo = EchoServer::start();
    let (config, ports) = tunnel_config(dir.path(), &sshd, "", &[echo.port()]);
    let port = ports[0];
    // Soft first: the hard limit may not go below the soft one. tunneld raises soft to hard at
    // start, so both are set.
    let script = format!(
        "ulimit -Sn {FD_LIMIT} && ulimit -Hn {FD_LIMIT} && exec '{}' run --config '{}'",
        tunneld_bin().display(),
        config.display()
    );
    let mut tunneld = TunneldProcess::spawn_program(Path::new("/bin/sh"), &["-c", &script], &[]);
    wait_up(&tunneld);
    let pid = tunneld.pid();
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let open_files = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    assert_eq!(
        open_files.split_whitespace().collect::<Vec<_>>()[3..5],
        [FD_LIMIT.to_string(), FD_LIMIT.to_string()],
        "{open_files}"
    );
    assert_eq!(try_echo(port, b"before", LOG_TIMEOUT).unwrap(), b"before");
    let fds_idle = fd_count(pid);

    // More clients than descriptors; the kernel completes their handshakes in the backlog.
    let held: Vec<std::net::TcpStream> = (0..100)
        .map(|_| std::net::TcpStream::connect(localhost(port)).unwrap())
        .collect();
    tunneld.expect_log(EXHAUSTED_LOG, LOG_TIMEOUT);
    let fds_exhausted = fd_count(pid);

    // While exhausted, the listener must pause, not spin on accept.
    let window = Duration::from_secs(4);
    let ticks_before = cpu_ticks(pid);
    let started = Instant::now();
    let crashed = wait_until(window, || !tunneld.is_running());
    let elapsed = started.elapsed().as_secs_f64();
    assert!(
        !crashed,
        "tunneld died out of descriptors:\n{}",
        tunneld.logs()
    );
    let cpu = (cpu_ticks(pid) - ticks_before) as f64 / TICKS_PER_SECOND / elapsed;
    let warnings = tunneld.count_in_logs(EXHAUSTED_LOG);
    eprintln!(
        "fd exhaustion: limit {FD_LIMIT}, {fds_idle} fds idle, {fds_exhausted} exhausted; \
         CPU {:.1}% of one core over {elapsed:.1} s; {warnings} warning line(s)",
        cpu * 100.0
    );
    assert!(
        cpu < 0.5,
        "tunneld used {:.0}% of a core while out of descriptors: a busy accept loop",
        cpu * 100.0
    );
    assert_eq!(
        warnings,
        1,
        "the warning is rate-limited:\n{}",
        tunneld.logs()
    );

    // Descriptors come back: the same listener accepts and forwards again.
    drop(held);
    let payload = random_bytes(10_000, 64);
    let mut last = None;
    let recovered = wait_until(Duration::from_secs(30), || {
        let back = try_echo(port, &payload, Duration::from_secs(10));
        let ok = back.as_ref().is_ok_and(|b| *b == payload);
        last = Some(back.map(|b| b.len()));
        ok
    });
    assert!(
        recovered,
        "no forwarded connection after the clients closed: {last:?}\n{}",
        tunneld.logs()
    );
    assert!(tunneld.is_running());
    assert_eq!(tunneld.count_in_logs("tunnel up"), 1, "{}", tunneld.logs());
}

// ---------------------------------------------------------------------------------------------
// Pitfall 11: the graceful close has a time limit of its own.

/// Through a real sshd to a target that never closes: the client sends data and EOF, and the
/// pipe gives the channel up once `close_limit` passes. In process, with a short limit, since
/// the daemon's default is 30 s (checked below).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_keeps_the_channel_open_does_not_keep_it_forever() {
    assert!(
        PipeLimits::default().close_limit <= Duration::from_secs(60),
        "the daemon's close limit must be finite and modest: {:?}",
        PipeLimits::default().close_limit
    );
    let dir = test_dir();
    let sshd = Sshd::start();
    let silent = SilentServer::start();
    let (config, _) = tunnel_config(dir.path(), &sshd, "", &[silent.port()]);
    let config = tunneld_config::load(&config).unwrap_or_else(|e| panic!("{e}"));
    let tunnel = &config.tunnels[0];
    let progress = |_: tunneld_ssh::Progress| {};
    let connection = Arc::new(
        tunneld_ssh::Connection::establish(
            &tunnel.target,
            &tunnel.jump,
            &tunnel.keepalive,
            &progress,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}")),
    );

    let limits = PipeLimits {
        close_limit: Duration::from_secs(2),
        ..PipeLimits::default()
    };
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .unwrap();
    let mut client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (accepted, originator) = listener.accept().await.unwrap();
    let channel = connection
        .open_direct_tcpip("127.0.0.1", silent.port(), originator)
        .await
        .unwrap();
    let cancel = tokio_util::sync::CancellationToken::new();
    let piping = tokio::spawn(async move {
        let counters = tunneld_ssh::forward::ForwardCounters::default();
        let tally = tunneld_ssh::forward::Tally::tcp_client(&counters);
        pipe(accepted, channel, limits, &cancel, tally).await
    });

    let payload = random_bytes(50_000, 11);
    client.write_all(&payload).await.unwrap();
    client.shutdown().await.unwrap();
    let eof_sent = Instant::now();
    // The target saw our bytes and our EOF, and stays silent with its half open.
    let delivered = harness::wait_until_async(LOG_TIMEOUT, || async {
        silent.eofs_seen() == 1 && silent.bytes_received() == payload.len() as u64
    })
    .await;
    assert!(
        delivered,
        "target got {} bytes, {} EOFs",
        silent.bytes_received(),
        silent.eofs_seen()
    );

    // The client sees the end once the pipe gives up: nothing from the target, then EOF.
    let mut back = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(30), client.read_to_end(&mut back)).await;
    let ended_after = eof_sent.elapsed();
    assert!(
        read.is_ok(),
        "the channel stayed open 30 s after the client's EOF"
    );
    let report = tokio::time::timeout(Duration::from_secs(5), piping)
        .await
        .expect("the pipe ended")
        .unwrap();
    eprintln!(
        "pitfall 11: close limit {:?}: the pipe gave up after {ended_after:?}: {report:?}",
        limits.close_limit
    );
    assert_eq!(report.end, PipeEnd::CloseTimedOut);
    assert_eq!(report.sent, payload.len() as u64);
    assert_eq!(report.received, 0);
    assert!(back.is_empty());
    assert!(
        ended_after >= limits.close_limit - Duration::from_millis(100)
            && ended_after < limits.close_limit * 5,
        "gave up after {ended_after:?}, limit {:?}",
        limits.close_limit
    );

    // The SSH connection is unharmed: another channel opens through it.
    assert!(!connection.is_closed());
    let again = connection
        .open_direct_tcpip("127.0.0.1", silent.port(), originator)
        .await;
    assert!(again.is_ok(), "{:?}", again.err());
    connection.disconnect("test over").await;
}
