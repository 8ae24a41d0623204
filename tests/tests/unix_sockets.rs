//! `local` and `remote` forwards with a Unix socket at either end (OpenSSH's streamlocal), through a real
//! OpenSSH sshd, tunneld in process, with Rust clients on the sockets and bytes verified.

// Helpers outside #[test] functions unwrap too: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use harness::{
    EchoServer, Sshd, connection_id, free_port, localhost, random_bytes, wait_until_async,
};
use support::{InProcess, echo_through, test_dir, write_one_tunnel};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;
use tunneld_supervisor::{ListenerState, RemoteState, TunnelState};

const WAIT: Duration = Duration::from_secs(20);

/// Writes `payload` into the socket at `path`, shuts down the write half, and returns what
/// came back until EOF.
async fn echo_over_socket(path: &Path, payload: &[u8]) -> Vec<u8> {
    let stream = UnixStream::connect(path).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let payload = payload.to_vec();
    let writing = tokio::spawn(async move {
        writer.write_all(&payload).await.unwrap();
        writer.shutdown().await.unwrap();
    });
    let mut back = Vec::new();
    reader.read_to_end(&mut back).await.unwrap();
    writing.await.unwrap();
    back
}

/// An echo server on a Unix socket (the "server side" socket: sshd runs as this user, on this
/// machine). Stops when the token is cancelled.
fn unix_echo(path: &Path) -> CancellationToken {
    let listener = UnixListener::bind(path).unwrap();
    let stop = CancellationToken::new();
    let cancel = stop.clone();
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                () = cancel.cancelled() => return,
                accepted = listener.accept() => accepted,
            };
            let Ok((stream, _)) = accepted else { return };
            tokio::spawn(async move {
                let (mut reader, mut writer) = stream.into_split();
                let _ = tokio::io::copy(&mut reader, &mut writer).await;
                let _ = writer.shutdown().await;
            });
        }
    });
    stop
}

