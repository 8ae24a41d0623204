//! What tunneld tells systemd: the binary against a NOTIFY_SOCKET the test binds, and the
//! supervisor's health with a connector that hangs (the watchdog must stop being petted).

// Helpers outside #[test] functions unwrap too: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod support;

use std::os::unix::net::UnixDatagram;
use std::sync::Arc;
use std::time::{Duration, Instant};

use harness::{EchoServer, Sshd, TunneldProcess, free_port};
use nix::sys::signal::Signal;
use support::{defaults_for, host_line, test_dir, write_config};
use tokio_util::sync::CancellationToken;
use tunneld_config::Tunnel;
use tunneld_ssh::ProgressFn;
use tunneld_supervisor::{Attempt, Connector, Supervisor, TunnelState};

/// The messages received on the socket, in order, each with when it arrived.
struct Notifications {
    socket: UnixDatagram,
    seen: Vec<(Instant, String)>,
}

impl Notifications {
    fn bind(dir: &std::path::Path) -> (Self, String) {
        let path = dir.join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        (
            Notifications {
                socket,
                seen: Vec::new(),
            },
            path.display().to_string(),
        )
    }

    /// Receives until a message satisfies `pred` (returns it) or `timeout` passes (panics).
    fn wait_for(&mut self, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        let mut buf = vec![0u8; 8192];
        loop {
            if let Ok(n) = self.socket.recv(&mut buf) {
                // sd_notify ends every assignment with a newline.
                let msg = String::from_utf8_lossy(&buf[..n]).trim_end().to_string();
                self.seen.push((Instant::now(), msg.clone()));
                if pred(&msg) {
                    return msg;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no such notification within {timeout:?}; got: {:#?}",
                self.seen.iter().map(|(_, m)| m).collect::<Vec<_>>()
            );
        }
    }

    /// The last STATUS= received before index `before`.
    fn status_before(&self, before: usize) -> Option<&str> {
        self.seen[..before]
            .iter()
            .rev()
            .find_map(|(_, m)| m.lines().find_map(|l| l.strip_prefix("STATUS=")))
    }
}

#[test]
fn the_notification_sequence_tells_systemd_the_truth() {
    let dir = test_dir();
    let mut sshd = Sshd::start();
    let echo = EchoServer::start();
    let port = free_port();
    let config_text = format!(
        "{}[tunnels.t]\n{}keepalive_interval = \"1s\"\nkeepalive_max = 2\nlocal = [\"{port}:127.0.0.1:{}\"]\n",
        defaults_for(&sshd, dir.path()),
        host_line(&sshd),
        echo.port()
    );
    let config = write_config(dir.path(), &config_text);
    let (mut notes, socket) = Notifications::bind(dir.path());
    let mut tunneld = TunneldProcess::spawn(
        &["run", "--config", config.to_str().unwrap()],
        &[("NOTIFY_SOCKET", &socket), ("WATCHDOG_USEC", "1000000")],
    );

    // READY=1 only once the tunnel is up, with the STATUS that says so.
    let ready = notes.wait_for(Duration::from_secs(20), |m| m.starts_with("READY=1"));
    assert_eq!(ready, "READY=1\nSTATUS=1/1 tunnels up");
    let ready_at = notes.seen.len();
    assert!(
        notes
            .status_before(ready_at - 1)
            // Depending on when the first STATUS tick falls, the tunnel task has or has not
            // begun its first attempt yet: either is the truth, "up" would not be.
            .is_none_or(|s| s.starts_with("0/1 tunnels up; t: connecting")
                || s.starts_with("0/1 tunnels up; t: starting")),
        "{:?}",
        notes.status_before(ready_at - 1)
    );
    assert!(tunneld.logs().contains("tunnel up"));

    // WATCHDOG=1 at half of WATCHDOG_USEC (1 s): about every 0.5 s.
    let first = notes.seen.len();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(3) {
        notes.wait_for(Duration::from_secs(5), |m| m == "WATCHDOG=1");
    }
    let pings: Vec<Instant> = notes.seen[first..]
        .iter()
        .filter(|(_, m)| m == "WATCHDOG=1")
        .map(|(at, _)| *at)
        .collect();
    let gaps: Vec<Duration> = pings.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(pings.len() >= 4, "{} pings in 3 s", pings.len());
    // Generous around 0.5 s: the gaps are measured where the test receives the datagrams, so a
    // busy machine can shift one ping late and make its successor look early.
    for gap in &gaps {
        assert!(
            *gap >= Duration::from_millis(200) && *gap <= Duration::from_millis(1500),
            "gap {gap:?}"
        );
    }

    // sshd goes away: STATUS says the tunnel is down and why; back when sshd is.
    sshd.kill();
    let down = notes.wait_for(Duration::from_secs(20), |m| {
        m.starts_with("STATUS=0/1 tunnels up; t: ")
    });
    assert!(
        down.contains("retry in") || down.contains("connecting"),
        "{down}"
    );
    sshd.restart();
    notes.wait_for(Duration::from_secs(20), |m| m == "STATUS=1/1 tunnels up");

    // SIGHUP: RELOADING=1 with MONOTONIC_USEC, then READY=1.
    tunneld.signal(Signal::SIGHUP);
    let reloading = notes.wait_for(Duration::from_secs(10), |m| m.contains("RELOADING=1"));
    assert!(reloading.contains("MONOTONIC_USEC="), "{reloading}");
    notes.wait_for(Duration::from_secs(10), |m| m.starts_with("READY=1"));

    // An invalid file changes nothing, and STATUS shows where it is wrong.
    std::fs::write(&config, "[tunnels.t]\nhost = \"x\"\nlokal = []\n").unwrap();
    tunneld.signal(Signal::SIGHUP);
    let refused = notes.wait_for(Duration::from_secs(10), |m| m.contains("reload failed"));
    assert!(
        refused.starts_with(
            "STATUS=1/1 tunnels up; reload failed, still running the previous configuration: "
        ) && refused.contains(&format!("{}:3:1: tunnels.t.lokal", config.display())),
        "{refused}"
    );

    // SIGTERM: STOPPING=1, then a clean exit.
    tunneld.signal(Signal::SIGTERM);
    notes.wait_for(Duration::from_secs(5), |m| m.contains("STOPPING=1"));
    let status = tunneld.wait_exit(Duration::from_secs(5)).expect("exits");
    assert!(status.success());
}

/// A tunnel whose remote forward the server refuses by policy is degraded, not down and not
/// up: READY=1 comes once it has its answer, STATUS says degraded and why, the log never says
/// "tunnel up", and the watchdog is petted while its local forward serves.
#[test]
fn a_degraded_tunnel_is_ready_and_says_so() {
    let dir = test_dir();
    let sshd = Sshd::builder()
        .config_line("PermitListen 127.0.0.1:1")
        .start();
    let echo = EchoServer::start();
    let (port, refused) = (free_port(), free_port());
    let config_text = format!(
        "{}[tunnels.t]\n{}local = [\"{port}:127.0.0.1:{echo}\"]\nremote = [\"{refused}:127.0.0.1:{echo}\"]\n",
        defaults_for(&sshd, dir.path()),
        host_line(&sshd),
        echo = echo.port()
    );
    let config = write_config(dir.path(), &config_text);
    let (mut notes, socket) = Notifications::bind(dir.path());
    let mut tunneld = TunneldProcess::spawn(
        &["run", "--config", config.to_str().unwrap()],
        &[("NOTIFY_SOCKET", &socket), ("WATCHDOG_USEC", "1000000")],
    );

    let ready = notes.wait_for(Duration::from_secs(20), |m| m.starts_with("READY=1"));
    let reason = format!(
        "127.0.0.1:{server} refuses remote port forwarding of {refused}:127.0.0.1:{echo} \
         (AllowTcpForwarding / PermitListen / permitlisten)",
        server = sshd.port(),
        echo = echo.port()
    );
    assert_eq!(
        ready,
        format!(
            "READY=1\nSTATUS=0/1 tunnels up, 1 degraded; t: degraded (127.0.0.1:{}), 1/2 \
             forwards up; {reason}",
            sshd.port()
        )
    );
    // Healthy: the watchdog is petted.
    notes.wait_for(Duration::from_secs(5), |m| m == "WATCHDOG=1");
    tunneld.expect_log("tunnel degraded", Duration::from_secs(5));
    let logs = tunneld.logs();
    assert!(logs.contains("connected"), "{logs}");
    assert!(!logs.contains("tunnel up"), "{logs}");
    assert!(!logs.contains("tunnel down"), "{logs}");

    tunneld.signal(Signal::SIGTERM);
    let status = tunneld.wait_exit(Duration::from_secs(5)).expect("exits");
    assert!(status.success());
}

/// A connector whose attempts never finish: a bug, or a hang beyond every timeout.
struct Hanging;

impl Connector for Hanging {
    fn connect<'a>(&'a self, _tunnel: &'a Tunnel, _progress: &'a ProgressFn) -> Attempt<'a> {
        Box::pin(std::future::pending())
    }
}

