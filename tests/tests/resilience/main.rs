//! Resilience: break things between tunneld and a real OpenSSH sshd and check that each tunnel
//! notices, says why, and comes back (docs/design.md, docs/resilience.md). One test binary; its
//! modules, by topic:
//!
//! - `link_faults`: sshd killed and restarted, a black-holed link (no RST), a frozen link with
//!   data in flight, the server's session SIGSTOPped: each detected and replaced by a new
//!   connection.
//! - `outage`: sshd down for longer than `backoff_max`, at start-up and after the tunnel was
//!   up: back within `backoff_max_network` of sshd's return.
//! - `permanent_failures`: authentication refused and a changed host key, retried at the cap.
//! - `soak`: 50 kill/restart cycles, with the fds and RSS of the binary measured.
//! - `isolation`: a healthy tunnel beside a broken one, and a client that arrives while the
//!   tunnel is down.
//! - `shutdown`: SIGTERM in the middle of a reconnect.
//!
//! Keepalives are 1 s x 2 (a dead-peer budget of 3 s) and backoff 100 ms..1 s, so that everything
//! is quick; bounds are several times those (the machines are shared and noisy). Measured times
//! are printed with `eprintln!`: run with `--nocapture` to see them (docs/resilience.md).

// Helpers outside #[test] functions unwrap too: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

#[path = "../support/mod.rs"]
mod support;

mod isolation;
mod link_faults;
mod outage;
mod permanent_failures;
mod shutdown;
mod soak;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use harness::{
    Failure, Sshd, TunneldProcess, connection_id, free_port, localhost, random_bytes,
    up_with_new_connection,
};
use support::{InProcess, write_config};
use tunneld_ssh::FailureKind;

/// The configured keepalive: `keepalive_interval = "1s"`, `keepalive_max = 2`.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(1);
const KEEPALIVE_MAX: u32 = 2;
/// (max + 1) x interval: how long a silent peer is tolerated.
const BUDGET: Duration = Duration::from_secs(3);
/// A dead link must be noticed within this: four times the budget, for a noisy machine.
const DETECT_BOUND: Duration = Duration::from_secs(12);
/// A tunnel must be back (and carrying bytes) within this once the fault is gone.
const RECOVER_BOUND: Duration = Duration::from_secs(30);
/// How long a state may take to show up in general.
const STATE_TIMEOUT: Duration = Duration::from_secs(20);

/// A duration in seconds, for the measured times that are printed.
fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// One `[tunnels.NAME]` block, self-contained (it carries its own user, key and known_hosts, so
/// that tunnels to different sshds can share a file), with the quick test settings.
struct TunnelSpec<'a> {
    name: &'a str,
    sshd: &'a Sshd,
    /// The port tunneld dials: sshd's own, or that of a proxy in front of it.
    via_port: u16,
    /// The local forward: `forward_port:127.0.0.1:target_port`.
    forward_port: u16,
    target_port: u16,
    backoff_max: &'a str,
    /// `backoff_max_network`, when the test sets it (else the built-in, within backoff_max).
    backoff_max_network: Option<&'a str>,
    connect_timeout: &'a str,
    /// Another private key instead of the one sshd authorizes.
    identity: Option<PathBuf>,
    /// Another public key (`ssh-ed25519 AAAA...`) to trust for the server instead of its own.
    trusted_key: Option<String>,
}

impl<'a> TunnelSpec<'a> {
    fn new(name: &'a str, sshd: &'a Sshd, via_port: u16, target_port: u16) -> Self {
        TunnelSpec {
            name,
            sshd,
            via_port,
            forward_port: free_port(),
            target_port,
            backoff_max: "1s",
            backoff_max_network: None,
            connect_timeout: "10s",
            identity: None,
            trusted_key: None,
        }
    }

