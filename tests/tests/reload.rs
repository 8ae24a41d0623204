//! SIGHUP reload of the tunneld binary: only what changed is restarted.

// Helpers outside #[test] functions unwrap too: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use harness::{EchoServer, Sshd, TunneldProcess, free_port, host_entry, localhost, wait_until};
use nix::sys::signal::Signal;
use support::{defaults_for, write_config};

const TIMEOUT: Duration = Duration::from_secs(20);

fn exchange(stream: &mut TcpStream, bytes: &[u8]) {
    stream.write_all(bytes).unwrap();
    let mut back = vec![0u8; bytes.len()];
    stream.read_exact(&mut back).unwrap();
    assert_eq!(back, bytes);
}

#[test]
fn a_reload_restarts_only_what_changed_and_retries_what_failed() {
    let dir = harness::TestDir::new();
    let (a, b, c) = (Sshd::start(), Sshd::start(), Sshd::start());
    let echo = EchoServer::start();
    let (pa, pb, pc) = (free_port(), free_port(), free_port());
    // Tunnel "failing" trusts the wrong key for c at first: it backs off at the cap (60 s).
    let wrong = harness::KeyPair::generate(dir.path(), "wrong");
    let defaults = defaults_for(&a, dir.path());
    let hosts = format!(
        "{}{}{}",
        host_entry(dir.path(), "a", &a, ""),
        host_entry(dir.path(), "b", &b, ""),
        host_entry(dir.path(), "c", &c, "")
    );
    let c_known = dir.path().join("known_hosts_c");
    std::fs::write(
        &c_known,
        format!("[127.0.0.1]:{} {}\n", c.port(), wrong.public_key()),
    )
    .unwrap();
    let tunnels = |b_keepalive: &str| {
        format!(
            "[tunnels.steady]\nhost = \"a\"\nlocal = [\"{pa}:127.0.0.1:{e}\"]\n\n[tunnels.changed]\nhost = \"b\"\nkeepalive_interval = \"{b_keepalive}\"\nlocal = [\"{pb}:127.0.0.1:{e}\"]\n\n[tunnels.failing]\nhost = \"c\"\nlocal = [\"{pc}:127.0.0.1:{e}\"]\n",
            e = echo.port()
        )
    };
    let config = write_config(dir.path(), &format!("{defaults}{hosts}{}", tunnels("15s")));
    let tunneld = TunneldProcess::spawn(&["run", "--config", config.to_str().unwrap()], &[]);
    assert!(
        tunneld.wait_for_log_count("tunnel up", 2, TIMEOUT),
        "{}",
        tunneld.logs()
    );
    assert!(tunneld.wait_for_log("HOST KEY CHANGED", TIMEOUT));

    // An open forwarded connection on the tunnel that will not change, and its SSH session.
    let mut open = TcpStream::connect(localhost(pa)).unwrap();
    open.set_read_timeout(Some(TIMEOUT)).unwrap();
    exchange(&mut open, b"before the reload");
    let steady_sessions = a.session_pids();
    assert!(!steady_sessions.is_empty());
    let b_logins = b.logins();

    // Reload: "changed" gets a new keepalive; "failing" is unchanged, but its known_hosts is
    // fixed now, and a reload retries failing tunnels at once instead of after 60 s.
    c.write_known_hosts(&c_known);
    std::fs::write(&config, format!("{defaults}{hosts}{}", tunnels("10s"))).unwrap();
    tunneld.signal(Signal::SIGHUP);
    tunneld.expect_log("reloaded", TIMEOUT);

    // The changed tunnel logged in again; the failing one came up well before its 60 s cap.
    assert!(
        wait_until(TIMEOUT, || b.logins() > b_logins),
        "the changed tunnel must reconnect"
    );
    assert!(
        wait_until(TIMEOUT, || c.log().contains("Accepted publickey")),
        "{}",
        tunneld.logs()
    );
    assert!(
        tunneld.wait_for_log_count("tunnel up", 4, TIMEOUT),
        "{}",
        tunneld.logs()
    );

    // The unchanged tunnel kept its very SSH session and its open connection.
    assert_eq!(
        a.session_pids(),
        steady_sessions,
        "the steady tunnel's session was replaced"
    );
    assert_eq!(a.logins(), 1);
    exchange(&mut open, b"after the reload, same connection");
    for port in [pb, pc] {
        let mut s = TcpStream::connect(localhost(port)).unwrap();
        s.set_read_timeout(Some(TIMEOUT)).unwrap();
        exchange(&mut s, b"through the restarted tunnels");
    }
}