fn mode_of(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_socket_reaches_a_tcp_target_and_goes_on_stop() {
    let dir = test_dir();
    let sshd = Sshd::start();
    let echo = EchoServer::start();
    let socket = dir.join("pg.sock");
    let spec = format!("{}:127.0.0.1:{}", socket.display(), echo.port());
    let block = format!("local = [\"{spec}\"]\n");
    let tunneld = InProcess::start(&write_one_tunnel(dir.path(), &sshd, "sock", &block));
    tunneld.wait_up("sock").await;

    assert_eq!(mode_of(&socket), 0o660, "the default socket_mode");
    let payload = random_bytes(4 << 20, 7);
    let back = echo_over_socket(&socket, &payload).await;
    assert!(back == payload, "the echoed bytes differ from the payload");

    let counted = wait_until_async(WAIT, || async {
        let f = tunneld.forward("sock", &spec);
        f.connections_total == 1 && f.active == 0 && f.bytes_in == payload.len() as u64
    })
    .await;
    let shown = tunneld.forward("sock", &spec);
    assert!(counted, "counters: {shown:?}");
    assert_eq!(shown.listen, [socket.display().to_string()]);
    assert_eq!(shown.bytes_out, payload.len() as u64);

    tunneld.stop().await;
    assert!(!socket.exists(), "the socket file outlived the daemon");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tcp_port_reaches_a_socket_on_the_server() {
    let dir = test_dir();
    let sshd = Sshd::start();
    let server_socket = dir.join("server.sock");
    let _echo = unix_echo(&server_socket);
    let port = free_port();
    let block = format!(
        "local = [\"{port}:{}\"]\nsocket_mode = \"0600\"\n",
        server_socket.display()
    );
    let tunneld = InProcess::start(&write_one_tunnel(dir.path(), &sshd, "to-sock", &block));
    tunneld.wait_up("to-sock").await;

    let payload = random_bytes(1 << 20, 11);
    let back = echo_through(localhost(port), &payload).await;
    assert!(back == payload, "the echoed bytes differ from the payload");
    tunneld.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_socket_reaches_a_socket_on_the_server_with_its_mode() {
    let dir = test_dir();
    let sshd = Sshd::start();
    let server_socket = dir.join("server.sock");
    let _echo = unix_echo(&server_socket);
    let socket = dir.join("here.sock");
    let block = format!(
        "local = [\"{}:{}\"]\nsocket_mode = \"0600\"\n",
        socket.display(),
        server_socket.display()
    );
    let tunneld = InProcess::start(&write_one_tunnel(dir.path(), &sshd, "both", &block));
    tunneld.wait_up("both").await;

    assert_eq!(mode_of(&socket), 0o600);
    for seed in 0..3 {
        let payload = random_bytes(256 << 10, seed);
        let back = echo_over_socket(&socket, &payload).await;
        assert!(back == payload, "connection {seed}: the bytes differ");
    }
    tunneld.stop().await;
    assert!(!socket.exists());
}

/// A socket file left by a crash (nobody listens on it) is replaced; a live socket of another
/// process is never taken over: the forward retries until it goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_socket_is_replaced_and_a_live_one_left_alone() {
    let dir = test_dir();
    let sshd = Sshd::start();
    let echo = EchoServer::start();
    let stale = dir.join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    assert!(stale.exists());
    let live = dir.join("live.sock");
    let holder = std::os::unix::net::UnixListener::bind(&live).unwrap();
    let specs = [&stale, &live].map(|p| format!("{}:127.0.0.1:{}", p.display(), echo.port()));
    let block = format!("local = [\"{}\", \"{}\"]\n", specs[0], specs[1]);
    let tunneld = InProcess::start(&write_one_tunnel(dir.path(), &sshd, "stale", &block));

    let retrying = |s: &TunnelState| match s {
        TunnelState::Degraded { listeners, .. } => {
            matches!(listeners[1].state, ListenerState::Retrying { .. })
                && matches!(listeners[0].state, ListenerState::Listening)
        }
        _ => false,
    };
    let state = tunneld.wait_for("stale", WAIT, retrying).await;
    let TunnelState::Degraded { listeners, .. } = state else {
        unreachable!()
    };
    let ListenerState::Retrying { reason } = &listeners[1].state else {
        unreachable!()
    };
    assert_eq!(
        reason,
        &format!(
            "listen {}: another process listens on this socket",
            live.display()
        )
    );
    let payload = random_bytes(64 << 10, 3);
    assert!(echo_over_socket(&stale, &payload).await == payload);

    // The other process goes (and, like a crash, leaves its file): the forward takes it.
    drop(holder);
    tunneld.wait_up("stale").await;
    assert!(echo_over_socket(&live, &payload).await == payload);
    tunneld.stop().await;
    assert!(!stale.exists() && !live.exists());
}

/// A file that is not a socket is never removed to make room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_file_in_the_way_is_kept() {
    let dir = test_dir();
    let sshd = Sshd::start();
    let path = dir.write("data.sock", b"important");
    let block = format!("local = [\"{}:127.0.0.1:9\"]\n", path.display());
    let tunneld = InProcess::start(&write_one_tunnel(dir.path(), &sshd, "file", &block));
    let state = tunneld
        .wait_for("file", WAIT, |s| match s {
            TunnelState::Degraded { listeners, .. } => {
                matches!(listeners[0].state, ListenerState::Retrying { .. })
            }
            _ => false,
        })
        .await;
    let TunnelState::Degraded { listeners, .. } = state else {
        unreachable!()
    };
    assert_eq!(
        listeners[0].state,
        ListenerState::Retrying {
            reason: format!(
                "listen {}: the path exists and is not a socket; not replacing it",
                path.display()
            )
        }
    );
    tunneld.stop().await;
    assert_eq!(std::fs::read(&path).unwrap(), b"important");
}

/// A reload that moves the forward to another socket removes the old file and serves the new.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_removes_the_socket_it_no_longer_serves() {
    let dir = test_dir();
    let sshd = Sshd::start();
    let echo = EchoServer::start();
    let config_for = |socket: &PathBuf| {
        let block = format!(
            "local = [\"{}:127.0.0.1:{}\"]\n",
            socket.display(),
            echo.port()
        );
        write_one_tunnel(dir.path(), &sshd, "moving", &block)
    };
    let (old, new) = (dir.join("old.sock"), dir.join("new.sock"));
    let mut tunneld = InProcess::start(&config_for(&old));
    tunneld.wait_up("moving").await;
    assert!(old.exists());

    let config = tunneld_config::load(&config_for(&new)).unwrap();
    tunneld.supervisor.apply(&config).await;
    tunneld.wait_up("moving").await;
    assert!(!old.exists(), "the old socket file stayed after the reload");
    let payload = random_bytes(32 << 10, 5);
    assert!(echo_over_socket(&new, &payload).await == payload);
    tunneld.stop().await;
    assert!(!new.exists());
}

/// The tunnel's remote forwards as its state tells them, once `pred` holds for the first.
async fn remote_state(
    tunneld: &InProcess,
    tunnel: &str,
    pred: impl Fn(&RemoteState) -> bool,
) -> RemoteState {
    let state = tunneld
        .wait_for(tunnel, WAIT, |s| match s {
            TunnelState::Up { remote, .. } | TunnelState::Degraded { remote, .. } => {
                remote.first().is_some_and(|r| pred(&r.state))
            }
            _ => false,
        })
        .await;
    match state {
        TunnelState::Up { remote, .. } | TunnelState::Degraded { remote, .. } => {
            remote[0].state.clone()
        }
        _ => unreachable!(),
    }
}

