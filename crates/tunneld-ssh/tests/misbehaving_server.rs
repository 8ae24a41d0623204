//! tunneld's client against servers that misbehave in ways OpenSSH's sshd cannot be configured
//! to: a server that opens channels nobody asked for, that never finishes authentication, that
//! never answers a channel open, or that answers one long after the client gave up.
//!
//! The tests against the real sshd live elsewhere. Here the peer is a russh *server* written in
//! this file, because only a server of our own can be made to hang or to misbehave on purpose.
//! Everything runs on loopback (127.0.0.1, a port chosen by the kernel); the keys are made by
//! the real `ssh-keygen` in a temporary directory.
//!
//! The server's direct-tcpip handler does what the requested host name says: [`ECHO`] accepts
//! and echoes, [`REFUSE`] rejects, [`BLACK_HOLE`] keeps the request and never answers (the test
//! can answer it later).

// A failed unwrap is a failed test; `allow-unwrap-in-tests` does not reach the helper functions
// of an integration test crate.
#![allow(clippy::unwrap_used)]

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::keys::{PrivateKey, load_secret_key};
use russh::server::{
    self, Auth, ChannelOpenHandle, Msg, PublicKeyOffer, Session, VerifiedPublicKey,
};
use russh::{Channel, ChannelMsg, ChannelOpenFailure};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc};
use tokio::time::{Instant, timeout};
use tunneld_config::{Hop, HostKeyPolicy, IdentityFile, Keepalive};
use tunneld_ssh::known_hosts::HostKeyError;
use tunneld_ssh::{ChannelOpenError, Connection, Peer, Progress, Stage, TunnelError};

/// How long a step may take before the test calls it hung. Generous: the timeouts under test
/// are 1 s, and a loaded CI machine must not make the tests flaky.
const BOUND: Duration = Duration::from_secs(10);

/// The direct-tcpip target the server accepts and echoes.
const ECHO: &str = "echo.invalid";
/// The direct-tcpip target the server refuses (connect failed).
const REFUSE: &str = "refuse.invalid";
/// The direct-tcpip target the server never answers.
const BLACK_HOLE: &str = "black-hole.invalid";

/// What the server does with the client's public key.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Authentication {
    /// Accepts any key.
    Accept,
    /// Never answers.
    Hang,
}

/// What the server saw, shared between the test and the server's handlers.
#[derive(Default)]
struct Seen {
    /// Calls of any authentication handler.
    auth_calls: AtomicUsize,
    /// Signalled at each call of an authentication handler.
    auth_called: Notify,
    /// direct-tcpip opens to [`BLACK_HOLE`], still unanswered, with the server's side of them.
    unanswered: Mutex<Vec<(Channel<Msg>, ChannelOpenHandle)>>,
    /// Signalled when a request lands in `unanswered`.
    unanswered_arrived: Notify,
    /// Signalled when a server session ends.
    session_ended: Notify,
}

/// The misbehaving server's handler for one connection.
struct Misbehaving {
    authentication: Authentication,
    seen: Arc<Seen>,
}

impl Misbehaving {
    async fn authenticate(&self) -> Result<Auth, russh::Error> {
        self.seen.auth_calls.fetch_add(1, Ordering::SeqCst);
        self.seen.auth_called.notify_one();
        match self.authentication {
            Authentication::Accept => Ok(Auth::Accept),
            Authentication::Hang => std::future::pending().await,
        }
    }
}

impl server::Handler for Misbehaving {
    type Error = russh::Error;

    async fn auth_none(&mut self, _user: &str) -> Result<Auth, Self::Error> {
        self.seen.auth_calls.fetch_add(1, Ordering::SeqCst);
        self.seen.auth_called.notify_one();
        Ok(Auth::reject())
    }

    async fn auth_publickey_offered(
        &mut self,
        _user: &str,
        _offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        self.authenticate().await
    }

