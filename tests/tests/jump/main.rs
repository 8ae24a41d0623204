//! Jump hosts (`jump`, like `ssh -J`) against real OpenSSH sshds: every hop is an sshd
//! of its own, with its own client key, host key and known_hosts file, and the tunnel's target
//! service sits behind the last one.
//!
//! client -> hop-a -> hop-b -> hop-c -> echo server (two jump hosts), or client -> hop-a -> hop-b
//! -> echo server (one). tunneld dials hop-a over TCP and every further hop inside a direct-tcpip
//! channel of the previous one; the sshds' DEBUG1 logs show each of those channels with its
//! target, so the tests check on the server side that the chain really runs through every hop.
//!
//! One test binary; its modules:
//!
//! - `chain`: a 64 MiB payload byte-identical through two hops; `jump` on a `[hosts]` entry with
//!   the hop's name resolved by the previous hop; a `[user@]host[:port]` hop that takes
//!   `[defaults]`; each hop's own known_hosts and host key policy.
//! - `hop_errors`: a changed host key at hop 2; authentication refused at hop 1; a hop whose sshd
//!   forbids forwarding; a next hop the previous one cannot connect to; a per-hop connect
//!   timeout.
//! - `recovery`: the first hop's sshd killed and restarted, the middle hop's killed and
//!   restarted, and the first hop frozen: each detected, and the whole chain rebuilt; the death
//!   of the first hop reported as that hop's.
//!
//! Every error names the hop by position and name (docs/design.md, docs/troubleshooting.md):
//! `hop N (NAME): why`
//! ("hop 1 (bastion): authentication refused", "hop 2 (db-server): connection refused by
//! bastion"). The hops count from 1 at the first jump host, and the target is the last hop.
//!
//! Keepalives are 1 s x 2 and backoff 100 ms..1 s; bounds are several times those.

// Helpers outside #[test] functions unwrap too: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

#[path = "../support/mod.rs"]
mod support;

mod chain;
mod hop_errors;
mod recovery;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use harness::{KeyPair, Sshd, free_port, host_entry, localhost, random_bytes, try_echo_all};
use support::{InProcess, write_config};
use tunneld_supervisor::TunnelState;

/// A dead hop must be noticed within this (the keepalive budget is 3 s).
const DETECT_BOUND: Duration = Duration::from_secs(12);
/// The chain must be back (and carrying bytes) within this once the fault is gone.
const RECOVER_BOUND: Duration = Duration::from_secs(30);
/// How long a state may take to show up in general.
const STATE_TIMEOUT: Duration = Duration::from_secs(20);
/// How long an sshd log line may take to appear.
const LOG_TIMEOUT: Duration = Duration::from_secs(10);

/// An sshd that logs every direct-tcpip request with its target.
fn debug_sshd() -> Sshd {
    Sshd::builder().log_level("DEBUG1").start()
}

/// `[defaults]` with the quick test settings. Its key is authorized nowhere and its known_hosts
/// trusts nobody: a hop that took them instead of its own entry's would fail.
fn defaults(dir: &Path) -> String {
    let stray = KeyPair::generate(dir, "stray_key");
    let nobody = dir.join("known_hosts_nobody");
    std::fs::write(&nobody, "").unwrap();
    format!(
        "[defaults]\nidentity_files = [\"{}\"]\nknown_hosts = \"{}\"\n\
         keepalive_interval = \"1s\"\nkeepalive_max = 2\n\
         backoff_min = \"100ms\"\nbackoff_max = \"1s\"\nconnect_timeout = \"10s\"\n\n",
        stray.private.display(),
        nobody.display(),
    )
}

/// Writes the configuration, [`defaults`] and then `tables` (`[hosts]` entries and tunnel
/// blocks) in this order, as `dir/tunneld.toml`, and returns its path.
fn chain_config(dir: &Path, tables: &[&str]) -> PathBuf {
    write_config(dir, &format!("{}{}", defaults(dir), tables.concat()))
}

