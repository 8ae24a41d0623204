//! The health report, judged at chosen instants: every case is a moment in a tunnel's life, and
//! none of them waits for that moment to come.

use std::time::Duration;

use tokio::time::Instant;
use tunneld_ssh::FailureKind;

use super::*;
use crate::fixtures::{connected, up};
use crate::state::{ListenerState, RemoteState, TunnelState};

const GRACE: Duration = Duration::from_secs(10);
/// The attempt bound of every tunnel here (the sum of its hops' connect timeouts).
const BOUND: Duration = Duration::from_secs(5);

fn s(secs: u64) -> Duration {
    Duration::from_secs(secs)
}

fn connecting(attempt: u32) -> TunnelState {
    TunnelState::Connecting {
        attempt,
        peer: "bastion".to_owned(),
    }
}

fn backing_off(retry_at: Instant, permanent: bool) -> TunnelState {
    TunnelState::BackingOff {
        reason: "cannot connect to bastion:22: connection refused".to_owned(),
        kind: FailureKind::Network,
        permanent,
        retry_in: s(30),
        retry_at,
        failures: 1,
    }
}

const BUSY: &str =
    "remote port 8080 still held by a previous session on the server (or in use there); retrying";
const REFUSED: &str = "db.example refuses remote port forwarding of 8080:localhost:80 \
                       (AllowTcpForwarding / PermitListen / permitlisten)";
const IN_USE: &str = "listen 127.0.0.1:5432: Address already in use (os error 98)";

/// One moment: the state, how long ago the task entered it and last beat, and what the report
/// must say then.
struct Case {
    what: &'static str,
    state: TunnelState,
    entered_ago: u64,
    beat_ago: u64,
    ready: bool,
    wedged: Option<&'static str>,
    status: &'static str,
}

#[test]
fn each_moment_of_a_tunnel_is_judged_by_its_own_bound() {
    // Far enough from the clock's origin that "ago" never goes before it.
    let now = Instant::now() + s(100_000);
    let ago = |secs: u64| now - s(secs);
    let case = |what, state, entered_ago, beat_ago, ready, wedged, status| Case {
        what,
        state,
        entered_ago,
        beat_ago,
        ready,
        wedged,
        status,
    };
    let waiting = RemoteState::Waiting {
        reason: BUSY.to_owned(),
    };
    let refused = RemoteState::Refused {
        reason: REFUSED.to_owned(),
    };
    let listening = RemoteState::Listening { port: 8080 };
    let unbound = ListenerState::Retrying {
        reason: IN_USE.to_owned(),
    };
    let cases = [
        case("up and beating", up(), 500, 1, true, None, "1/1 tunnels up"),
        // Up: silent for more than a heartbeat plus the grace is wedged.
        case(
            "up, last beat at the limit",
            up(),
            500,
            11,
            true,
            None,
            "1/1 tunnels up",
        ),
        case(
            "up, heartbeat stale",
            up(),
            500,
            12,
            true,
            Some("t: no sign of life for 12s while up"),
            "1/1 tunnels up",
        ),
        case(
            "up, every forward up",
            connected(vec![listening.clone()], vec![ListenerState::Listening]),
            500,
            1,
            true,
            None,
            "1/1 tunnels up",
        ),
        // Connected, but not every forward is up: degraded, named with why, never "up".
        case(
            "connected, a remote forward not answered yet",
            connected(vec![RemoteState::Requesting], vec![]),
            1,
            1,
            false,
            None,
            "0/1 tunnels up, 1 degraded; t: degraded (db.example), 0/1 forwards up; remote \
             8080:localhost:80: no answer from the server yet",
        ),
        case(
            "degraded: a remote port still held by the old session",
            connected(vec![waiting], vec![]),
            300,
            1,
            true,
            None,
            "0/1 tunnels up, 1 degraded; t: degraded (db.example), 0/1 forwards up; remote port \
             8080 still held by a previous session on the server (or in use there); retrying",
        ),
        // A degraded tunnel has finished its first attempt and makes progress: ready, and
        // healthy however long it stays so, while it beats.
        case(
            "degraded: a remote forward refused by policy, the listener serving",
            connected(vec![refused.clone()], vec![ListenerState::Listening]),
            100_000,
            1,
            true,
            None,
            "0/1 tunnels up, 1 degraded; t: degraded (db.example), 1/2 forwards up; db.example \
             refuses remote port forwarding of 8080:localhost:80 (AllowTcpForwarding / \
             PermitListen / permitlisten)",
        ),
        case(
            "degraded: a listener that cannot be bound, the remote forward serving",
            connected(vec![listening], vec![unbound.clone()]),
            600,
            1,
            true,
            None,
            "0/1 tunnels up, 1 degraded; t: degraded (db.example), 1/2 forwards up; listen \
             127.0.0.1:5432: Address already in use (os error 98)",
        ),
        case(
            "degraded, heartbeat stale",
            connected(vec![refused], vec![unbound]),
            600,
            12,
            true,
            Some("t: no sign of life for 12s while degraded"),
            "0/1 tunnels up, 1 degraded; t: degraded (db.example), 0/2 forwards up; listen \
             127.0.0.1:5432: Address already in use (os error 98); db.example refuses remote \
             port forwarding of 8080:localhost:80 (AllowTcpForwarding / PermitListen / \
             permitlisten)",
        ),
        // A step is wedged only beyond its own bound plus the grace (5 s + 10 s here).
        case(
            "starting, within the bound",
            TunnelState::Starting,
            15,
            15,
            false,
            None,
            "0/1 tunnels up; t: starting",
        ),
        case(
            "starting, past the bound",
            TunnelState::Starting,
            16,
            16,
            false,
            Some("t: starting for 16s, beyond its 5s timeout"),
            "0/1 tunnels up; t: starting",
        ),
        case(
            "attempt within its bound",
            connecting(1),
            15,
            15,
            false,
            None,
            "0/1 tunnels up; t: connecting to bastion",
        ),
        case(
            "attempt within its bound, no heartbeat while not up",
            connecting(2),
            3,
            900,
            false,
            None,
            "0/1 tunnels up; t: connecting to bastion (attempt 2)",
        ),
        case(
            "attempt past its bound",
            connecting(3),
            16,
            16,
            false,
            Some("t: connecting to bastion (attempt 3) for 16s, beyond its 5s timeout"),
            "0/1 tunnels up; t: connecting to bastion (attempt 3)",
        ),
        case(
            "authentication past its bound",
            TunnelState::Authenticating {
                attempt: 1,
                peer: "db.example".to_owned(),
            },
            40,
            40,
            false,
            Some("t: authenticating to db.example for 40s, beyond its 5s timeout"),
            "0/1 tunnels up; t: authenticating to db.example",
        ),
        // Backing off is healthy however long the wait, until the retry is overdue.
        case(
            "backing off",
            backing_off(now + s(30), false),
            600,
            600,
            true,
            None,
            "0/1 tunnels up; t: cannot connect to bastion:22: connection refused; retry in 30s",
        ),
        case(
            "backing off from a failure that needs fixing",
            backing_off(now + s(29) + Duration::from_millis(1), true),
            600,
            600,
            true,
            None,
            "0/1 tunnels up; t: cannot connect to bastion:22: connection refused; will not \
             succeed until fixed, retry in 30s",
        ),
        case(
            "retry due, within the grace",
            backing_off(ago(10), false),
            600,
            600,
            true,
            None,
            "0/1 tunnels up; t: cannot connect to bastion:22: connection refused; retry in 0s",
        ),
        case(
            "retry overdue",
            backing_off(ago(11), false),
            600,
            600,
            true,
            Some("t: retry overdue by 11s"),
            "0/1 tunnels up; t: cannot connect to bastion:22: connection refused; retry in 0s",
        ),
        case(
            "stopped",
            TunnelState::Stopped,
            100_000,
            100_000,
            true,
            None,
            "0/1 tunnels up; t: stopped",
        ),
    ];
    for case in cases {
        let view = TunnelView {
            name: "t",
            state: case.state,
            marks: Marks {
                entered: ago(case.entered_ago),
                beat: ago(case.beat_ago),
            },
            attempt_bound: BOUND,
        };
        let report = report(&[view], GRACE, now);
        let what = case.what;
        assert_eq!(report.ready, case.ready, "{what}: ready");
        assert_eq!(
            report.wedged,
            case.wedged
                .map(str::to_owned)
                .into_iter()
                .collect::<Vec<_>>(),
            "{what}: wedged"
        );
        assert_eq!(report.healthy(), case.wedged.is_none(), "{what}: healthy");
        assert_eq!(report.status, case.status, "{what}: status");
    }
}

