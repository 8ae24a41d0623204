//! Retrying a listener that cannot be bound, on paused time: the pause by cause, and the tunnel
//! becoming up (on the same connection) once the port is bound.

use std::collections::VecDeque;
use std::io;
use std::sync::Mutex;

use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tunneld_ssh::forward::PipeLimits;

use super::*;
use crate::fixtures::{self, local_forward, negotiated};
use crate::state::TunnelState;

const MAX: Duration = Duration::from_secs(20);

fn listen_error(errno: i32) -> TunnelError {
    TunnelError::Listen {
        listen: "127.0.0.1:5432".to_owned(),
        source: io::Error::from_raw_os_error(errno),
    }
}

// Linux's errno values (tunneld runs on Linux only).
const EACCES: i32 = 13;
const EADDRINUSE: i32 = 98;
const EADDRNOTAVAIL: i32 = 99;

#[test]
fn a_port_in_use_is_retried_soon_and_a_permanent_cause_at_backoff_max() {
    for unit in [0.0, 0.5, 1.0] {
        for errno in [EADDRINUSE, EADDRNOTAVAIL] {
            let pause = pause_after(&listen_error(errno), MAX, unit);
            assert!(
                pause >= Duration::from_millis(1200) && pause <= Duration::from_millis(1500),
                "errno {errno}: {pause:?}"
            );
        }
        let pause = pause_after(&listen_error(EACCES), MAX, unit);
        assert!(pause >= MAX.mul_f64(0.8) && pause <= MAX, "{pause:?}");
        // Anything else (a bind address name that does not resolve, say) needs a fix too.
        let unresolved = TunnelError::Listen {
            listen: "nowhere.invalid:5432".to_owned(),
            source: io::Error::other("failed to lookup address information"),
        };
        let pause = pause_after(&unresolved, MAX, unit);
        assert!(pause >= MAX.mul_f64(0.8) && pause <= MAX, "{pause:?}");
    }
    // Never longer than backoff_max, even for a port in use.
    let short = Duration::from_secs(1);
    assert_eq!(pause_after(&listen_error(EADDRINUSE), short, 1.0), short);
}

/// Binds as scripted (errno values), then for real on a port of the kernel's choosing.
struct Scripted {
    errors: Mutex<VecDeque<i32>>,
    /// When each bind was tried.
    tried: Mutex<Vec<Instant>>,
}

impl Binder for Scripted {
    fn bind(&self, _address: &ListenAddress) -> io::Result<Option<TcpListener>> {
        self.tried.lock().unwrap().push(Instant::now());
        if let Some(errno) = self.errors.lock().unwrap().pop_front() {
            return Err(io::Error::from_raw_os_error(errno));
        }
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        Ok(Some(TcpListener::from_std(listener).unwrap()))
    }
}

/// What a tunnel's listeners share, with no connection and nothing to forward to.
fn context(tracker: &TaskTracker, cancel: &CancellationToken) -> ForwardContext {
    let (_, connection) = watch::channel(None);
    ForwardContext {
        connection,
        wait_for_connection: Duration::from_secs(10),
        limits: PipeLimits::default(),
        tracker: tracker.clone(),
        cancel: cancel.clone(),
    }
}

fn listener_state(state: &TunnelState) -> ListenerState {
    match state {
        TunnelState::Up { listeners, .. } | TunnelState::Degraded { listeners, .. } => {
            listeners[0].state.clone()
        }
        other => panic!("not connected: {other:?}"),
    }
}

/// Waits until the state satisfies `pred`, and returns it with when that was.
async fn wait_for(
    watcher: &mut watch::Receiver<TunnelState>,
    pred: impl Fn(&TunnelState) -> bool,
) -> (TunnelState, Instant) {
    let state = watcher.wait_for(|s| pred(s)).await.unwrap().clone();
    (state, Instant::now())
}

