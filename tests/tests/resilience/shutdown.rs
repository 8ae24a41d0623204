//! SIGTERM in the middle of a reconnect: while backing off with connections open, while an
//! attempt is stuck in its TCP connect, and with clients waiting for the down tunnel. The binary
//! must exit 0 within 2 s each time, without waiting out its grace period.

use std::io::Write;
use std::time::{Duration, Instant};

use harness::{
    ChaosProxy, EchoServer, Sshd, TunneldProcess, accepted_from, localhost, random_bytes, try_echo,
    wait_until,
};
use nix::sys::signal::Signal;

use crate::support::test_dir;
use crate::{STATE_TIMEOUT, TunnelSpec, config_file, run_binary, secs};

/// Opens `n` forwarded connections to `port` and sends each a few bytes, without reading.
fn open_clients(port: u16, n: usize) -> Vec<std::net::TcpStream> {
    (0..n)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(localhost(port)).unwrap();
            s.write_all(b"mid-exchange").unwrap();
            s
        })
        .collect()
}

/// Opens `n` clients of the forward on `port` while the tunnel is down, and returns once tunneld
/// has accepted them: they wait for the tunnel inside tunneld. These clients are counted by
/// their own ports, not by how many connections the listener holds: the connections of the
/// session that just died may still be closing, and a count taken before them would then never
/// grow by `n`.
fn open_waiting_clients(tunneld: &TunneldProcess, port: u16, n: usize) -> Vec<std::net::TcpStream> {
    let clients = open_clients(port, n);
    let ports: Vec<u16> = clients
        .iter()
        .map(|client| client.local_addr().unwrap().port())
        .collect();
    assert!(
        wait_until(STATE_TIMEOUT, || accepted_from(tunneld.pid(), port, &ports)
            == n),
        "tunneld did not accept the clients"
    );
    clients
}

/// SIGTERM, then: exit status 0 within 2 s. Returns how long it took.
fn sigterm_stops_within_2s(tunneld: &mut TunneldProcess, what: &str) -> Duration {
    let asked = Instant::now();
    tunneld.signal(Signal::SIGTERM);
    let status = tunneld.wait_exit(Duration::from_secs(10));
    let took = asked.elapsed();
    let clean = !tunneld.logs().contains("did not stop in time");
    eprintln!(
        "[SIGTERM {what}] exited {status:?} after {:.3} s; all tasks finished within the grace period: {clean}",
        secs(took)
    );
    let status = status.unwrap_or_else(|| panic!("tunneld still runs 10 s after SIGTERM ({what})"));
    assert_eq!(status.code(), Some(0), "{}", tunneld.logs());
    assert!(
        took < Duration::from_secs(2),
        "tunneld took {took:?} to stop ({what})\n{}",
        tunneld.logs()
    );
    took
}

#[test]
fn sigterm_while_backing_off_with_connections_open_exits_0_within_2s() {
    let dir = test_dir();
    let mut sshd = Sshd::start();
    let echo = EchoServer::start();
    let mut spec = TunnelSpec::new("t", &sshd, sshd.port(), echo.port());
    // Long enough that the tunnel is surely waiting out a backoff when SIGTERM comes.
    spec.backoff_max = "5s";
    let port = spec.forward_port;
    let config = config_file(dir.path(), &[&spec]);
    drop(spec);
    // A failure that repeats is logged once at info; its repeats are at debug, and they are
    // what tells this test that several attempts have failed.
    let mut tunneld = TunneldProcess::spawn(
        &["run", "--config", config.to_str().unwrap()],
        &[("RUST_LOG", "info,tunneld_supervisor=debug")],
    );
    tunneld.expect_log("tunnel up", STATE_TIMEOUT);
    let payload = random_bytes(10_000, 8);
    assert_eq!(try_echo(port, &payload, STATE_TIMEOUT).unwrap(), payload);
    let before = open_clients(port, 2);
    assert!(wait_until(STATE_TIMEOUT, || echo.connections_total() >= 3));

    sshd.kill();
    tunneld.expect_log("tunnel down", STATE_TIMEOUT);
    // Clients arriving now wait for the tunnel (connect_timeout 10 s).
    let waiting = open_waiting_clients(&tunneld, port, 2);
    assert!(
        tunneld.wait_for_log_count("tunnel down", 3, STATE_TIMEOUT),
        "{}",
        tunneld.logs()
    );
    sigterm_stops_within_2s(&mut tunneld, "while backing off");
    drop((before, waiting));
}

