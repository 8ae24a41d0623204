//! What the end-to-end tests share: writing a tunneld configuration for a test sshd, running
//! tunneld in process, and driving bytes through a forward.

#![allow(dead_code, clippy::unwrap_used)] // each test file uses a different part of it

pub mod socks;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use harness::{Failure, Sshd, TestDir, backing_off, is_backing_off};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tunneld_supervisor::{ForwardSnapshot, RemoteState, Supervisor, TunnelState};

/// Generous bounds: these machines are shared and noisy (docs/testing.md).
pub const UP_TIMEOUT: Duration = Duration::from_secs(20);

/// The `[defaults]` block for a tunnel to `sshd`: its client key, a known_hosts file in `dir`
/// that trusts it, and quick retries.
pub fn defaults_for(sshd: &Sshd, dir: &Path) -> String {
    let known_hosts = dir.join("known_hosts");
    sshd.write_known_hosts(&known_hosts);
    format!(
        "[defaults]\nuser = \"{user}\"\nidentity_files = [\"{key}\"]\nknown_hosts = \"{kh}\"\nbackoff_min = \"100ms\"\nbackoff_max = \"2s\"\nconnect_timeout = \"10s\"\n\n",
        user = sshd.user(),
        key = sshd.client_key().private.display(),
        kh = known_hosts.display(),
    )
}

/// `host = "127.0.0.1:PORT"` for a tunnel block.
pub fn host_line(sshd: &Sshd) -> String {
    format!("host = \"127.0.0.1:{}\"\n", sshd.port())
}

/// Writes a configuration of one tunnel `name` to `sshd` ([`defaults_for`], then the tunnel's
/// block with [`host_line`] and `lines`) as `dir/tunneld.toml`, and returns its path.
pub fn write_one_tunnel(dir: &Path, sshd: &Sshd, name: &str, lines: &str) -> PathBuf {
    let text = format!(
        "{}[tunnels.{name}]\n{}{lines}",
        defaults_for(sshd, dir),
        host_line(sshd)
    );
    write_config(dir, &text)
}

/// Writes `text` as `dir/tunneld.toml`.
pub fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("tunneld.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// tunneld running in this process.
pub struct InProcess {
    pub supervisor: Supervisor,
    pub shutdown: CancellationToken,
}

impl InProcess {
    pub fn start(config: &Path) -> Self {
        // tunneld's own log, shown with a failing test's output.
        harness::init_tracing();
        let config = tunneld_config::load(config).unwrap_or_else(|e| panic!("{e}"));
        let shutdown = CancellationToken::new();
        let supervisor = Supervisor::start(&config, shutdown.clone());
        InProcess {
            supervisor,
            shutdown,
        }
    }

    /// Waits until `tunnel`'s state satisfies `pred`, and returns it.
    pub async fn wait_for(
        &self,
        tunnel: &str,
        timeout: Duration,
        pred: impl Fn(&TunnelState) -> bool,
    ) -> TunnelState {
        let mut rx = self.supervisor.state(tunnel).expect("no such tunnel");
        let first = rx.borrow().clone();
        let waited = tokio::time::timeout(timeout, rx.wait_for(|s| pred(s)))
            .await
            .map(|r| r.map(|state| state.clone()));
        match waited {
            Ok(Ok(state)) => state,
            _ => panic!(
                "tunnel {tunnel}: condition not met within {timeout:?}; state now: {} (was {first})",
                *rx.borrow()
            ),
        }
    }

    /// Waits until `tunnel` is up, and returns its state.
    pub async fn wait_up(&self, tunnel: &str) -> TunnelState {
        self.wait_for(tunnel, UP_TIMEOUT, TunnelState::is_up).await
    }

    /// Waits until `tunnel` is up with every remote forward listening; returns its connection
    /// and the ports the server listens on, in the order of the forwards.
    pub async fn wait_remote_listening(&self, tunnel: &str) -> (u64, Vec<u32>) {
        let state = self
            .wait_for(tunnel, UP_TIMEOUT, |s| match s {
                TunnelState::Up { remote, .. } => remote
                    .iter()
                    .all(|r| matches!(r.state, RemoteState::Listening { .. })),
                _ => false,
            })
            .await;
        let TunnelState::Up {
            connection, remote, ..
        } = state
        else {
            unreachable!("wait_for returned a state that is not up")
        };
        let ports = remote
            .iter()
            .map(|r| match r.state {
                RemoteState::Listening { port } => port,
                _ => unreachable!("every remote forward was listening"),
            })
            .collect();
        (connection, ports)
    }

    /// The forward of `tunnel` whose spec is `spec`, as a snapshot shows it now.
    pub fn forward(&self, tunnel: &str, spec: &str) -> ForwardSnapshot {
        let snapshot = self.supervisor.snapshot();
        let tunnel = snapshot.tunnels.iter().find(|t| t.name == tunnel).unwrap();
        tunnel
            .forwards
            .iter()
            .find(|f| f.spec == spec)
            .unwrap_or_else(|| panic!("no forward {spec}"))
            .clone()
    }

    /// Waits until `tunnel` backs off after a failure, and returns what it says about it.
    pub async fn wait_failure(&self, tunnel: &str, timeout: Duration) -> Failure {
        backing_off(&self.wait_for(tunnel, timeout, is_backing_off).await)
    }

    pub async fn stop(self) {
        assert!(self.supervisor.shutdown(Duration::from_secs(5)).await);
    }
}

/// Sends `payload` through `addr` to an echo server and returns what came back.
pub async fn echo_through(addr: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let stream = TcpStream::connect(addr).await.unwrap();
    harness::echo_all(stream, payload.to_vec()).await
}

/// A temp dir for a test's files.
pub fn test_dir() -> TestDir {
    TestDir::new()
}

/// Connects `clients` clients to `addr` one after the other, and only once all are connected
/// has each send its index; then checks that `target` accepted them in that order. So only the
/// order of arrival tells them apart, as for iperf3 --bidir's two data connections.
pub async fn assert_arrival_order(
    addr: SocketAddr,
    target: &tokio::net::TcpListener,
    clients: u32,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut connected = Vec::new();
    for _ in 0..clients {
        connected.push(TcpStream::connect(addr).await.unwrap());
    }
    for (index, client) in connected.iter_mut().enumerate() {
        client
            .write_u32(u32::try_from(index).unwrap())
            .await
            .unwrap();
    }
    let mut order = Vec::new();
    for _ in 0..clients {
        let (mut accepted, _) = tokio::time::timeout(Duration::from_secs(30), target.accept())
            .await
            .expect("every client reaches the target")
            .unwrap();
        order.push(accepted.read_u32().await.unwrap());
    }
    let expected: Vec<u32> = (0..clients).collect();
    assert_eq!(
        order, expected,
        "the target accepted the clients' connections out of order"
    );
}
