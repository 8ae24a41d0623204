//! The delay rules, without a clock: by cost, under each cap, and after drops.

use tunneld_ssh::{Lookup, Peer, Stage};

use super::*;

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// The defaults: 1 s, 60 s, and 5 s before SSH.
fn defaults() -> Backoff {
    Backoff::new(secs(1.0), secs(60.0), secs(5.0))
}

fn delays(b: &mut Backoff, cost: Cost, n: usize) -> Vec<f64> {
    (0..n).map(|_| b.delay(cost, 0.0).as_secs_f64()).collect()
}

#[test]
fn doubles_from_min_to_max_without_jitter() {
    let mut b = defaults();
    assert_eq!(
        delays(&mut b, Cost::Server, 8),
        vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 48.0, 48.0]
    );
}

#[test]
fn failures_before_ssh_double_up_to_the_short_cap_only() {
    let mut b = defaults();
    // 5 s is the cap: 80% of it without jitter, and never above it with any.
    assert_eq!(
        delays(&mut b, Cost::Network, 5),
        vec![1.0, 2.0, 4.0, 4.0, 4.0]
    );
    for unit in [0.0, 0.5, 1.0] {
        let d = b.delay(Cost::Network, unit);
        assert!(d >= secs(4.0) && d <= secs(5.0), "{d:?}");
    }
    // However long the outage: the wait stays under the short cap.
    for _ in 0..10_000 {
        assert!(b.delay(Cost::Network, jitter_unit()) <= secs(5.0));
    }
    // The two kinds of failure keep their own pace: a handshake failure starts from the min.
    assert_eq!(b.delay(Cost::Server, 0.0), secs(1.0));
    assert_eq!(b.delay(Cost::Network, 0.0), secs(4.0));
}

#[test]
fn unanswered_attempts_retry_after_about_a_second_without_growing() {
    let mut b = defaults();
    for _ in 0..10 {
        let d = b.delay(Cost::Unanswered, jitter_unit());
        assert!(d >= secs(0.8) && d <= secs(1.0), "{d:?}");
    }
    assert_eq!(b.delay(Cost::Network, 0.0), secs(1.0), "untouched");
    // Never above the short cap.
    let mut quick = Backoff::new(secs(0.1), secs(0.5), secs(0.2));
    assert_eq!(quick.delay(Cost::Unanswered, 1.0), secs(0.2));
}

#[test]
fn cap_holds_after_jitter() {
    for unit in [0.0, 0.3, 0.999, 1.0] {
        let mut b = defaults();
        for cost in [
            Cost::Server,
            Cost::Network,
            Cost::Permanent,
            Cost::Unanswered,
        ] {
            for _ in 0..20 {
                let d = b.delay(cost, unit);
                assert!(d <= secs(60.0), "{d:?} with unit {unit}");
            }
        }
    }
}

#[test]
fn jitter_spreads_below_the_cap() {
    let mut low = defaults();
    let mut high = defaults();
    low.delay(Cost::Server, 0.0);
    high.delay(Cost::Server, 1.0);
    assert_eq!(low.delay(Cost::Server, 0.0), secs(2.0));
    assert_eq!(high.delay(Cost::Server, 1.0), secs(3.0));
}

#[test]
fn permanent_failures_wait_at_the_cap_at_once() {
    let mut b = Backoff::new(secs(1.0), secs(40.0), secs(5.0));
    assert_eq!(b.delay(Cost::Permanent, 1.0), secs(40.0));
    assert_eq!(b.delay(Cost::Permanent, 0.0), secs(32.0));
    // and a failure in SSH after it stays at the cap until a connection is up again
    assert!(b.delay(Cost::Server, 0.0) >= secs(32.0));
    // while one before SSH keeps its short cap: it costs the server nothing
    assert!(b.delay(Cost::Network, 1.0) <= secs(5.0));
}

#[test]
fn the_first_drop_retries_at_the_minimum_however_short_the_connection() {
    let mut b = defaults();
    // A long outage first: every cap reached.
    delays(&mut b, Cost::Server, 10);
    delays(&mut b, Cost::Network, 10);
    b.connection_lasted(secs(5.0));
    assert_eq!(b.delay(Cost::Dropped, 0.0), secs(1.0));
    // The reconnect after it starts from the minimum too.
    assert_eq!(b.delay(Cost::Network, 0.0), secs(1.0));
    assert_eq!(b.delay(Cost::Server, 0.0), secs(1.0));
}