#[test]
fn sigterm_while_connecting_through_a_stalled_link_exits_0_within_2s() {
    let dir = test_dir();
    let sshd = Sshd::start();
    let proxy = ChaosProxy::start(sshd.addr());
    let echo = EchoServer::start();
    let spec = TunnelSpec::new("t", &sshd, proxy.port(), echo.port());
    let port = spec.forward_port;
    let config = config_file(dir.path(), &[&spec]);
    let mut tunneld = run_binary(&config);
    tunneld.expect_log("tunnel up", STATE_TIMEOUT);
    let payload = random_bytes(10_000, 9);
    assert_eq!(try_echo(port, &payload, STATE_TIMEOUT).unwrap(), payload);
    let before = open_clients(port, 2);
    assert!(wait_until(STATE_TIMEOUT, || echo.connections_total() >= 3));

    // New TCP connects hang in SYN-SENT; the current connection is reset.
    proxy.set_accepting(false);
    let dials = tunneld.count_in_logs(": connecting peer=");
    proxy.reset_all();
    tunneld.expect_log("tunnel down", STATE_TIMEOUT);
    // The next attempt is under way, stuck in its TCP connect.
    assert!(
        tunneld.wait_for_log_count(": connecting peer=", dials + 1, STATE_TIMEOUT),
        "{}",
        tunneld.logs()
    );
    let waiting = open_waiting_clients(&tunneld, port, 2);
    sigterm_stops_within_2s(&mut tunneld, "while connecting");
    drop((before, waiting));
}

/// Shutdown must not wait out the clients that wait for a down tunnel: they are not carrying
/// anything yet, and their wait (up to connect_timeout, 10 s here) is longer than the grace that
/// SIGTERM gives (1.5 s). The binary exits 0 within 2 s either way (the grace runs out); this
/// checks that it did not need the grace, i.e. that every task finished when asked.
#[test]
fn sigterm_does_not_wait_out_clients_waiting_for_a_down_tunnel() {
    let dir = test_dir();
    let mut sshd = Sshd::start();
    let echo = EchoServer::start();
    let spec = TunnelSpec::new("t", &sshd, sshd.port(), echo.port());
    let port = spec.forward_port;
    let config = config_file(dir.path(), &[&spec]);
    drop(spec);
    // A failure that repeats is logged once at info; its repeats are at debug, and they are
    // what tells this test that several attempts have failed.
    let mut tunneld = TunneldProcess::spawn(
        &["run", "--config", config.to_str().unwrap()],
        &[("RUST_LOG", "info,tunneld_supervisor=debug")],
    );
    tunneld.expect_log("tunnel up", STATE_TIMEOUT);
    sshd.kill();
    tunneld.expect_log("tunnel down", STATE_TIMEOUT);
    let waiting = open_waiting_clients(&tunneld, port, 2);
    let took = sigterm_stops_within_2s(&mut tunneld, "with clients waiting for the tunnel");
    assert!(
        !tunneld.logs().contains("did not stop in time"),
        "shutdown waited out its whole grace ({took:?}) for clients that were only waiting for the tunnel:\n{}",
        tunneld.logs()
    );
    // Each client's line says how long it really waited (well under a second here), not the
    // 10 s it might have.
    assert!(
        tunneld.wait_for_log_count("closing the client", 2, STATE_TIMEOUT),
        "{}",
        tunneld.logs()
    );
    for line in tunneld
        .logs()
        .lines()
        .filter(|l| l.contains("closing the client"))
    {
        let waited: f64 = line
            .split("waited_secs=")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|secs| secs.parse().ok())
            .unwrap_or_else(|| panic!("no waited_secs in {line}"));
        assert!(waited < 5.0, "{line}");
    }
    drop(waiting);
}
