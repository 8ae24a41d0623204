//! A tunnel's failure path on paused time: an attempt fails, the tunnel backs off by the kind of
//! failure, and the next attempt starts when the wait is over (not before, not much after).

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use tunneld_config::{Backoff, Config, Hop, HostKeyPolicy, Keepalive};
use tunneld_ssh::{FailureKind, Lookup, Peer, ProgressFn, Stage};

use super::*;
use crate::connector::Attempt;
use crate::health::DEFAULT_GRACE;
use crate::{StateName, Supervisor};

const MIN: Duration = Duration::from_secs(2);
const MAX: Duration = Duration::from_secs(20);
/// The short cap, for failures before SSH.
const NET: Duration = Duration::from_secs(5);

/// A connector whose attempts fail as scripted; once the script runs out, they hang.
struct Scripted {
    failures: Mutex<VecDeque<TunnelError>>,
    /// When each attempt started.
    attempts: Mutex<Vec<Instant>>,
}

impl Connector for Scripted {
    fn connect<'a>(&'a self, _tunnel: &'a Tunnel, _progress: &'a ProgressFn) -> Attempt<'a> {
        self.attempts.lock().unwrap().push(Instant::now());
        match self.failures.lock().unwrap().pop_front() {
            Some(err) => Box::pin(std::future::ready(Err(err))),
            None => Box::pin(std::future::pending()),
        }
    }
}

/// A tunnel without forwards (nothing to bind), whose server is never really dialled.
fn config() -> Config {
    let target = Hop {
        label: "db".to_owned(),
        hostname: "db.example".to_owned(),
        port: 22,
        user: "tunneld".to_owned(),
        identity_files: Vec::new(),
        certificate_files: Vec::new(),
        use_agent: true,
        known_hosts: PathBuf::from("/nonexistent/known_hosts"),
        global_known_hosts: PathBuf::from("/nonexistent/global_known_hosts"),
        host_key_policy: HostKeyPolicy::Strict,
        update_host_keys: true,
        connect_timeout: Duration::from_secs(10),
        compression: false,
        ciphers: Vec::new(),
        rekey_limit: tunneld_config::RekeyLimit::default(),
        proxy: None,
    };
    Config {
        path: PathBuf::from("/etc/tunneld/tunneld.toml"),
        daemon: tunneld_config::Daemon::default(),
        tunnels: vec![Tunnel {
            name: "t".to_owned(),
            target,
            jump: Vec::new(),
            local: Vec::new(),
            remote: Vec::new(),
            dynamic: Vec::new(),
            keepalive: Keepalive {
                interval: Some(Duration::from_secs(15)),
                max: 3,
            },
            backoff: Backoff {
                min: MIN,
                max: MAX,
                max_network: NET,
            },
            exit_on_forward_failure: false,
        }],
    }
}

fn peer() -> Peer {
    Peer::new("db.example", "db.example", 22)
}

/// The server dropped the connection: a network failure.
fn dropped() -> TunnelError {
    TunnelError::Dropped { peer: peer() }
}

/// The server refused every key: an authentication failure, which retrying cannot fix.
fn refused() -> TunnelError {
    TunnelError::AuthRefused {
        user: "tunnel".to_owned(),
        peer: peer(),
        tried: Vec::new(),
    }
}

/// What the tunnel published for its `failures`th failure in a row.
struct Published {
    reason: String,
    kind: FailureKind,
    permanent: bool,
    retry_in: Duration,
    retry_at: Instant,
}

async fn backing_off(state: &mut watch::Receiver<TunnelState>, failures: u32) -> Published {
    let wanted = failures;
    let published = state
        .wait_for(|s| matches!(s, TunnelState::BackingOff { failures, .. } if *failures == wanted))
        .await
        .unwrap();
    let TunnelState::BackingOff {
        reason,
        kind,
        permanent,
        retry_in,
        retry_at,
        ..
    } = published.clone()
    else {
        unreachable!("waited for BackingOff");
    };
    Published {
        reason,
        kind,
        permanent,
        retry_in,
        retry_at,
    }
}

