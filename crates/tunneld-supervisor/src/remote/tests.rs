//! The retry loops of a remote forward (a port still held, a refusal by policy) on paused time,
//! against a server that answers as each test scripts it: minutes of retrying take no time at
//! all.

use std::collections::VecDeque;
use std::sync::Mutex;

use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::fixtures::{self, negotiated, remote_forward};
use crate::state::TunnelState;

/// A server whose answers are scripted; once they run out, the port stays busy.
struct Server {
    answers: Mutex<VecDeque<Result<u32, RemoteForwardError>>>,
    /// When each request arrived.
    asked: Mutex<Vec<Instant>>,
    /// Cancelled when the connection ends.
    gone: CancellationToken,
}

impl Server {
    fn new(answers: impl IntoIterator<Item = Result<u32, RemoteForwardError>>) -> Arc<Self> {
        Arc::new(Server {
            answers: Mutex::new(answers.into_iter().collect()),
            asked: Mutex::new(Vec::new()),
            gone: CancellationToken::new(),
        })
    }

    fn asked(&self) -> Vec<Instant> {
        self.asked.lock().unwrap().clone()
    }
}

fn busy() -> Result<u32, RemoteForwardError> {
    Err(RemoteForwardError::PortBusy { port: 8080 })
}

impl Requests for Server {
    fn request_remote(
        &self,
        _forward: &Arc<RemoteForward>,
    ) -> impl Future<Output = Result<u32, RemoteForwardError>> + Send {
        self.asked.lock().unwrap().push(Instant::now());
        let answer = self
            .answers
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or_else(busy);
        std::future::ready(answer)
    }

    fn ended(&self) -> impl Future<Output = ()> + Send {
        self.gone.cancelled()
    }
}

fn forward() -> Arc<RemoteForward> {
    Arc::new(remote_forward())
}

/// A board for a tunnel whose one remote forward is `forward()`, connected.
fn board() -> (Arc<Board>, watch::Receiver<TunnelState>) {
    let (board, watcher) = fixtures::board(&fixtures::tunnel(&[], &[remote_forward()]));
    board.connected(1, "db.example".to_owned(), negotiated());
    (board, watcher)
}

fn remote_state(state: &watch::Receiver<TunnelState>) -> RemoteState {
    match &*state.borrow() {
        TunnelState::Up { remote, .. } | TunnelState::Degraded { remote, .. } => {
            remote[0].state.clone()
        }
        other => panic!("not connected: {other:?}"),
    }
}

/// A refusal by policy, as the port-0 probe tells it.
fn policy() -> RemoteForwardError {
    RemoteForwardError::Policy {
        server: "db.example".to_owned(),
        spec: "8080:localhost:80".to_owned(),
    }
}

const RETRY: OnRefusal = OnRefusal::RetryAfter(Duration::from_secs(20));

#[tokio::test(start_paused = true)]
async fn a_port_still_held_is_asked_for_again_every_1_2_to_1_5_s_until_granted() {
    let server = Server::new([busy(), busy(), busy(), Ok(8080)]);
    let (board, mut watcher) = board();
    watcher.borrow_and_update();
    let start = Instant::now();
    let keeper = tokio::spawn(keep(server.clone(), forward(), 0, board, RETRY));

    // Every state the forward goes through, as published.
    let mut seen = Vec::new();
    while watcher.changed().await.is_ok() {
        let state = watcher.borrow_and_update().clone();
        let (TunnelState::Up { remote, .. } | TunnelState::Degraded { remote, .. }) = &state else {
            panic!("not connected: {state:?}");
        };
        seen.push(remote[0].state.clone());
        if matches!(remote[0].state, RemoteState::Listening { .. }) {
            // Up only once the forward is.
            assert!(state.is_up(), "{state:?}");
            break;
        }
        assert!(state.is_degraded(), "{state:?}");
    }
    assert!(keeper.await.unwrap().is_ok());

    let waiting = RemoteState::Waiting {
        reason: "remote port 8080 still held by a previous session on the server (or in use \
                 there); retrying"
            .to_owned(),
    };
    // Waiting is published once, not again on each refusal.
    assert_eq!(seen, [waiting, RemoteState::Listening { port: 8080 }]);
    assert_eq!(
        remote_state(&watcher),
        RemoteState::Listening { port: 8080 }
    );

    let asked = server.asked();
    assert_eq!(asked.len(), 4);
    assert_eq!(asked[0], start, "the first request goes out at once");
    // Between 80% and 100% of RETRY_BUSY apart; a sleep ends on the next millisecond.
    for pair in asked.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= Duration::from_millis(1200) && gap <= Duration::from_millis(1501),
            "{gap:?}"
        );
    }
}