    async fn auth_publickey(
        &mut self,
        _user: &str,
        _key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        self.authenticate().await
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        channel: Channel<Msg>,
        host_to_connect: &str,
        _port_to_connect: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        match host_to_connect {
            ECHO => {
                reply.accept().await;
                tokio::spawn(async move {
                    let (mut from_client, mut to_client) = tokio::io::split(channel.into_stream());
                    let _ = tokio::io::copy(&mut from_client, &mut to_client).await;
                });
            }
            REFUSE => reply.reject(ChannelOpenFailure::ConnectFailed).await,
            BLACK_HOLE => {
                // Keep the reply: dropping it would refuse the channel.
                self.seen.unanswered.lock().unwrap().push((channel, reply));
                self.seen.unanswered_arrived.notify_one();
            }
            _ => {
                reply
                    .reject(ChannelOpenFailure::AdministrativelyProhibited)
                    .await
            }
        }
        Ok(())
    }
}

/// `ssh-keygen -t ed25519` into `dir/name` (no passphrase, mode 0600); returns the private key's
/// path.
fn keygen(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "", "-f"])
        .arg(&path)
        .status()
        .unwrap();
    assert!(status.success(), "ssh-keygen failed");
    path
}

/// The public half of `key` as a known_hosts key field: `ssh-ed25519 AAAA...`.
fn public_openssh(key: &PrivateKey) -> String {
    key.public_key().to_openssh().unwrap()
}

/// The originator address the client reports for its forwarded connections.
fn originator() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 50_000))
}

fn keepalive() -> Keepalive {
    Keepalive {
        interval: Some(Duration::from_secs(5)),
        max: 3,
    }
}

/// `Connection::establish` to `hop` alone (no jump hosts), bounded by [`BOUND`]; also returns the
/// progress it reported.
async fn establish(hop: &Hop) -> (Result<Connection, TunnelError>, Vec<Progress>) {
    let reports = Arc::new(Mutex::new(Vec::new()));
    let recorder = reports.clone();
    let progress = move |report: Progress| recorder.lock().unwrap().push(report);
    let keepalive = keepalive();
    let establishing = Connection::establish(hop, &[], &keepalive, &progress);
    let Ok(result) = timeout(BOUND, establishing).await else {
        panic!(
            "establish did not return within {BOUND:?} (connect_timeout {:?})",
            hop.connect_timeout
        );
    };
    let reports = reports.lock().unwrap().clone();
    (result, reports)
}

/// A misbehaving server listening on 127.0.0.1, with the client's key and known_hosts next to it.
struct TestServer {
    port: u16,
    dir: TempDir,
    host_key: PrivateKey,
    client_key: PathBuf,
    seen: Arc<Seen>,
    /// The handle of each server session, in the order the connections arrived.
    handles: mpsc::UnboundedReceiver<server::Handle>,
}