#[tokio::test(start_paused = true)]
async fn a_failed_attempt_backs_off_by_its_kind_and_retries_when_the_wait_is_over() {
    let connector = Arc::new(Scripted {
        failures: Mutex::new(VecDeque::from([
            dropped(),
            dropped(),
            // Never reached the server: retried after about a second, backoff untouched.
            TunnelError::Timeout {
                peer: peer(),
                stage: Stage::Connect,
                after: Duration::from_secs(10),
            },
            // Retrying cannot help: straight to the cap.
            refused(),
        ])),
        attempts: Mutex::new(Vec::new()),
    });
    let shutdown = CancellationToken::new();
    let start = Instant::now();
    let supervisor = Supervisor::start_with(&config(), shutdown, connector.clone(), DEFAULT_GRACE);
    let mut state = supervisor.state("t").unwrap();

    // (failures in a row, kind, permanent, the bounds of the wait)
    let expected = [
        (1, FailureKind::Network, false, MIN, MIN.mul_f64(1.5)),
        (2, FailureKind::Network, false, MIN * 2, MIN * 3),
        (
            3,
            FailureKind::Timeout,
            false,
            Duration::from_millis(800),
            Duration::from_secs(1),
        ),
        (4, FailureKind::Auth, true, MAX.mul_f64(0.8), MAX),
    ];
    let mut retry_at = Vec::new();
    for (failures, kind, permanent, shortest, longest) in expected {
        let published = backing_off(&mut state, failures).await;
        let attempts = connector.attempts.lock().unwrap().clone();
        let index = usize::try_from(failures).unwrap() - 1;
        let failed_at = attempts[index];
        assert_eq!(published.kind, kind, "failure {failures}");
        assert_eq!(published.permanent, permanent, "failure {failures}");
        assert!(
            published.reason.contains("db.example:22"),
            "the reason names the server: {}",
            published.reason
        );
        assert!(
            published.retry_in >= shortest && published.retry_in <= longest,
            "failure {failures}: waits {:?}",
            published.retry_in
        );
        assert_eq!(published.retry_at, failed_at + published.retry_in);
        retry_at.push(published.retry_at);

        // Patiently backing off is healthy, and a failed first attempt counts as ready.
        let report = supervisor.report();
        assert!(report.healthy(), "{report:?}");
        assert!(report.ready, "{report:?}");
    }

    // The script is over: the fifth attempt hangs.
    state
        .wait_for(|s| matches!(s, TunnelState::Connecting { attempt: 5, .. }))
        .await
        .unwrap();
    let attempts = connector.attempts.lock().unwrap().clone();
    assert_eq!(attempts.len(), 5);
    assert_eq!(attempts[0], start, "the first attempt starts at once");
    // Each later attempt starts when the wait before it is over: not before, and no later than
    // the next millisecond (where a sleep ends).
    for (started, due) in attempts[1..].iter().zip(&retry_at) {
        assert!(
            *started >= *due && *started - *due <= Duration::from_millis(1),
            "started {:?} after the wait was over",
            started.saturating_duration_since(*due)
        );
    }
    assert!(supervisor.shutdown(Duration::from_secs(1)).await);
}

/// A local port that another program holds: by default the tunnel connects anyway (its other
/// forwards serve) and retries the listener; with exit_on_forward_failure it does not connect
/// until every listener is bound, like OpenSSH's ExitOnForwardFailure.
#[tokio::test(start_paused = true)]
async fn a_listener_that_cannot_be_bound_fails_the_tunnel_only_with_exit_on_forward_failure() {
    let squatter = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = squatter.local_addr().unwrap().port();
    for strict in [false, true] {
        let connector = Arc::new(Scripted {
            failures: Mutex::new(VecDeque::new()),
            attempts: Mutex::new(Vec::new()),
        });
        let mut config = config();
        config.tunnels[0].local = vec![crate::fixtures::local_forward(port)];
        config.tunnels[0].exit_on_forward_failure = strict;
        let start = Instant::now();
        let supervisor = Supervisor::start_with(
            &config,
            CancellationToken::new(),
            connector.clone(),
            DEFAULT_GRACE,
        );
        let mut state = supervisor.state("t").unwrap();
        if strict {
            let published = backing_off(&mut state, 1).await;
            assert_eq!(
                published.reason,
                format!("listen 127.0.0.1:{port}: Address already in use (os error 98)")
            );
            assert_eq!(published.kind, FailureKind::ForwardRefused);
            tokio::time::sleep(Duration::from_secs(60)).await;
            assert!(
                connector.attempts.lock().unwrap().is_empty(),
                "never connects"
            );
        } else {
            // The first attempt starts at once (and, scripted to hang, stays under way).
            state
                .wait_for(|s| matches!(s, TunnelState::Connecting { attempt: 1, .. }))
                .await
                .unwrap();
            assert_eq!(*connector.attempts.lock().unwrap(), [start]);
        }
        assert!(supervisor.shutdown(Duration::from_secs(1)).await);
    }
}

