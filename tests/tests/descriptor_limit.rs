//! The descriptor reserve: with the open file limit reached by forwarded connections, a tunnel
//! whose SSH connection dies still reconnects (a socket, the key, known_hosts), new clients wait
//! with one clear log line, and they are served once others close. Run with a small
//! `RLIMIT_NOFILE` set on the daemon, not with thousands of real descriptors.

// Helpers outside #[test] functions unwrap too: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use harness::{
    EchoServer, Sshd, TunneldProcess, accepted_on, free_port, localhost, tunneld_bin, wait_until,
};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use support::{test_dir, write_one_tunnel};

/// 128 descriptors: 64 kept in reserve, 64 counted (listeners, the SSH connection, clients).
const FD_LIMIT: u32 = 128;
const LIMIT_LOG: &str = "open file limit reached (RLIMIT_NOFILE 128, 64 kept for reconnects)";
const RESUMED_LOG: &str = "accepting again";
const TIMEOUT: Duration = Duration::from_secs(20);

/// One echo round trip on an open client, leaving it open.
fn echo_on(stream: &mut TcpStream, i: usize) -> std::io::Result<()> {
    let payload = format!("client {i:05}\n");
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.write_all(payload.as_bytes())?;
    let mut back = vec![0u8; payload.len()];
    stream.read_exact(&mut back)?;
    if back != payload.as_bytes() {
        return Err(std::io::Error::other(format!("client {i}: wrong echo")));
    }
    Ok(())
}

/// Whether tunneld has let go of this client (reset or closed it).
fn is_dropped(stream: &mut TcpStream) -> bool {
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut byte = [0u8; 1];
    matches!(stream.read(&mut byte), Ok(0) | Err(_))
}

#[test]
fn at_the_descriptor_limit_a_tunnel_still_reconnects_and_clients_wait() {
    let dir = test_dir();
    let sshd = Sshd::start();
    let echo = EchoServer::start();
    let port = free_port();
    let config = write_one_tunnel(
        dir.path(),
        &sshd,
        "t",
        &format!("local = [\"{port}:127.0.0.1:{}\"]\n", echo.port()),
    );
    // Soft first: the hard limit may not go below the soft one. tunneld raises soft to hard at
    // start, so both are set.
    let script = format!(
        "ulimit -Sn {FD_LIMIT} && ulimit -Hn {FD_LIMIT} && exec '{}' run --config '{}'",
        tunneld_bin().display(),
        config.display()
    );
    let mut tunneld = TunneldProcess::spawn_program(Path::new("/bin/sh"), &["-c", &script], &[]);
    tunneld.expect_log("tunnel up", TIMEOUT);
    let pid = tunneld.pid();

    // Far more clients than the budget: the kernel completes their handshakes in the backlog.
    let mut clients: Vec<TcpStream> = (0..250)
        .map(|_| TcpStream::connect(localhost(port)).unwrap())
        .collect();
    tunneld.expect_log(LIMIT_LOG, TIMEOUT);
    let mut served = 0;
    wait_until(TIMEOUT, || {
        let now = accepted_on(pid, port);
        let settled = now == served && now > 0;
        served = now;
        settled
    });
    // 64 counted, less one or two listeners and the SSH connection.
    assert!((55..=62).contains(&served), "{served} clients accepted");
    // The backlog is accepted in order: the first ones are forwarded.
    for (i, client) in clients.iter_mut().enumerate().take(served) {
        echo_on(client, i).unwrap_or_else(|e| panic!("{e}\n{}", tunneld.logs()));
    }

    // The SSH connection dies under them. Its clients are reset, the next ones in the backlog
    // take their descriptors and wait for the tunnel, which must reconnect meanwhile.
    for session in sshd.session_pids() {
        let _ = kill(Pid::from_raw(session as i32), Signal::SIGKILL);
    }
    let reconnected = tunneld.wait_for_log_count("tunnel up", 2, TIMEOUT);
    assert!(
        reconnected,
        "no reconnect at the limit:\n{}",
        tunneld.logs()
    );
    for (i, client) in clients.iter_mut().enumerate().take(served) {
        assert!(is_dropped(client), "client {i} outlived its SSH connection");
    }
    let rest = &mut clients[served..];
    for (i, client) in rest.iter_mut().enumerate().take(served) {
        echo_on(client, served + i).unwrap_or_else(|e| panic!("{e}\n{}", tunneld.logs()));
    }
    assert!(
        !tunneld.logs().contains("Too many open files"),
        "the reserve did not hold:\n{}",
        tunneld.logs()
    );

    // The rest wait (one log line however often the limit is hit), and are served once the
    // others close.
    let rest_start = 2 * served;
    clients.drain(..rest_start);
    for (i, client) in clients.iter_mut().enumerate().take(served) {
        echo_on(client, rest_start + i).unwrap_or_else(|e| panic!("{e}\n{}", tunneld.logs()));
    }
    assert!(tunneld.is_running());
    assert_eq!(tunneld.count_in_logs(LIMIT_LOG), 1, "{}", tunneld.logs());
    assert!(
        tunneld.count_in_logs(RESUMED_LOG) >= 1,
        "{}",
        tunneld.logs()
    );
}