#[test]
fn sessions_that_keep_dying_soon_after_login_back_off_to_the_cap() {
    let mut b = defaults();
    let mut waits = Vec::new();
    for _ in 0..9 {
        b.connection_lasted(secs(2.0));
        waits.push(b.delay(Cost::Dropped, 0.0).as_secs_f64());
    }
    assert_eq!(
        waits,
        vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 48.0, 48.0, 48.0]
    );
    // A connection that proves stable starts it over: its drop retries at the minimum.
    b.connection_lasted(STABLE_AFTER);
    assert_eq!(b.delay(Cost::Dropped, 0.0), secs(1.0));
    b.connection_lasted(secs(2.0));
    assert_eq!(b.delay(Cost::Dropped, 0.0), secs(2.0));
}

#[test]
fn what_a_failure_cost_follows_its_type() {
    let peer = || Peer::new("db", "db.example", 22);
    let refused = TunnelError::Connect {
        peer: peer(),
        attempts: vec![(
            std::net::SocketAddr::from(([192, 0, 2, 5], 22)),
            std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
        )],
    };
    let silent = TunnelError::Timeout {
        peer: peer(),
        stage: Stage::Connect,
        after: secs(10.0),
    };
    let handshake = TunnelError::Timeout {
        peer: peer(),
        stage: Stage::Handshake,
        after: secs(10.0),
    };
    let resolve = |lookup| TunnelError::Resolve {
        host: "db.example".to_owned(),
        lookup,
        source: std::io::Error::other("lookup"),
    };
    let auth = TunnelError::AuthRefused {
        user: "u".to_owned(),
        peer: peer(),
        tried: Vec::new(),
    };
    let lost = TunnelError::Dropped { peer: peer() };
    assert_eq!(Cost::of(&refused, false), Cost::Network);
    assert_eq!(Cost::of(&silent, false), Cost::Unanswered);
    assert_eq!(Cost::of(&handshake, false), Cost::Server);
    assert_eq!(Cost::of(&resolve(Lookup::NoAnswer), false), Cost::Network);
    // A name that does not exist waits like a configuration error.
    assert_eq!(
        Cost::of(&resolve(Lookup::NoSuchName), false),
        Cost::Permanent
    );
    assert_eq!(Cost::of(&auth, false), Cost::Permanent);
    assert_eq!(Cost::of(&lost, true), Cost::Dropped);
    assert_eq!(Cost::of(&auth, true), Cost::Permanent);
    // The backoff knows when a connection has just ended, once.
    let mut b = defaults();
    b.connection_lasted(secs(1.0));
    assert_eq!(b.next_delay(&lost, 0.0), (Cost::Dropped, secs(1.0)));
    assert_eq!(b.next_delay(&lost, 0.0).0, Cost::Server);
}

#[test]
fn caps_out_of_order_are_not_a_panic() {
    let mut b = Backoff::new(secs(5.0), secs(1.0), secs(0.5));
    assert_eq!(b.delay(Cost::Server, 0.5), secs(5.0));
    assert_eq!(b.delay(Cost::Permanent, 0.5), secs(5.0));
    assert_eq!(b.delay(Cost::Network, 0.5), secs(5.0));
    b.connection_lasted(secs(1.0));
    assert_eq!(b.delay(Cost::Dropped, 0.5), secs(5.0));
}

#[test]
fn jitter_below_stays_within_80_to_100_percent() {
    let max = secs(1.5);
    assert_eq!(jitter_below(max, 0.0), secs(1.2));
    assert_eq!(jitter_below(max, 1.0), max);
    assert_eq!(jitter_below(max, 0.5), secs(1.35));
    // Out of range or not a number: clamped, never a panic and never past the bounds.
    assert_eq!(jitter_below(max, -3.0), secs(1.2));
    assert_eq!(jitter_below(max, 7.0), max);
    assert_eq!(jitter_below(max, f64::NAN), secs(1.35));
    assert_eq!(jitter_below(max, f64::INFINITY), secs(1.35));
    assert_eq!(jitter_below(Duration::ZERO, 0.7), Duration::ZERO);
    for _ in 0..256 {
        let d = jitter_below(max, jitter_unit());
        assert!(d >= secs(1.2) && d <= max, "{d:?}");
    }
}

#[test]
fn jitter_unit_is_in_range_and_varies() {
    let samples: Vec<f64> = (0..64).map(|_| jitter_unit()).collect();
    assert!(samples.iter().all(|u| (0.0..=1.0).contains(u)));
    let first = samples.first().copied().unwrap_or_default();
    assert!(samples.iter().any(|u| (u - first).abs() > 1e-9));
}