#[test]
fn one_wedged_tunnel_makes_the_daemon_unhealthy_and_the_status_names_the_others() {
    let now = Instant::now() + s(100_000);
    let marks = |entered_ago: u64| Marks {
        entered: now - s(entered_ago),
        beat: now - s(1),
    };
    let views = [
        TunnelView {
            name: "a",
            state: up(),
            marks: marks(500),
            attempt_bound: BOUND,
        },
        TunnelView {
            name: "ab",
            state: connected(
                vec![RemoteState::Refused {
                    reason: REFUSED.to_owned(),
                }],
                vec![ListenerState::Listening],
            ),
            marks: marks(500),
            attempt_bound: BOUND,
        },
        TunnelView {
            name: "b",
            state: connecting(1),
            marks: marks(20),
            attempt_bound: BOUND,
        },
        TunnelView {
            name: "c",
            state: backing_off(now + s(4), false),
            marks: marks(20),
            attempt_bound: BOUND,
        },
    ];
    let report = report(&views, GRACE, now);
    assert_eq!(
        report,
        Report {
            ready: false,
            status: "1/4 tunnels up, 1 degraded; ab: degraded (db.example), 1/2 forwards up; \
                     db.example refuses remote port forwarding of 8080:localhost:80 \
                     (AllowTcpForwarding / PermitListen / permitlisten); b: connecting to \
                     bastion; c: cannot connect to bastion:22: connection refused; retry in 4s"
                .to_owned(),
            wedged: vec!["b: connecting to bastion for 20s, beyond its 5s timeout".to_owned()],
        }
    );
    assert!(!report.healthy());
}

#[tokio::test(start_paused = true)]
async fn liveness_marks_entering_a_state_and_each_heartbeat() {
    let start = Instant::now();
    let liveness = Liveness::new();
    assert_eq!(
        liveness.read(),
        Marks {
            entered: start,
            beat: start
        }
    );
    tokio::time::advance(s(2)).await;
    liveness.beat();
    assert_eq!(
        liveness.read(),
        Marks {
            entered: start,
            beat: start + s(2)
        }
    );
    tokio::time::advance(s(3)).await;
    liveness.entered();
    assert_eq!(
        liveness.read(),
        Marks {
            entered: start + s(5),
            beat: start + s(5)
        }
    );
}