// On paused time: the clock moves only when every task waits, and then straight to the next
// timer, so the seconds this test judges take none. Health reads tokio's clock, which is why
// `started` is a tokio Instant too. The second half's real attempts still work, because tokio
// polls for I/O before it moves the clock and a killed sshd's port refuses at once; a peer
// that answered slowly would instead see its timeouts fire early.
#[tokio::test(start_paused = true)]
async fn a_wedged_tunnel_stops_the_watchdog_and_a_reconnecting_one_does_not() {
    let dir = test_dir();
    let sshd = Sshd::start();
    let text = format!(
        "{}[tunnels.t]\n{}connect_timeout = \"1s\"\nlocal = [\"{}:127.0.0.1:9\"]\n",
        defaults_for(&sshd, dir.path()),
        host_line(&sshd),
        free_port()
    );
    let config = tunneld_config::load(&write_config(dir.path(), &text)).unwrap();

    // Hanging: healthy while the attempt is within its bound, then wedged, with the reason.
    let shutdown = CancellationToken::new();
    let grace = Duration::from_secs(1);
    // Taken before the attempt starts, so that it cannot make the attempt look younger than it is.
    let started = tokio::time::Instant::now();
    let supervisor = Supervisor::start_with(&config, shutdown.clone(), Arc::new(Hanging), grace);
    assert!(supervisor.report().healthy());
    while supervisor.report().healthy() {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "never judged wedged"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let report = supervisor.report();
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "wedged before its bound: {report:?}"
    );
    // Nothing else takes time here: it is judged at one of the first looks past its bound.
    assert!(
        started.elapsed() < Duration::from_millis(2100),
        "judged wedged late: {:?}",
        started.elapsed()
    );
    assert!(
        !report.ready,
        "a tunnel that never finished its first attempt is not ready"
    );
    assert_eq!(report.wedged.len(), 1);
    assert!(
        report.wedged[0].starts_with("t: connecting"),
        "{:?}",
        report.wedged
    );
    assert!(supervisor.shutdown(Duration::from_secs(2)).await);

    // A tunnel patiently reconnecting to a server that is down stays healthy.
    let mut down = sshd;
    down.kill();
    let shutdown = CancellationToken::new();
    let supervisor = Supervisor::start_with(
        &config,
        shutdown,
        Arc::new(tunneld_supervisor::SshConnector),
        grace,
    );
    let started = tokio::time::Instant::now();
    let mut saw_backoff = false;
    while started.elapsed() < Duration::from_secs(6) {
        let report = supervisor.report();
        assert!(report.healthy(), "{report:?}");
        saw_backoff |= matches!(
            *supervisor.state("t").unwrap().borrow(),
            TunnelState::BackingOff { .. }
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(saw_backoff);
    assert!(
        supervisor.report().ready,
        "failed with its reason counts as ready"
    );
    assert!(supervisor.shutdown(Duration::from_secs(2)).await);
}