/// `[hosts]` entries `hop-a`, `hop-b`, ... for `sshds` in this order, each with its own
/// known_hosts file ([`host_entry`]).
fn hops<'a>(dir: &Path, sshds: impl IntoIterator<Item = &'a Sshd>) -> String {
    ('a'..='z')
        .zip(sshds)
        .map(|(letter, sshd)| host_entry(dir, &format!("hop-{letter}"), sshd, ""))
        .collect()
}

/// A tunnel `name` to `host` through `jump` (a TOML array, or empty for none) that forwards a
/// free port to `target_port` on the last hop's side. Returns the block and the forward's port.
fn tunnel(name: &str, host: &str, jump: &str, target_port: u16) -> (String, u16) {
    let port = free_port();
    let jump = if jump.is_empty() {
        String::new()
    } else {
        format!("jump = {jump}\n")
    };
    (
        format!(
            "[tunnels.{name}]\nhost = \"{host}\"\n{jump}local = [\"{port}:127.0.0.1:{target_port}\"]\n\n"
        ),
        port,
    )
}

/// How many TCP connections reached sshd since `mark` (from `Sshd::log_mark`, taken after the
/// harness's own startup probes): VERBOSE logs each one.
fn connections_since(sshd: &Sshd, mark: usize) -> usize {
    sshd.log()
        .get(mark..)
        .unwrap_or_default()
        .matches("Connection from ")
        .count()
}

/// sshd's DEBUG1 line for a direct-tcpip request from tunneld to `target port N`.
fn direct_tcpip_line(target: &str, port: u16) -> String {
    format!("server_request_direct_tcpip: originator 127.0.0.1 port 0, target {target} port {port}")
}

/// Waits until `sshd`'s log shows a direct-tcpip channel to `target:port` (a hop is dialled with
/// originator 127.0.0.1 port 0; a forwarded client with its own address, so only the target is
/// matched for those).
fn assert_channel_logged(sshd: &Sshd, who: &str, needle: &str) {
    assert!(
        sshd.wait_for_log(needle, LOG_TIMEOUT),
        "{who}'s sshd log shows no {needle:?}:\n{}",
        sshd.log()
    );
}

/// Asserts the shape of a hop's error: `hop N (NAME): ...` followed by `rest`.
#[track_caller]
fn assert_names_hop(reason: &str, hop: usize, name: &str, rest: &str) {
    let prefix = format!("hop {hop} ({name}): ");
    assert!(
        reason.starts_with(&prefix) && reason.contains(rest),
        "the error must name the hop as {prefix:?} and say {rest:?}; tunneld says: {reason:?}"
    );
    assert!(
        !reason[prefix.len()..].starts_with(&format!("{name} (")),
        "the hop's name is said twice: {reason:?}"
    );
}

/// A byte-identical round trip of `size` bytes through the forward on `port`, retried while the
/// chain reconnects, for up to `within`.
async fn round_trip_eventually(port: u16, size: usize, seed: u64, within: Duration) {
    let payload = random_bytes(size, seed);
    let deadline = Instant::now() + within;
    loop {
        let attempt = tokio::time::timeout(Duration::from_secs(20), async {
            let stream = tokio::net::TcpStream::connect(localhost(port)).await?;
            try_echo_all(stream, payload.clone()).await
        })
        .await;
        if let Ok(Ok(back)) = &attempt
            && *back == payload
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no byte-identical round trip of {size} bytes within {within:?} (last: {:?})",
            attempt.map(|r| r.map(|b| b.len()))
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Asserts that `tunnel` does not come up within `period`.
async fn assert_stays_down(tunneld: &InProcess, tunnel: &str, period: Duration) {
    let mut rx = tunneld.supervisor.state(tunnel).unwrap();
    let came_up = tokio::time::timeout(period, rx.wait_for(TunnelState::is_up))
        .await
        .is_ok();
    assert!(
        !came_up,
        "tunnel {tunnel} must not come up: {}",
        *rx.borrow()
    );
}