/// The tunnel's other forwards keep serving: the refused one is asked for again on the same
/// connection, at backoff_max (80-100 % of it), and the tunnel is up once it is granted.
#[tokio::test(start_paused = true)]
async fn a_refusal_by_policy_is_asked_again_at_backoff_max_on_the_same_connection() {
    let server = Server::new([Err(policy()), Err(policy()), Err(policy()), Ok(8080)]);
    let (board, watcher) = board();
    let start = Instant::now();
    let keeper = tokio::spawn(keep(server.clone(), forward(), 0, board, RETRY));
    tokio::task::yield_now().await;
    let refused = watcher.borrow().clone();
    assert!(refused.is_degraded(), "{refused:?}");
    assert_eq!(
        remote_state(&watcher),
        RemoteState::Refused {
            reason: "db.example refuses remote port forwarding of 8080:localhost:80 \
                     (AllowTcpForwarding / PermitListen / permitlisten)"
                .to_owned()
        }
    );
    assert_eq!(
        refused.to_string(),
        "degraded (db.example), 0/1 forwards up; db.example refuses remote port forwarding of \
         8080:localhost:80 (AllowTcpForwarding / PermitListen / permitlisten)"
    );

    assert!(keeper.await.unwrap().is_ok());
    assert_eq!(
        remote_state(&watcher),
        RemoteState::Listening { port: 8080 }
    );
    assert!(watcher.borrow().is_up());
    let asked = server.asked();
    assert_eq!(asked.len(), 4);
    assert_eq!(asked[0], start, "the first request goes out at once");
    for pair in asked.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= Duration::from_secs(16) && gap <= Duration::from_millis(20_001),
            "{gap:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn with_exit_on_forward_failure_a_refusal_by_policy_fails_the_tunnel_at_once() {
    let server = Server::new([Err(policy())]);
    let (board, watcher) = board();
    let start = Instant::now();
    let refused = keep(server.clone(), forward(), 0, board.clone(), OnRefusal::Fail).await;
    let err = refused.expect_err("a policy refusal fails the tunnel");
    assert!(
        matches!(err, TunnelError::Remote(RemoteForwardError::Policy { .. })),
        "{err:?}"
    );
    assert!(err.is_permanent(), "{err}");
    assert_eq!(server.asked().len(), 1);
    assert_eq!(remote_state(&watcher), RemoteState::Requesting);

    // The connection went away under the request: the tunnel notices that by itself.
    let server = Server::new([Err(RemoteForwardError::Closed)]);
    assert!(
        keep(server.clone(), forward(), 0, board, RETRY)
            .await
            .is_ok()
    );
    assert_eq!(server.asked().len(), 1);
    assert_eq!(remote_state(&watcher), RemoteState::Requesting);
    assert_eq!(Instant::now(), start, "neither waited");
}

#[tokio::test(start_paused = true)]
async fn a_connection_that_ends_while_waiting_stops_the_retries() {
    for first in [busy(), Err(policy())] {
        let server = Server::new([first]);
        let (board, watcher) = board();
        let start = Instant::now();
        let keeper = tokio::spawn(keep(server.clone(), forward(), 0, board, RETRY));
        tokio::time::sleep(Duration::from_millis(500)).await;
        server.gone.cancel();
        assert!(keeper.await.unwrap().is_ok());
        assert_eq!(Instant::now() - start, Duration::from_millis(500));
        assert_eq!(server.asked(), [start]);
        assert!(matches!(
            remote_state(&watcher),
            RemoteState::Waiting { .. } | RemoteState::Refused { .. }
        ));
    }
}