    fn toml(&self, dir: &Path) -> String {
        let known_hosts = dir.join(format!("known_hosts_{}", self.name));
        let key = self
            .trusted_key
            .clone()
            .unwrap_or_else(|| self.sshd.host_key().public_key());
        std::fs::write(
            &known_hosts,
            format!("[127.0.0.1]:{} {key}\n", self.via_port),
        )
        .unwrap();
        let identity = self
            .identity
            .clone()
            .unwrap_or_else(|| self.sshd.client_key().private.clone());
        format!(
            "[tunnels.{name}]\n\
             host = \"127.0.0.1:{via}\"\n\
             user = \"{user}\"\n\
             identity_files = [\"{identity}\"]\n\
             known_hosts = \"{kh}\"\n\
             keepalive_interval = \"{ka}s\"\n\
             keepalive_max = {kamax}\n\
             backoff_min = \"100ms\"\n\
             backoff_max = \"{bmax}\"\n\
             connect_timeout = \"{ct}\"\n\
             {network}\
             local = [\"{fport}:127.0.0.1:{tport}\"]\n\n",
            name = self.name,
            via = self.via_port,
            user = self.sshd.user(),
            identity = identity.display(),
            kh = known_hosts.display(),
            ka = KEEPALIVE_INTERVAL.as_secs(),
            kamax = KEEPALIVE_MAX,
            bmax = self.backoff_max,
            ct = self.connect_timeout,
            network = self
                .backoff_max_network
                .map_or(String::new(), |cap| format!(
                    "backoff_max_network = \"{cap}\"\n"
                )),
            fport = self.forward_port,
            tport = self.target_port,
        )
    }
}

/// Writes the configuration of `tunnels` in `dir` and returns its path.
fn config_file(dir: &Path, tunnels: &[&TunnelSpec<'_>]) -> PathBuf {
    let text: String = tunnels.iter().map(|t| t.toml(dir)).collect();
    write_config(dir, &text)
}

/// An echo round trip of `len` bytes through the forward on `port`, bounded in time.
async fn round_trip(port: u16, len: usize, seed: u64) {
    let payload = random_bytes(len, seed);
    let back = tokio::time::timeout(
        STATE_TIMEOUT,
        support::echo_through(localhost(port), &payload),
    )
    .await
    .expect("the round trip through the forward did not finish in time");
    assert_eq!(back.len(), payload.len(), "echoed length");
    assert!(back == payload, "the echoed bytes differ");
}

/// The tunneld binary running `config`.
fn run_binary(config: &Path) -> TunneldProcess {
    TunneldProcess::spawn(&["run", "--config", config.to_str().unwrap()], &[])
}

/// tunneld in process with the one tunnel `spec`, once it is up and has carried a first round
/// trip: tunneld, and the id of the connection it is up on.
async fn start_up(dir: &Path, spec: &TunnelSpec<'_>) -> (InProcess, u64) {
    let tunneld = InProcess::start(&config_file(dir, &[spec]));
    let first = connection_id(&tunneld.wait_up(spec.name).await);
    round_trip(spec.forward_port, 64 * 1024, 1).await;
    (tunneld, first)
}

/// Waits for tunnel `t` to notice a fault made at `since` (it backs off within
/// [`DETECT_BOUND`]); returns what it says, and how long after `since` that was.
async fn wait_detected(tunneld: &InProcess, since: Instant) -> (Failure, Duration) {
    let failure = tunneld.wait_failure("t", DETECT_BOUND).await;
    (failure, since.elapsed())
}

/// [`wait_detected`] for a link that stopped answering: the failure must be a timeout, and not
/// permanent. Returns its reason and how long after `since` it was detected.
async fn wait_timed_out(tunneld: &InProcess, since: Instant) -> (String, Duration) {
    let (
        Failure {
            reason,
            kind,
            permanent,
            ..
        },
        detected,
    ) = wait_detected(tunneld, since).await;
    assert_eq!(kind, FailureKind::Timeout, "{reason}");
    assert!(!permanent, "{reason}");
    (reason, detected)
}

/// Waits for tunnel `t` to be up again on another connection than `first` (within
/// [`RECOVER_BOUND`]) and to carry a round trip through `port`; returns the new connection's id,
/// and how long after `since` it was up.
async fn wait_recovered(
    tunneld: &InProcess,
    port: u16,
    first: u64,
    since: Instant,
) -> (u64, Duration) {
    let up = tunneld
        .wait_for("t", RECOVER_BOUND, up_with_new_connection(first))
        .await;
    let up_after = since.elapsed();
    round_trip(port, 64 * 1024, 2).await;
    (connection_id(&up), up_after)
}
