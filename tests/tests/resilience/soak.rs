//! A soak of reconnects: sshd killed and restarted 50 times under the tunneld binary. Every
//! cycle must recover (a round trip through the forward works again), and the binary's open
//! descriptors and RSS must not grow from cycle to cycle.

use std::time::{Duration, Instant};

use harness::{EchoServer, Sshd, fd_count, random_bytes, rss_kib, try_echo, wait_until};
use nix::sys::signal::Signal;

use crate::support::test_dir;
use crate::{RECOVER_BOUND, STATE_TIMEOUT, TunnelSpec, config_file, run_binary, secs};

/// fds of `pid` once they stop changing (a forwarded connection that just ended may still be
/// closing): the value that held for 5 polls in a row, or the last one after 3 s.
fn settled_fd_count(pid: u32) -> usize {
    let mut last = fd_count(pid);
    let mut same = 0;
    wait_until(Duration::from_secs(3), || {
        let now = fd_count(pid);
        if now == last {
            same += 1;
        } else {
            same = 0;
            last = now;
        }
        same >= 5
    });
    last
}

#[test]
fn fifty_sshd_restarts_each_recover_without_growing_fds_or_rss() {
    const CYCLES: usize = 50;
    const WARM_UP: usize = 5;
    let dir = test_dir();
    let mut sshd = Sshd::start();
    let echo = EchoServer::start();
    let mut spec = TunnelSpec::new("t", &sshd, sshd.port(), echo.port());
    // The cap only sets how long each cycle waits before its reconnect (a connection that
    // lasted under 30 s does not reset the backoff, so every cycle waits about the cap).
    spec.backoff_max = "200ms";
    let port = spec.forward_port;
    let config = config_file(dir.path(), &[&spec]);
    drop(spec);
    let mut tunneld = run_binary(&config);
    tunneld.expect_log("tunnel up", STATE_TIMEOUT);
    let pid = tunneld.pid();
    let payload = random_bytes(32 * 1024, 6);
    assert_eq!(try_echo(port, &payload, STATE_TIMEOUT).unwrap(), payload);
    let start_fds = settled_fd_count(pid);
    let start_rss = rss_kib(pid);
    eprintln!("[50 cycles] before: {start_fds} fds, RSS {start_rss} KiB");

    let mut fds = Vec::with_capacity(CYCLES);
    let mut rss = Vec::with_capacity(CYCLES);
    let mut recoveries = Vec::with_capacity(CYCLES);
    let mut retries_total = 0;
    let began = Instant::now();
    for cycle in 1..=CYCLES {
        let downs = tunneld.count_in_logs("tunnel down");
        let ups = tunneld.count_in_logs("tunnel up");
        sshd.kill();
        assert!(
            tunneld.wait_for_log_count("tunnel down", downs + 1, STATE_TIMEOUT),
            "cycle {cycle}: the kill went unnoticed"
        );
        sshd.restart();
        let restarted = Instant::now();
        // Every cycle recovers: a round trip through the forward works again. A client that
        // arrives while the tunnel reconnects waits for it, so one attempt should do; retry
        // anyway (and count), so that a failure here is about recovery, not about waiting.
        let deadline = restarted + RECOVER_BOUND;
        let mut retries = 0;
        loop {
            match try_echo(port, &payload, STATE_TIMEOUT) {
                Ok(back) if back == payload => break,
                other => {
                    retries += 1;
                    assert!(
                        Instant::now() < deadline,
                        "cycle {cycle}: no round trip within {RECOVER_BOUND:?} of the restart (last: {:?})\n{}",
                        other.map(|b| b.len()),
                        tunneld.logs()
                    );
                }
            }
        }
        recoveries.push(restarted.elapsed());
        retries_total += retries;
        // (The line is logged just after the connection is handed to the listeners: the round
        // trip may beat it.)
        assert!(
            tunneld.wait_for_log_count("tunnel up", ups + 1, STATE_TIMEOUT),
            "cycle {cycle}: the round trip went through without a new connection?"
        );
        fds.push(settled_fd_count(pid));
        rss.push(rss_kib(pid));
        assert!(tunneld.is_running(), "tunneld exited in cycle {cycle}");
    }
    let took = began.elapsed();

    let worst = recoveries.iter().max().copied().unwrap_or_default();
    let mean = recoveries.iter().sum::<Duration>() / CYCLES as u32;
    let mut sorted = recoveries.clone();
    sorted.sort();
    let median = sorted[CYCLES / 2];
    eprintln!(
        "[50 cycles] {CYCLES} kill/restart cycles in {:.1} s; recovery after restart (round trip done): mean {:.3} s, median {:.3} s, worst {:.3} s; {retries_total} round trips had to be retried",
        secs(took),
        secs(mean),
        secs(median),
        secs(worst)
    );
    eprintln!("[50 cycles] fds after each cycle: {fds:?}");
    eprintln!("[50 cycles] RSS KiB after each cycle: {rss:?}");
    let base_fds = fds[WARM_UP - 1];
    let base_rss = rss[WARM_UP - 1];
    let max_fds = fds[WARM_UP..].iter().max().copied().unwrap_or_default();
    let last_rss = rss[CYCLES - 1];
    let max_rss = rss[WARM_UP..].iter().max().copied().unwrap_or_default();
    eprintln!(
        "[50 cycles] fds: before {start_fds}, after cycle {WARM_UP} {base_fds}, max after {max_fds}, last {}; RSS KiB: before {start_rss}, after cycle {WARM_UP} {base_rss}, max after {max_rss}, last {last_rss} (growth {} KiB)",
        fds[CYCLES - 1],
        i64::try_from(last_rss).unwrap() - i64::try_from(base_rss).unwrap()
    );
    assert_eq!(
        retries_total, 0,
        "a client was turned away during a reconnect"
    );
    assert!(
        max_fds <= base_fds + 2,
        "open fds grow across reconnects: {base_fds} after cycle {WARM_UP}, up to {max_fds}: {fds:?}"
    );
    assert!(
        last_rss <= base_rss + 2048,
        "RSS grows across reconnects: {base_rss} KiB after cycle {WARM_UP}, {last_rss} KiB after {CYCLES}: {rss:?}"
    );

    tunneld.signal(Signal::SIGTERM);
    let status = tunneld
        .wait_exit(Duration::from_secs(5))
        .expect("tunneld stops on SIGTERM");
    assert!(status.success(), "{status:?}");
}