#[tokio::test(start_paused = true)]
async fn a_squatted_port_is_bound_within_1_5_s_of_being_freed_without_reconnecting() {
    let squatter = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = squatter.local_addr().unwrap().port();
    let tunnel = fixtures::tunnel(&[local_forward(port)], &[]);
    let (board, mut watcher) = fixtures::board(&tunnel);
    let (tracker, cancel) = (TaskTracker::new(), CancellationToken::new());
    let ctx = context(&tracker, &cancel);

    bind_each(
        of(&tunnel, &TunnelCounters::new(&tunnel)),
        &board,
        &tracker,
        &ctx,
        MAX,
        Arc::new(Os),
    )
    .await;
    // The tunnel connects meanwhile, and says at once that it is degraded, and why.
    board.connected(7, "db.example".to_owned(), negotiated());
    let degraded = watcher.borrow_and_update().clone();
    assert!(degraded.is_degraded(), "{degraded:?}");
    let reason = format!("listen 127.0.0.1:{port}: Address already in use (os error 98)");
    assert_eq!(
        listener_state(&degraded),
        ListenerState::Retrying {
            reason: reason.clone()
        }
    );
    assert_eq!(
        degraded.to_string(),
        format!("degraded (db.example), 0/1 forwards up; {reason}")
    );

    // Still squatted after a while: still degraded, same connection.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(watcher.borrow().is_degraded());
    let freed = Instant::now();
    drop(squatter);
    let (up, at) = wait_for(&mut watcher, TunnelState::is_up).await;
    assert!(
        at - freed <= Duration::from_millis(1501),
        "{:?}",
        at - freed
    );
    assert_eq!(up.connection(), Some(7), "no reconnect");
    assert_eq!(listener_state(&up), ListenerState::Listening);
    // The port is ours now.
    let taken = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap_err();
    assert_eq!(taken.kind(), io::ErrorKind::AddrInUse);

    cancel.cancel();
    tracker.close();
    tracker.wait().await;
}

#[tokio::test(start_paused = true)]
async fn a_permanent_cause_is_retried_at_backoff_max() {
    let tunnel = fixtures::tunnel(&[local_forward(5432)], &[]);
    let (board, mut watcher) = fixtures::board(&tunnel);
    board.connected(7, "db.example".to_owned(), negotiated());
    let (tracker, cancel) = (TaskTracker::new(), CancellationToken::new());
    let ctx = context(&tracker, &cancel);
    let binder = Arc::new(Scripted {
        errors: Mutex::new(VecDeque::from([EACCES, EACCES, EACCES])),
        tried: Mutex::new(Vec::new()),
    });
    let start = Instant::now();

    bind_each(
        of(&tunnel, &TunnelCounters::new(&tunnel)),
        &board,
        &tracker,
        &ctx,
        MAX,
        binder.clone(),
    )
    .await;
    assert_eq!(
        listener_state(&watcher.borrow()),
        ListenerState::Retrying {
            reason: "listen 127.0.0.1:5432: Permission denied (os error 13)".to_owned()
        }
    );
    let (up, _) = wait_for(&mut watcher, TunnelState::is_up).await;
    assert_eq!(up.connection(), Some(7));

    let tried = binder.tried.lock().unwrap().clone();
    assert_eq!(tried.len(), 4);
    assert_eq!(tried[0], start, "the first bind is at once");
    for pair in tried.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= MAX.mul_f64(0.8) && gap <= MAX + Duration::from_millis(1),
            "{gap:?}"
        );
    }
    cancel.cancel();
    tracker.close();
    tracker.wait().await;
}

#[tokio::test(start_paused = true)]
async fn with_exit_on_forward_failure_one_listener_that_fails_binds_none() {
    let squatter = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = squatter.local_addr().unwrap().port();
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let free_port = free.local_addr().unwrap().port();
    drop(free);
    let tunnel = fixtures::tunnel(&[local_forward(free_port), local_forward(taken)], &[]);
    let (tracker, cancel) = (TaskTracker::new(), CancellationToken::new());
    let ctx = context(&tracker, &cancel);

    let err = bind_all(&of(&tunnel, &TunnelCounters::new(&tunnel)), &tracker, &ctx)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("listen 127.0.0.1:{taken}: Address already in use (os error 98)")
    );
    // The one that did bind was let go again.
    drop(std::net::TcpListener::bind(("127.0.0.1", free_port)).unwrap());
    tracker.close();
    tracker.wait().await;
}