impl TestServer {
    async fn start(authentication: Authentication) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let host_key = load_secret_key(keygen(dir.path(), "host_key"), None).unwrap();
        let client_key = keygen(dir.path(), "client_key");
        let config = Arc::new(server::Config {
            keys: vec![host_key.clone()],
            auth_rejection_time: Duration::from_millis(10),
            inactivity_timeout: None,
            ..Default::default()
        });
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Seen::default());
        let (handles_tx, handles) = mpsc::unbounded_channel();

        let accepting = seen.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let handler = Misbehaving {
                    authentication,
                    seen: accepting.clone(),
                };
                let (config, handles_tx, seen) =
                    (config.clone(), handles_tx.clone(), accepting.clone());
                tokio::spawn(async move {
                    if let Ok(running) = server::run_stream(config, socket, handler).await {
                        let _ = handles_tx.send(running.handle());
                        let _ = running.await;
                    }
                    seen.session_ended.notify_one();
                });
            }
        });

        let server = TestServer {
            port,
            dir,
            host_key,
            client_key,
            seen,
            handles,
        };
        server.write_known_hosts(&public_openssh(&server.host_key));
        server
    }

    fn known_hosts(&self) -> PathBuf {
        self.dir.path().join("known_hosts")
    }

    /// Makes known_hosts say that the server's key is `key`.
    fn write_known_hosts(&self, key: &str) {
        let line = format!("[127.0.0.1]:{} {key}\n", self.port);
        std::fs::write(self.known_hosts(), line).unwrap();
    }

    fn hop(&self, connect_timeout: Duration) -> Hop {
        Hop {
            label: format!("tester@127.0.0.1:{}", self.port),
            hostname: "127.0.0.1".to_string(),
            port: self.port,
            user: "tester".to_string(),
            identity_files: vec![IdentityFile::Path(self.client_key.clone())],
            certificate_files: vec![],
            use_agent: false,
            known_hosts: self.known_hosts(),
            global_known_hosts: self.dir.path().join("global_known_hosts"),
            host_key_policy: HostKeyPolicy::Strict,
            update_host_keys: true,
            connect_timeout,
            compression: false,
            ciphers: vec![],
            rekey_limit: tunneld_config::RekeyLimit::default(),
            proxy: None,
        }
    }

    /// Connects tunneld's client to this server.
    async fn connect(&self, connect_timeout: Duration) -> Arc<Connection> {
        Arc::new(
            establish(&self.hop(connect_timeout))
                .await
                .0
                .expect("establish failed"),
        )
    }

    /// The server's handle of the next session that reached the SSH layer.
    async fn next_handle(&mut self) -> server::Handle {
        timeout(BOUND, self.handles.recv())
            .await
            .expect("no server session")
            .unwrap()
    }

    /// Takes the direct-tcpip requests the server has left unanswered, waiting for the first.
    async fn take_unanswered(&self) -> Vec<(Channel<Msg>, ChannelOpenHandle)> {
        timeout(BOUND, self.seen.unanswered_arrived.notified())
            .await
            .expect("the server never received the channel open");
        std::mem::take(&mut *self.seen.unanswered.lock().unwrap())
    }
}

/// Opens a channel from the server to the client and returns how the client answered.
async fn server_opens(
    what: &str,
    open: impl Future<Output = Result<Channel<Msg>, russh::Error>>,
) -> Result<(), russh::Error> {
    timeout(BOUND, open)
        .await
        .unwrap_or_else(|_| panic!("the client never answered the server's {what} channel open"))
        .map(drop)
}

/// Opens a direct-tcpip channel to [`ECHO`] through `connection` and checks that bytes come back.
async fn assert_echo_works(connection: &Arc<Connection>) {
    let channel = timeout(BOUND, connection.open_direct_tcpip(ECHO, 7, originator()))
        .await
        .expect("open_direct_tcpip did not return")
        .expect("the echo channel did not open");
    let mut stream = channel.into_stream();
    let message = b"still connected";
    stream.write_all(message).await.unwrap();
    let mut echoed = [0u8; 15];
    timeout(BOUND, stream.read_exact(&mut echoed))
        .await
        .expect("no echo")
        .unwrap();
    assert_eq!(&echoed, message);
}