/// TCP refused: the server's host is up, its sshd is not.
fn connection_refused() -> TunnelError {
    TunnelError::Connect {
        peer: peer(),
        attempts: vec![(
            std::net::SocketAddr::from(([192, 0, 2, 5], 22)),
            std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
        )],
    }
}

#[tokio::test(start_paused = true)]
async fn an_outage_of_any_length_is_retried_under_the_short_cap_and_a_missing_name_at_the_long_one()
{
    // A long outage: sshd refuses for 60 attempts, far longer than the long cap.
    let mut script: VecDeque<TunnelError> = (0..60).map(|_| connection_refused()).collect();
    // Then DNS: no answer for now (the network's), and a name that does not exist (a fix).
    let resolve = |lookup| TunnelError::Resolve {
        host: "db.example".to_owned(),
        lookup,
        source: std::io::Error::other("lookup"),
    };
    script.push_back(resolve(Lookup::NoAnswer));
    script.push_back(resolve(Lookup::NoSuchName));
    script.push_back(resolve(Lookup::NoSuchName));
    let connector = Arc::new(Scripted {
        failures: Mutex::new(script),
        attempts: Mutex::new(Vec::new()),
    });
    let supervisor = Supervisor::start_with(
        &config(),
        CancellationToken::new(),
        connector.clone(),
        DEFAULT_GRACE,
    );
    let mut state = supervisor.state("t").unwrap();

    let mut waits = Vec::new();
    for failures in 1..=63 {
        let published = backing_off(&mut state, failures).await;
        waits.push((published.kind, published.permanent, published.retry_in));
    }
    let (refused, dns) = waits.split_at(60);
    // Doubling from the minimum (2 s, 4 s), then at the 5 s cap: 80-100% of it, never above.
    assert!(
        refused[0].2 >= MIN && refused[0].2 <= MIN.mul_f64(1.5),
        "{refused:?}"
    );
    for (kind, permanent, wait) in &refused[2..] {
        assert_eq!((*kind, *permanent), (FailureKind::Network, false));
        assert!(*wait >= NET.mul_f64(0.8) && *wait <= NET, "{wait:?}");
    }
    // Each attempt started when its wait was over: the server's return is noticed within NET.
    let attempts = connector.attempts.lock().unwrap().clone();
    for (pair, (_, _, wait)) in attempts.windows(2).zip(refused) {
        assert!(
            pair[1] - pair[0] >= *wait && pair[1] - pair[0] <= *wait + Duration::from_millis(1)
        );
    }
    let (no_answer, missing) = (dns[0], &dns[1..]);
    assert_eq!(no_answer.0, FailureKind::Network);
    assert!(no_answer.2 <= NET, "{no_answer:?}");
    for (kind, permanent, wait) in missing {
        assert_eq!((*kind, *permanent), (FailureKind::Config, true));
        assert!(*wait >= MAX.mul_f64(0.8) && *wait <= MAX, "{wait:?}");
    }
    assert!(supervisor.shutdown(Duration::from_secs(1)).await);
}

