//! sshd down for longer than `backoff_max`, at start-up (the tunnel was never up) and after
//! the tunnel was up: refused connects cost the server nothing, so they are retried under
//! `backoff_max_network`, and the tunnel is back within about that of sshd's return, however
//! long the outage (docs/resilience.md has the same with the defaults, measured by
//! bench/outage-recovery.sh).

use std::time::{Duration, Instant};

use harness::{EchoServer, Failure, Sshd, backing_off, is_backing_off};
use tokio::task::block_in_place;
use tunneld_ssh::FailureKind;

use crate::support::{InProcess, test_dir};
use crate::{STATE_TIMEOUT, TunnelSpec, config_file, round_trip, secs, start_up, wait_recovered};

/// The long cap, and the outage: longer than it, so that a backoff to the long cap would have
/// reached it.
const BACKOFF_MAX: Duration = Duration::from_secs(8);
const OUTAGE: Duration = Duration::from_secs(9);
/// The short cap under test.
const NETWORK_CAP: Duration = Duration::from_millis(500);
/// Back within this of sshd's return: the cap plus a handshake, many times over for a loaded
/// machine, and still half the long cap.
const BACK_BOUND: Duration = Duration::from_secs(4);

fn spec<'a>(sshd: &'a Sshd, echo: &EchoServer) -> TunnelSpec<'a> {
    let mut spec = TunnelSpec::new("t", sshd, sshd.port(), echo.port());
    spec.backoff_max = "8s";
    spec.backoff_max_network = Some("500ms");
    spec
}

/// Watches tunnel `t` back off until [`OUTAGE`] after `since`: every wait must be under the
/// short cap. Returns how many attempts failed and the longest wait.
async fn ride_out_the_outage(tunneld: &InProcess, since: Instant) -> (u32, Duration) {
    let mut state = tunneld.supervisor.state("t").unwrap();
    let deadline = tokio::time::Instant::from_std(since + OUTAGE);
    let (mut failed, mut longest) = (0, Duration::ZERO);
    loop {
        let now = state.borrow_and_update().clone();
        if is_backing_off(&now) {
            let Failure {
                reason,
                kind,
                permanent,
                retry_in,
                failures,
            } = backing_off(&now);
            if failures > failed {
                assert_eq!(kind, FailureKind::Network, "{reason}");
                assert!(!permanent, "{reason}");
                assert!(
                    retry_in <= NETWORK_CAP,
                    "a refused connect must be retried within backoff_max_network, not after \
                     {retry_in:?}: {reason}"
                );
                failed = failures;
                longest = longest.max(retry_in);
            }
        }
        if tokio::time::timeout_at(deadline, state.changed())
            .await
            .is_err()
        {
            return (failed, longest);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sshd_down_at_start_up_for_longer_than_backoff_max_the_tunnel_is_back_within_the_short_cap()
{
    harness::init_tracing();
    let dir = test_dir();
    let mut sshd = Sshd::start();
    let echo = EchoServer::start();
    let spec = spec(&sshd, &echo);
    let port = spec.forward_port;
    let config = config_file(dir.path(), &[&spec]);
    drop(spec);
    block_in_place(|| sshd.kill());

    let down_at = Instant::now();
    let tunneld = InProcess::start(&config);
    tunneld.wait_for("t", STATE_TIMEOUT, is_backing_off).await;
    let (failed, longest) = ride_out_the_outage(&tunneld, down_at).await;
    block_in_place(|| sshd.restart());
    let back_at = Instant::now();
    tunneld.wait_up("t").await;
    let back = back_at.elapsed();
    round_trip(port, 64 * 1024, 3).await;
    eprintln!(
        "[outage at start-up] sshd down {:.1} s: {failed} refused attempts, longest wait {:.3} s \
         (cap {:.1} s, backoff_max {:.0} s); up {:.3} s after sshd returned",
        secs(back_at - down_at),
        secs(longest),
        secs(NETWORK_CAP),
        secs(BACKOFF_MAX),
        secs(back)
    );
    // About one attempt per short cap: not one per long cap.
    assert!(failed >= 8, "only {failed} attempts in {OUTAGE:?}");
    assert!(back < BACK_BOUND, "back {back:?} after sshd returned");
    tunneld.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sshd_down_after_the_tunnel_was_up_for_longer_than_backoff_max_it_is_back_within_the_short_cap()
 {
    harness::init_tracing();
    let dir = test_dir();
    let mut sshd = Sshd::start();
    let echo = EchoServer::start();
    let spec = spec(&sshd, &echo);
    let port = spec.forward_port;
    let (tunneld, first) = start_up(dir.path(), &spec).await;
    drop(spec);

    let down_at = Instant::now();
    block_in_place(|| sshd.kill());
    let (failed, longest) = ride_out_the_outage(&tunneld, down_at).await;
    block_in_place(|| sshd.restart());
    let back_at = Instant::now();
    let (second, back) = wait_recovered(&tunneld, port, first, back_at).await;
    assert_ne!(first, second);
    eprintln!(
        "[outage after up] sshd down {:.1} s: {failed} failed attempts, longest wait {:.3} s \
         (cap {:.1} s, backoff_max {:.0} s); up {:.3} s after sshd returned",
        secs(back_at - down_at),
        secs(longest),
        secs(NETWORK_CAP),
        secs(BACKOFF_MAX),
        secs(back)
    );
    assert!(failed >= 8, "only {failed} attempts in {OUTAGE:?}");
    assert!(back < BACK_BOUND, "back {back:?} after sshd returned");
    tunneld.stop().await;
}