/// A server may open channels to the client (forwarded-tcpip for a `tcpip-forward` the client
/// asked for, session, x11, agent...). tunneld never asks for any of them, so it must refuse
/// every one, and carry on.
#[tokio::test]
async fn channels_the_server_opens_unasked_are_refused() {
    let mut server = TestServer::start(Authentication::Accept).await;
    let connection = server.connect(Duration::from_secs(2)).await;
    let handle = server.next_handle().await;

    let answers = [
        (
            "forwarded-tcpip",
            server_opens(
                "forwarded-tcpip",
                handle.channel_open_forwarded_tcpip("0.0.0.0", 8080, "203.0.113.7", 40_000),
            )
            .await,
        ),
        (
            "forwarded-streamlocal",
            server_opens(
                "forwarded-streamlocal",
                handle.channel_open_forwarded_streamlocal("/run/never-requested.sock"),
            )
            .await,
        ),
        (
            "session",
            server_opens("session", handle.channel_open_session()).await,
        ),
        (
            "x11",
            server_opens("x11", handle.channel_open_x11("203.0.113.7", 6010)).await,
        ),
        (
            "auth-agent",
            server_opens("auth-agent", handle.channel_open_agent()).await,
        ),
        (
            "direct-tcpip",
            server_opens(
                "direct-tcpip",
                handle.channel_open_direct_tcpip("127.0.0.1", 22, "203.0.113.7", 40_000),
            )
            .await,
        ),
        (
            "direct-streamlocal",
            server_opens(
                "direct-streamlocal",
                handle.channel_open_direct_streamlocal("/run/docker.sock"),
            )
            .await,
        ),
    ];
    let wrong: Vec<String> = answers
        .iter()
        .filter(|(_, answer)| {
            !matches!(
                answer,
                Err(russh::Error::ChannelOpenFailure(
                    ChannelOpenFailure::AdministrativelyProhibited
                ))
            )
        })
        .map(|(what, answer)| format!("{what}: {answer:?}"))
        .collect();
    assert!(
        wrong.is_empty(),
        "channels the client did not refuse as administratively prohibited: {wrong:?}"
    );

    assert!(!connection.is_closed(), "refusing closed the connection");
    assert_echo_works(&connection).await;
}

/// A server that never answers the authentication request must not hold the connection attempt
/// forever: `connect_timeout` bounds authentication too.
#[tokio::test]
async fn authentication_has_a_timeout() {
    let server = TestServer::start(Authentication::Hang).await;
    let started = Instant::now();
    let (result, progress) = establish(&server.hop(Duration::from_secs(1))).await;
    let elapsed = started.elapsed();

    let Err(err) = result else {
        panic!("establish succeeded against a server that never answers authentication");
    };
    assert!(
        matches!(
            err,
            TunnelError::Timeout {
                stage: Stage::Authentication,
                after,
                ..
            } if after == Duration::from_secs(1)
        ),
        "expected a 1s timeout during authentication, got {err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "127.0.0.1:{}: timed out after 1s during authentication",
            server.port
        )
    );
    assert!(
        elapsed >= Duration::from_secs(1),
        "gave up after {elapsed:?}, before the timeout"
    );
    let authenticating = Progress::Authenticating {
        peer: Peer::of(&server.hop(Duration::from_secs(1))),
    };
    assert!(
        progress.contains(&authenticating),
        "the client never reported authenticating: {progress:?}"
    );
    // The timeout was the server's doing: its authentication handler was reached (and hangs).
    timeout(BOUND, server.seen.auth_called.notified())
        .await
        .expect("the server's authentication handler was never reached");
}

/// A server that never answers a channel open (sshd waiting on its own TCP connect) must not
/// hold the forwarded connection forever: `connect_timeout` bounds the open, and the rest of
/// the connection keeps working.
#[tokio::test]
async fn channel_open_has_a_timeout() {
    let server = TestServer::start(Authentication::Accept).await;
    let connection = server.connect(Duration::from_secs(1)).await;

    let started = Instant::now();
    let result = timeout(
        BOUND,
        connection.open_direct_tcpip(BLACK_HOLE, 80, originator()),
    )
    .await
    .expect("open_direct_tcpip hung although connect_timeout is 1s");
    let elapsed = started.elapsed();

    match result {
        Err(ChannelOpenError::Timeout { target, after, .. }) => {
            assert_eq!(target, format!("{BLACK_HOLE}:80"));
            assert_eq!(after, Duration::from_secs(1));
        }
        Err(other) => panic!("expected a timeout, got {other:?}"),
        Ok(_) => panic!("a channel the server never answered was opened"),
    }
    assert!(
        elapsed >= Duration::from_secs(1),
        "gave up after {elapsed:?}, before the timeout"
    );
    assert_eq!(
        server.take_unanswered().await.len(),
        1,
        "the server should have received exactly one open, and left it unanswered"
    );

    assert!(!connection.is_closed(), "the timeout closed the connection");
    assert_echo_works(&connection).await;
}

