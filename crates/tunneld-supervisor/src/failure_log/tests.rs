//! What is said about a run of failures, on a clock the test moves.

use super::*;

fn same(hop: Option<usize>, kind: FailureKind, cost: Cost) -> Sameness {
    Sameness { hop, kind, cost }
}

const REFUSED: Sameness = Sameness {
    hop: None,
    kind: FailureKind::Network,
    cost: Cost::Network,
};

#[test]
fn the_same_failure_is_said_once_then_once_a_minute() {
    let mut log = FailureLog::default();
    let start = Instant::now();
    let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let mut said = Vec::new();
    // One attempt every 5 s for 10 minutes.
    for i in 0..120u32 {
        let at = Duration::from_secs(5 * u64::from(i));
        match log.judge(REFUSED, start + at, wall + at) {
            Say::Again => assert!(log.quiet(), "after a repeat, the next attempt is quiet"),
            say => {
                assert!(!log.quiet());
                said.push((at.as_secs(), say));
            }
        }
    }
    let still = |attempts, _| Say::StillFailing {
        attempts,
        since: wall,
    };
    let expected: Vec<(u64, Say)> = std::iter::once((0, Say::New))
        .chain((1..10u32).map(|m| (60 * u64::from(m), still(12 * m + 1, m))))
        .collect();
    assert_eq!(said, expected);
}

#[test]
fn a_different_failure_is_said_at_once_and_recovery_starts_over() {
    let mut log = FailureLog::default();
    let now = Instant::now();
    let wall = SystemTime::now();
    assert_eq!(log.judge(REFUSED, now, wall), Say::New);
    assert_eq!(log.judge(REFUSED, now, wall), Say::Again);
    // Another kind, another hop, another cost: each is news.
    let changes = [
        same(None, FailureKind::Timeout, Cost::Unanswered),
        same(Some(2), FailureKind::Timeout, Cost::Unanswered),
        same(Some(2), FailureKind::Timeout, Cost::Server),
        same(Some(2), FailureKind::Auth, Cost::Permanent),
    ];
    for change in changes {
        assert_eq!(log.judge(change, now, wall), Say::New, "{change:?}");
    }
    // Back to the first: news again.
    assert_eq!(log.judge(REFUSED, now, wall), Say::New);
    assert_eq!(log.outage, Some((7, wall)));
    log.judge(REFUSED, now, wall);
    assert!(log.quiet());
    log.recovered();
    assert!(!log.quiet());
    assert_eq!(log.outage, None);
    // After an up, the same failure is news.
    assert_eq!(log.judge(REFUSED, now, wall), Say::New);
}