fn listening(state: &RemoteState) -> bool {
    matches!(state, RemoteState::Listening { .. })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_on_the_server_reaches_a_tcp_target_here() {
    let dir = test_dir();
    let sshd = Sshd::start();
    let echo = EchoServer::start();
    let server_socket = dir.join("app.sock");
    let spec = format!("{}:127.0.0.1:{}", server_socket.display(), echo.port());
    let block = format!("remote = [\"{spec}\"]\n");
    let tunneld = InProcess::start(&write_one_tunnel(dir.path(), &sshd, "rsock", &block));
    remote_state(&tunneld, "rsock", listening).await;

    let payload = random_bytes(2 << 20, 21);
    let back = echo_over_socket(&server_socket, &payload).await;
    assert!(back == payload, "the echoed bytes differ from the payload");
    let shown = tunneld.forward("rsock", &spec);
    assert_eq!(shown.listen, [server_socket.display().to_string()]);
    let counted = wait_until_async(WAIT, || async {
        tunneld.forward("rsock", &spec).connections_total == 1
    })
    .await;
    assert!(counted, "{:?}", tunneld.forward("rsock", &spec));
    tunneld.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_port_reaches_a_socket_here() {
    let dir = test_dir();
    let sshd = Sshd::start();
    let local_socket = dir.join("here.sock");
    let _echo = unix_echo(&local_socket);
    let port = free_port();
    let block = format!("remote = [\"{port}:{}\"]\n", local_socket.display());
    let tunneld = InProcess::start(&write_one_tunnel(dir.path(), &sshd, "rport", &block));
    remote_state(&tunneld, "rport", listening).await;

    let payload = random_bytes(2 << 20, 22);
    let back = echo_through(localhost(port), &payload).await;
    assert!(back == payload, "the echoed bytes differ from the payload");
    tunneld.stop().await;
}

/// Without StreamLocalBindUnlink, sshd refuses the socket it listened on for the previous
/// connection, and the tunnel says so; with it, every reconnect gets the socket back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_needs_stream_local_bind_unlink() {
    for unlink in [false, true] {
        let dir = test_dir();
        let mut builder = Sshd::builder();
        if unlink {
            builder = builder.config_line("StreamLocalBindUnlink yes");
        }
        let sshd = builder.start();
        let echo = EchoServer::start();
        let server_socket = dir.join("app.sock");
        let block = format!(
            "remote = [\"{}:127.0.0.1:{}\"]\n",
            server_socket.display(),
            echo.port()
        );
        let tunneld = InProcess::start(&write_one_tunnel(dir.path(), &sshd, "again", &block));
        remote_state(&tunneld, "again", listening).await;
        let first = connection_id(&tunneld.wait_up("again").await);

        tunneld.supervisor.reconnect(&["again".to_owned()]).unwrap();
        let next_connection = |s: &TunnelState| match s {
            TunnelState::Up { connection, .. } | TunnelState::Degraded { connection, .. } => {
                *connection != first
            }
            _ => false,
        };
        tunneld.wait_for("again", WAIT, next_connection).await;
        if unlink {
            remote_state(&tunneld, "again", listening).await;
            let payload = random_bytes(64 << 10, 23);
            assert!(echo_over_socket(&server_socket, &payload).await == payload);
        } else {
            let refused = remote_state(&tunneld, "again", |s| {
                matches!(s, RemoteState::Refused { .. })
            })
            .await;
            assert_eq!(
                refused,
                RemoteState::Refused {
                    reason: format!(
                        "the server still has {} from the previous connection; set \
                         StreamLocalBindUnlink yes in sshd_config",
                        server_socket.display()
                    )
                }
            );
        }
        tunneld.stop().await;
    }
}

/// socat, not tunneld's own code, on both sockets: a client on the socket here, and the
/// server's socket (an echo through `cat`), bytes verified.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socat_on_both_ends_of_a_socket_to_socket_forward() {
    let dir = test_dir();
    let sshd = Sshd::start();
    let server_socket = dir.join("socat-server.sock");
    let mut server = std::process::Command::new("socat")
        .arg(format!("UNIX-LISTEN:{},fork", server_socket.display()))
        .arg("EXEC:cat")
        .spawn()
        .expect("socat (apt-get install socat)");
    let listening = wait_until_async(WAIT, || async { server_socket.exists() }).await;
    assert!(listening, "socat did not create its socket");
    let socket = dir.join("here.sock");
    let block = format!(
        "local = [\"{}:{}\"]\n",
        socket.display(),
        server_socket.display()
    );
    let tunneld = InProcess::start(&write_one_tunnel(dir.path(), &sshd, "socat", &block));
    tunneld.wait_up("socat").await;

    let payload = random_bytes(1 << 20, 31);
    let client_socket = socket.clone();
    let sent = payload.clone();
    let back = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut client = std::process::Command::new("socat")
            .args(["-t", "10", "-"])
            .arg(format!("UNIX-CONNECT:{}", client_socket.display()))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = client.stdin.take().unwrap();
        let writer = std::thread::spawn(move || stdin.write_all(&sent).unwrap());
        let mut back = Vec::new();
        client
            .stdout
            .take()
            .unwrap()
            .read_to_end(&mut back)
            .unwrap();
        writer.join().unwrap();
        assert!(client.wait().unwrap().success());
        back
    })
    .await
    .unwrap();
    assert_eq!(back.len(), payload.len());
    assert!(back == payload, "the bytes socat got back differ");
    tunneld.stop().await;
    let _ = server.kill();
    let _ = server.wait();
}
