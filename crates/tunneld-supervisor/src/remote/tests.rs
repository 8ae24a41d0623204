//! The busy-port retry loop on paused time, against a server that answers as each test scripts
//! it: seconds of retrying take no time at all.

use std::collections::VecDeque;
use std::sync::Mutex;

use tokio_util::sync::CancellationToken;
use tunneld_config::BindAddress;

use super::*;
use crate::fixtures::up;

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
    Arc::new(RemoteForward {
        bind: BindAddress::Default,
        port: 8080,
        host: "localhost".to_owned(),
        host_port: 80,
        spec: "8080:localhost:80".to_owned(),
    })
}

fn remote_state(state: &watch::Sender<TunnelState>) -> RemoteState {
    match &*state.borrow() {
        TunnelState::Up { remote, .. } => remote[0].state.clone(),
        other => panic!("not up: {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_port_still_held_is_asked_for_again_every_1_2_to_1_5_s_until_granted() {
    let server = Server::new([busy(), busy(), busy(), Ok(8080)]);
    let (state, mut watcher) = watch::channel(up(vec![RemoteState::Requesting]));
    let start = Instant::now();
    let keeper = tokio::spawn(keep(server.clone(), forward(), 0, state.clone()));

    // Every state the forward goes through, as published.
    let mut seen = Vec::new();
    while watcher.changed().await.is_ok() {
        let TunnelState::Up { remote, .. } = &*watcher.borrow_and_update() else {
            panic!("not up");
        };
        seen.push(remote[0].state.clone());
        if matches!(remote[0].state, RemoteState::Listening { .. }) {
            break;
        }
    }
    assert!(keeper.await.unwrap().is_ok());

    let waiting = RemoteState::Waiting {
        reason: "remote port 8080 still held by a previous session on the server (or in use \
                 there); retrying"
            .to_owned(),
    };
    // Waiting is published once, not again on each refusal.
    assert_eq!(seen, [waiting, RemoteState::Listening { port: 8080 }]);
    assert_eq!(remote_state(&state), RemoteState::Listening { port: 8080 });

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

#[tokio::test(start_paused = true)]
async fn a_refusal_by_policy_fails_the_tunnel_at_once_and_a_closed_connection_does_not() {
    let policy = RemoteForwardError::Policy {
        server: "db.example".to_owned(),
        spec: "8080:localhost:80".to_owned(),
    };
    let server = Server::new([Err(policy)]);
    let (state, _watcher) = watch::channel(up(vec![RemoteState::Requesting]));
    let start = Instant::now();
    let refused = keep(server.clone(), forward(), 0, state.clone()).await;
    let err = refused.expect_err("a policy refusal fails the tunnel");
    assert!(
        matches!(err, TunnelError::Remote(RemoteForwardError::Policy { .. })),
        "{err:?}"
    );
    assert!(err.is_permanent(), "{err}");
    assert_eq!(server.asked().len(), 1);
    assert_eq!(remote_state(&state), RemoteState::Requesting);

    // The connection went away under the request: the tunnel notices that by itself.
    let server = Server::new([Err(RemoteForwardError::Closed)]);
    assert!(
        keep(server.clone(), forward(), 0, state.clone())
            .await
            .is_ok()
    );
    assert_eq!(server.asked().len(), 1);
    assert_eq!(remote_state(&state), RemoteState::Requesting);
    assert_eq!(Instant::now(), start, "neither waited");
}

#[tokio::test(start_paused = true)]
async fn a_connection_that_ends_while_waiting_stops_the_retries() {
    let server = Server::new([]);
    let (state, _watcher) = watch::channel(up(vec![RemoteState::Requesting]));
    let start = Instant::now();
    let keeper = tokio::spawn(keep(server.clone(), forward(), 0, state.clone()));
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.gone.cancel();
    assert!(keeper.await.unwrap().is_ok());
    assert_eq!(Instant::now() - start, Duration::from_millis(500));
    assert_eq!(server.asked(), [start]);
    assert!(matches!(remote_state(&state), RemoteState::Waiting { .. }));
}