/// The other half of a channel open timeout: the server's answer may still come, after the
/// client gave up. The channel the server then opened (and, behind it, sshd's TCP connection to
/// the target) belongs to nobody; the client must close it rather than leave it open for as
/// long as the SSH connection lives.
#[tokio::test]
async fn a_channel_the_server_confirms_after_the_timeout_is_closed() {
    let server = TestServer::start(Authentication::Accept).await;
    let connection = server.connect(Duration::from_secs(1)).await;

    let result = timeout(
        BOUND,
        connection.open_direct_tcpip(BLACK_HOLE, 80, originator()),
    )
    .await
    .expect("open_direct_tcpip hung although connect_timeout is 1s");
    assert!(
        matches!(result, Err(ChannelOpenError::Timeout { .. })),
        "expected a timeout, got {result:?}"
    );

    let mut unanswered = server.take_unanswered().await;
    assert_eq!(unanswered.len(), 1);
    let (mut channel, reply) = unanswered.remove(0);
    // The target finally answered sshd: the server confirms the channel, late.
    reply.accept().await;

    let closed = timeout(Duration::from_secs(5), async {
        loop {
            match channel.wait().await {
                None | Some(ChannelMsg::Close) => break,
                Some(_) => {}
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "the client left open a channel it had given up on (confirmed after its timeout)"
    );
    assert!(!connection.is_closed(), "the SSH connection should live on");
}

/// A refused direct-tcpip is an error that says so, and the connection carries on.
#[tokio::test]
async fn a_refused_channel_open_is_a_clean_error() {
    let server = TestServer::start(Authentication::Accept).await;
    let connection = server.connect(Duration::from_secs(2)).await;

    let result = timeout(
        BOUND,
        connection.open_direct_tcpip(REFUSE, 5432, originator()),
    )
    .await
    .expect("open_direct_tcpip did not return");
    let err = match result {
        Err(err) => err,
        Ok(_) => panic!("the server refused the channel but it was opened"),
    };
    match &err {
        ChannelOpenError::Refused { target, reason, .. } => {
            assert_eq!(target, &format!("{REFUSE}:5432"));
            assert_eq!(reason, &ChannelOpenFailure::ConnectFailed);
        }
        other => panic!("expected Refused, got {other:?}"),
    }
    let message = err.to_string();
    assert!(
        message.contains("refused by the server") && message.contains("connect failed"),
        "unexpected message: {message}"
    );

    assert!(!connection.is_closed(), "the refusal closed the connection");
    assert_echo_works(&connection).await;
}

/// A changed host key stops the connection before the client authenticates: nothing (not even
/// the user name) is sent to a server that may be an impostor.
#[tokio::test]
async fn host_key_mismatch_stops_before_authentication() {
    let server = TestServer::start(Authentication::Accept).await;
    let impostor = load_secret_key(keygen(server.dir.path(), "other_key"), None).unwrap();
    server.write_known_hosts(&public_openssh(&impostor));

    let (result, progress) = establish(&server.hop(Duration::from_secs(2))).await;
    match result {
        Err(TunnelError::HostKey(HostKeyError::Changed { name, .. })) => {
            assert_eq!(name, format!("[127.0.0.1]:{}", server.port));
        }
        Err(other) => panic!("expected a changed host key, got {other:?}"),
        Ok(_) => panic!("connected to a server whose host key does not match known_hosts"),
    }

    assert!(
        !progress
            .iter()
            .any(|report| matches!(report, Progress::Authenticating { .. })),
        "the client reported authenticating to a server with the wrong host key: {progress:?}"
    );
    // Only once the server's session is over is "no authentication" a fact.
    timeout(BOUND, server.seen.session_ended.notified())
        .await
        .expect("the server session did not end after the client gave up");
    assert_eq!(
        server.seen.auth_calls.load(Ordering::SeqCst),
        0,
        "the client tried to authenticate to a server with the wrong host key"
    );
}