/// 200 tunnels to one server: their first attempts are spread (sshd's MaxStartups would drop
/// most of them if they all dialled at once), every one within a few seconds; a reload that
/// changes one of them dials it again at once.
#[tokio::test(start_paused = true)]
async fn tunnels_started_together_dial_one_at_a_time_within_a_few_seconds() {
    let connector = Arc::new(Scripted {
        failures: Mutex::new(VecDeque::new()),
        attempts: Mutex::new(Vec::new()),
    });
    let mut config = config();
    let one = config.tunnels.pop().unwrap();
    config.tunnels = (0..200)
        .map(|i| Tunnel {
            name: format!("t{i:03}"),
            ..one.clone()
        })
        .collect();
    let start = Instant::now();
    let mut supervisor = Supervisor::start_with(
        &config,
        CancellationToken::new(),
        connector.clone(),
        DEFAULT_GRACE,
    );
    tokio::time::sleep(crate::startup::SPREAD_MAX + Duration::from_millis(1)).await;
    let attempts = connector.attempts.lock().unwrap().clone();
    assert_eq!(attempts.len(), 200, "every tunnel has dialled");
    assert_eq!(attempts[0], start, "the first at once");
    for pair in attempts.windows(2) {
        assert!(
            pair[1] - pair[0] >= crate::startup::SPACING,
            "{:?} apart",
            pair[1] - pair[0]
        );
    }
    assert!(attempts[199] - start <= crate::startup::SPREAD_MAX);
    // Still within its attempt: patiently waiting for its turn is not wedged.
    assert!(supervisor.report().healthy());

    config.tunnels[7].keepalive.max = 4;
    let reloaded = Instant::now();
    let applied = supervisor.apply(&config).await;
    assert_eq!(applied.restarted, vec!["t007".to_owned()]);
    assert_eq!(applied.unchanged.len(), 199);
    assert!(applied.added.is_empty() && applied.removed.is_empty());
    tokio::time::sleep(Duration::from_millis(1)).await;
    let attempts = connector.attempts.lock().unwrap().clone();
    assert_eq!(attempts.len(), 201);
    assert_eq!(
        attempts[200], reloaded,
        "a reload of one tunnel dials it at once"
    );
    assert!(supervisor.shutdown(Duration::from_secs(1)).await);
}

/// The operator's `reconnect` cuts a backoff short; every failure is counted by its class, and
/// the last one is kept with its time; an unknown name is refused and nothing is reconnected.
#[tokio::test(start_paused = true)]
async fn reconnect_retries_a_backing_off_tunnel_at_once_and_failures_are_counted() {
    let connector = Arc::new(Scripted {
        failures: Mutex::new(VecDeque::from([dropped(), dropped(), refused()])),
        attempts: Mutex::new(Vec::new()),
    });
    let supervisor = Supervisor::start_with(
        &config(),
        CancellationToken::new(),
        connector.clone(),
        DEFAULT_GRACE,
    );
    let mut state = supervisor.state("t").unwrap();
    backing_off(&mut state, 1).await;
    let first = supervisor.snapshot().tunnels[0].clone();
    assert_eq!(first.state, StateName::BackingOff);
    assert!(first.retry_in.is_some_and(|left| left >= MIN));

    let unknown = supervisor.reconnect(&["t".to_owned(), "nope".to_owned()]);
    assert_eq!(unknown.unwrap_err().unknown, vec!["nope".to_owned()]);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        connector.attempts.lock().unwrap().len(),
        1,
        "nothing was reconnected"
    );

    let asked = Instant::now();
    assert_eq!(supervisor.reconnect(&[]), Ok(vec!["t".to_owned()]));
    backing_off(&mut state, 2).await;
    assert_eq!(
        connector.attempts.lock().unwrap()[1],
        asked,
        "retried at once"
    );
    supervisor.reconnect(&["t".to_owned()]).unwrap();
    backing_off(&mut state, 3).await;

    let snapshot = supervisor.snapshot().tunnels[0].clone();
    assert_eq!(
        snapshot.reconnects,
        vec![(FailureKind::Network, 2), (FailureKind::Auth, 1)]
    );
    assert_eq!(snapshot.reconnects_total(), 3);
    let last = snapshot.last_error.expect("the last failure");
    assert_eq!(last.kind, FailureKind::Auth);
    assert_eq!(last.message, refused().to_string());
    assert_eq!(snapshot.last_connect, None);
    assert!(supervisor.shutdown(Duration::from_secs(1)).await);
}
