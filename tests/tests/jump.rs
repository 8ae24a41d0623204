//! Jump hosts (`jump`, like `ssh -J`) against real OpenSSH sshds: every hop is an sshd
//! of its own, with its own client key, host key and known_hosts file, and the tunnel's target
//! service sits behind the last one.
//!
//! client -> hop-a -> hop-b -> hop-c -> echo server (two jump hosts), or client -> hop-a -> hop-b
//! -> echo server (one). tunneld dials hop-a over TCP and every further hop inside a direct-tcpip
//! channel of the previous one; the sshds' DEBUG1 logs show each of those channels with its
//! target, so the tests check on the server side that the chain really runs through every hop.
//!
//! Covered: a 64 MiB payload byte-identical through two hops; `jump` on a `[hosts]` entry with the
//! hop's name resolved by the previous hop; a `[user@]host[:port]` hop that takes `[defaults]`;
//! each hop's own host key policy; a changed host key at hop 2; authentication refused at hop 1;
//! a hop whose sshd forbids forwarding; a next hop the previous one cannot connect to; a per-hop
//! connect timeout; the first hop's sshd killed and restarted, the middle hop's killed and
//! restarted, and the first hop frozen: each detected, and the whole chain rebuilt.
//!
//! Every error names the hop by position and name (docs/design.md, docs/troubleshooting.md):
//! `hop N (NAME): why`
//! ("hop 1 (bastion): authentication refused", "hop 2 (db-server): connection refused by
//! bastion"). The hops count from 1 at the first jump host, and the target is the last hop.
//!
//! Keepalives are 1 s x 2 and backoff 100 ms..1 s; bounds are several times those.

// Helpers outside #[test] functions unwrap too: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod support;

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use harness::{
    ClosedPort, EchoServer, Failure, HostEntry, KeyPair, Sshd, connection_id, free_port,
    host_entry, known_hosts_file, localhost, random_bytes, try_echo_all, up_with_new_connection,
    wait_until,
};
use support::{InProcess, echo_through, test_dir, write_config};
use tokio::task::block_in_place;
use tunneld_ssh::FailureKind;
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

// (1) ------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_64_mib_payload_crosses_two_jump_hosts_byte_identical() {
    harness::init_tracing();
    let dir = test_dir();
    let (a, b, c) = (debug_sshd(), debug_sshd(), debug_sshd());
    let echo = EchoServer::start();
    let (block, port) = tunnel("chain", "hop-c", r#"["hop-a", "hop-b"]"#, echo.port());
    let config = format!(
        "{}{}{}{}{block}",
        defaults(dir.path()),
        host_entry(dir.path(), "hop-a", &a, ""),
        host_entry(dir.path(), "hop-b", &b, ""),
        host_entry(dir.path(), "hop-c", &c, ""),
    );
    let tunneld = InProcess::start(&write_config(dir.path(), &config));
    let up = tunneld.wait_up("chain").await;
    let TunnelState::Up { peer, .. } = &up else {
        unreachable!()
    };
    assert_eq!(*peer, format!("hop-c (127.0.0.1:{})", c.port()));

    let payload = random_bytes(64 << 20, 6);
    let back = echo_through(localhost(port), &payload).await;
    assert_eq!(back.len(), payload.len());
    assert!(back == payload, "the echoed bytes differ from the payload");
    assert_eq!(echo.connections_total(), 1);

    // Each hop logged in once, and each sshd opened the channel to the next hop: A to B's port,
    // B to C's port, and C to the target service.
    assert_channel_logged(&a, "hop-a", &direct_tcpip_line("127.0.0.1", b.port()));
    assert_channel_logged(&b, "hop-b", &direct_tcpip_line("127.0.0.1", c.port()));
    assert_channel_logged(
        &c,
        "hop-c",
        &format!("target 127.0.0.1 port {}", echo.port()),
    );
    assert!(
        !a.log().contains(&format!("port {}", echo.port()))
            && !b.log().contains(&format!("port {}", echo.port())),
        "only the last hop may connect to the target service"
    );
    for (name, sshd) in [("hop-a", &a), ("hop-b", &b), ("hop-c", &c)] {
        assert_eq!(sshd.logins(), 1, "{name} must see exactly one login");
    }
    let now = tunneld.wait_up("chain").await;
    assert_eq!(connection_id(&now), connection_id(&up), "no reconnect");
    tunneld.stop().await;
}

// (2) ------------------------------------------------------------------------------------------

/// `jump` on a `[hosts]` entry (the tunnel has none), and the hop's host name travels in the
/// direct-tcpip request for the previous hop to resolve, as with ssh -J.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jump_on_a_hosts_entry_and_the_hop_name_is_resolved_by_the_previous_hop() {
    harness::init_tracing();
    let dir = test_dir();
    let (a, b) = (debug_sshd(), debug_sshd());
    let echo = EchoServer::start();
    // hop-b is known by a name that tunneld never looks up: A does.
    let kh_b = known_hosts_file(
        dir.path(),
        "hop-b",
        &format!("[localhost]:{} {}", b.port(), b.host_key().public_key()),
    );
    let entry_b = HostEntry::new("hop-b", &b, &kh_b)
        .hostname("localhost")
        .extra("jump = [\"hop-a\"]\n")
        .toml();
    let (block, port) = tunnel("one", "hop-b", "", echo.port());
    let config = format!(
        "{}{}{entry_b}{block}",
        defaults(dir.path()),
        host_entry(dir.path(), "hop-a", &a, ""),
    );
    let tunneld = InProcess::start(&write_config(dir.path(), &config));
    tunneld.wait_up("one").await;
    let payload = random_bytes(1 << 20, 7);
    assert_eq!(echo_through(localhost(port), &payload).await, payload);

    assert_channel_logged(&a, "hop-a", &direct_tcpip_line("localhost", b.port()));
    assert_channel_logged(
        &b,
        "hop-b",
        &format!("target 127.0.0.1 port {}", echo.port()),
    );
    assert_eq!(a.logins(), 1);
    assert_eq!(b.logins(), 1);
    tunneld.stop().await;
}

// (3) ------------------------------------------------------------------------------------------

/// A hop written as `user@127.0.0.1:PORT` takes its key and known_hosts from `[defaults]`; the
/// user in the string beats `[defaults]`' user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_at_host_port_hop_takes_its_settings_from_defaults() {
    harness::init_tracing();
    let dir = test_dir();
    let (a, b) = (debug_sshd(), debug_sshd());
    let echo = EchoServer::start();
    let kh_defaults = known_hosts_file(dir.path(), "defaults", &a.known_hosts_line());
    let config_defaults = format!(
        "[defaults]\nuser = \"no-such-user-here\"\nidentity_files = [\"{}\"]\nknown_hosts = \"{}\"\n\
         keepalive_interval = \"1s\"\nkeepalive_max = 2\n\
         backoff_min = \"100ms\"\nbackoff_max = \"1s\"\n\n",
        a.client_key().private.display(),
        kh_defaults.display()
    );
    let hop = format!("{}@127.0.0.1:{}", a.user(), a.port());
    let (block, port) = tunnel("literal", "hop-b", &format!("[\"{hop}\"]"), echo.port());
    let config = format!(
        "{config_defaults}{}{block}",
        host_entry(dir.path(), "hop-b", &b, "")
    );
    let tunneld = InProcess::start(&write_config(dir.path(), &config));
    tunneld.wait_up("literal").await;
    let payload = random_bytes(1 << 20, 8);
    assert_eq!(echo_through(localhost(port), &payload).await, payload);

    let fingerprint = a.client_key().fingerprint();
    assert!(
        a.wait_for_log(
            &format!("Accepted publickey for {} from 127.0.0.1", a.user()),
            LOG_TIMEOUT
        ) && a.log().contains(&fingerprint),
        "hop 1 must log in with [defaults]' key {fingerprint}:\n{}",
        a.log()
    );
    assert_channel_logged(&a, "hop 1", &direct_tcpip_line("127.0.0.1", b.port()));
    assert_eq!(b.logins(), 1);
    tunneld.stop().await;
}

// (4) ------------------------------------------------------------------------------------------

/// Each hop's host key is checked under its own policy: hop 1 with accept-new learns its key into
/// its own file, hop 2 with strict refuses an unknown key (naming the hop and both of its files),
/// and once hop 2's own pinned file (`global_known_hosts`) has the key the chain comes up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_hop_has_its_own_known_hosts_and_policy() {
    harness::init_tracing();
    let dir = test_dir();
    let (a, b) = (debug_sshd(), debug_sshd());
    let echo = EchoServer::start();
    let learned = dir.join("known_hosts_learned_by_a");
    let entry_a = HostEntry::new("hop-a", &a, &learned)
        .extra("host_key_policy = \"accept-new\"\n")
        .toml();
    let kh_b = dir.join("known_hosts_b_empty");
    std::fs::write(&kh_b, "").unwrap();
    // hop-b's own pinned keys file, missing for now.
    let pinned_b = dir.join("known_hosts_b_pinned");
    let entry_b = HostEntry::new("hop-b", &b, &kh_b)
        .extra(&format!(
            "global_known_hosts = \"{}\"\nhost_key_policy = \"strict\"\n",
            pinned_b.display()
        ))
        .toml();
    let (block, port) = tunnel("policy", "hop-b", r#"["hop-a"]"#, echo.port());
    let config = format!("{}{entry_a}{entry_b}{block}", defaults(dir.path()));
    let tunneld = InProcess::start(&write_config(dir.path(), &config));
    let Failure {
        reason,
        kind,
        permanent,
        ..
    } = tunneld.wait_failure("policy", STATE_TIMEOUT).await;
    eprintln!("[unknown key at hop 2] {reason}");

    // Hop 1 learned its key into its own file; hop 2 was refused before authentication.
    let learned_text = std::fs::read_to_string(&learned).unwrap_or_default();
    assert!(
        learned_text.contains(&a.host_key().public_key())
            && !learned_text.contains(&b.host_key().public_key()),
        "hop-a's file must hold hop-a's key only: {learned_text:?}"
    );
    assert_eq!(
        std::fs::read_to_string(&kh_b).unwrap(),
        "",
        "strict never writes"
    );
    assert_eq!(
        b.logins(),
        0,
        "no login at a hop whose host key was refused"
    );
    assert_eq!(kind, FailureKind::HostKey);
    assert!(permanent);

    // Pinning it fixes the chain at the next retry.
    std::fs::write(&pinned_b, format!("{}\n", b.known_hosts_line())).unwrap();
    tunneld.wait_up("policy").await;
    round_trip_eventually(port, 100_000, 9, RECOVER_BOUND).await;
    tunneld.stop().await;

    assert_names_hop(
        &reason,
        2,
        "hop-b",
        &format!(
            "host key of [127.0.0.1]:{} is not in {} or {pinned} (policy strict); pin it in \
             {pinned}",
            b.port(),
            kh_b.display(),
            pinned = pinned_b.display()
        ),
    );
}

// (5) ------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_host_key_at_hop_2_refuses_the_whole_chain_and_names_the_hop() {
    harness::init_tracing();
    let dir = test_dir();
    let (a, b, c) = (debug_sshd(), debug_sshd(), debug_sshd());
    let echo = EchoServer::start();
    // hop-b's known_hosts has another ed25519 key for it: a changed key.
    let impostor = KeyPair::generate(dir.path(), "other_host_key");
    let kh_b = known_hosts_file(
        dir.path(),
        "hop-b-wrong",
        &format!("[127.0.0.1]:{} {}", b.port(), impostor.public_key()),
    );
    let entry_b = HostEntry::new("hop-b", &b, &kh_b).toml();
    let (block, _port) = tunnel("changed", "hop-c", r#"["hop-a", "hop-b"]"#, echo.port());
    let config = format!(
        "{}{}{entry_b}{}{block}",
        defaults(dir.path()),
        host_entry(dir.path(), "hop-a", &a, ""),
        host_entry(dir.path(), "hop-c", &c, ""),
    );
    let c_mark = c.log_mark();
    let tunneld = InProcess::start(&write_config(dir.path(), &config));
    let Failure {
        reason,
        kind,
        permanent,
        ..
    } = tunneld.wait_failure("changed", STATE_TIMEOUT).await;
    eprintln!("[changed key at hop 2] {reason}");

    // Hop 1 let us in and opened the channel to B; B never saw a login; C never saw anything.
    assert!(a.logins() >= 1);
    assert_channel_logged(&a, "hop-a", &direct_tcpip_line("127.0.0.1", b.port()));
    assert_eq!(
        b.logins(),
        0,
        "no login at a hop whose host key was refused"
    );
    assert_eq!(
        connections_since(&c, c_mark),
        0,
        "nothing may go past a refused hop"
    );
    assert_eq!(echo.connections_total(), 0);
    assert_eq!(kind, FailureKind::HostKey);
    assert!(permanent, "a changed host key does not fix itself");
    assert_stays_down(&tunneld, "changed", Duration::from_secs(3)).await;
    assert_eq!(b.logins(), 0);
    assert_eq!(connections_since(&c, c_mark), 0);
    assert_names_hop(
        &reason,
        2,
        "hop-b",
        &format!(
            "HOST KEY CHANGED for [127.0.0.1]:{}: {} line 1 has ssh-ed25519 {}, server offered {}; refusing",
            b.port(),
            kh_b.display(),
            impostor.fingerprint(),
            b.host_key().fingerprint()
        ),
    );
    tunneld.stop().await;
}

// (6) ------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentication_refused_at_hop_1_names_the_hop() {
    harness::init_tracing();
    let dir = test_dir();
    let (a, b) = (Sshd::start(), Sshd::start());
    let echo = EchoServer::start();
    // hop-a offers B's client key, which A does not authorize.
    let kh_a = known_hosts_file(dir.path(), "hop-a", &a.known_hosts_line());
    let entry_a = HostEntry::new("hop-a", &a, &kh_a)
        .identity(&b.client_key().private)
        .toml();
    let (block, _port) = tunnel("auth", "hop-b", r#"["hop-a"]"#, echo.port());
    let config = format!(
        "{}{entry_a}{}{block}",
        defaults(dir.path()),
        host_entry(dir.path(), "hop-b", &b, ""),
    );
    let b_mark = b.log_mark();
    let tunneld = InProcess::start(&write_config(dir.path(), &config));
    let Failure {
        reason,
        kind,
        permanent,
        ..
    } = tunneld.wait_failure("auth", STATE_TIMEOUT).await;
    eprintln!("[auth refused at hop 1] {reason}");

    assert_eq!(a.logins(), 0);
    assert_eq!(
        connections_since(&b, b_mark),
        0,
        "nothing may go past a refused hop"
    );
    assert_eq!(kind, FailureKind::Auth);
    assert!(permanent);
    assert_names_hop(&reason, 1, "hop-a", "authentication refused");
    tunneld.stop().await;
}

// (7) ------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hop_whose_sshd_forbids_forwarding_names_the_hop_and_the_refusal() {
    harness::init_tracing();
    let dir = test_dir();
    let a = Sshd::builder()
        .config_line("AllowTcpForwarding no")
        .log_level("DEBUG1")
        .start();
    let (b, c) = (debug_sshd(), debug_sshd());
    let echo = EchoServer::start();
    let (block, _port) = tunnel("forbidden", "hop-c", r#"["hop-a", "hop-b"]"#, echo.port());
    let config = format!(
        "{}{}{}{}{block}",
        defaults(dir.path()),
        host_entry(dir.path(), "hop-a", &a, ""),
        host_entry(dir.path(), "hop-b", &b, ""),
        host_entry(dir.path(), "hop-c", &c, ""),
    );
    let (b_mark, c_mark) = (b.log_mark(), c.log_mark());
    let tunneld = InProcess::start(&write_config(dir.path(), &config));
    let Failure {
        reason,
        kind,
        permanent,
        ..
    } = tunneld.wait_failure("forbidden", STATE_TIMEOUT).await;
    eprintln!("[forwarding forbidden at hop 1] {reason} (kind {kind}, permanent {permanent})");

    assert!(a.logins() >= 1, "hop-a let us in");
    assert_channel_logged(
        &a,
        "hop-a",
        &format!(
            "refused local port forward: originator 127.0.0.1 port 0, target 127.0.0.1 port {}",
            b.port()
        ),
    );
    assert_eq!(connections_since(&b, b_mark), 0);
    assert_eq!(connections_since(&c, c_mark), 0);
    // hop 2 could not be reached: the channel to it was refused by hop-a, by policy.
    assert_names_hop(&reason, 2, "hop-b", "hop-a");
    // The words docs/troubleshooting.md gives for a server that forbids forwarding.
    assert!(
        reason.contains("hop-a refuses port forwarding to 127.0.0.1:")
            && reason.ends_with("(AllowTcpForwarding / permitopen)"),
        "the error must say that hop-a's policy refused the channel: {reason:?}"
    );
    assert!(permanent, "a policy refusal does not go away by retrying");
    tunneld.stop().await;
}

// (8) ------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_next_hop_the_previous_one_cannot_reach_is_connection_refused_by_it() {
    harness::init_tracing();
    let dir = test_dir();
    let a = debug_sshd();
    let closed = ClosedPort::new();
    let echo = EchoServer::start();
    let kh = known_hosts_file(
        dir.path(),
        "db-server",
        "[127.0.0.1]:1 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl",
    );
    let entry = HostEntry::new("db-server", &a, &kh)
        .port(closed.port())
        .toml();
    let (block, _port) = tunnel("db", "db-server", r#"["bastion"]"#, echo.port());
    let config = format!(
        "{}{}{entry}{block}",
        defaults(dir.path()),
        host_entry(dir.path(), "bastion", &a, ""),
    );
    let tunneld = InProcess::start(&write_config(dir.path(), &config));
    let Failure {
        reason,
        kind,
        permanent,
        ..
    } = tunneld.wait_failure("db", STATE_TIMEOUT).await;
    eprintln!("[next hop unreachable] {reason} (kind {kind}, permanent {permanent})");

    assert_channel_logged(
        &a,
        "bastion",
        &direct_tcpip_line("127.0.0.1", closed.port()),
    );
    assert!(!permanent, "a hop that is down may come back");
    assert_names_hop(&reason, 2, "db-server", "connection refused by bastion");
    tunneld.stop().await;
}

// (9) ------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_hop_has_its_own_connect_timeout() {
    harness::init_tracing();
    let dir = test_dir();
    let a = debug_sshd();
    // Reached through A, accepts (the kernel completes the handshake), never sends a banner.
    let mute = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let mute_port = mute.local_addr().unwrap().port();
    let kh = known_hosts_file(dir.path(), "mute", "");
    let entry = HostEntry::new("mute", &a, &kh)
        .port(mute_port)
        .extra("connect_timeout = \"1s\"\n")
        .toml();
    // [defaults] says 10 s; the hop's own 1 s must apply to it.
    let (block, _port) = tunnel("slow", "mute", r#"["hop-a"]"#, 9);
    let config = format!(
        "{}{}{entry}{block}",
        defaults(dir.path()),
        host_entry(dir.path(), "hop-a", &a, ""),
    );
    let started = Instant::now();
    let tunneld = InProcess::start(&write_config(dir.path(), &config));
    let Failure { reason, kind, .. } = tunneld.wait_failure("slow", STATE_TIMEOUT).await;
    let took = started.elapsed();
    eprintln!("[mute hop 2] after {:.3} s: {reason}", took.as_secs_f64());

    assert_channel_logged(&a, "hop-a", &direct_tcpip_line("127.0.0.1", mute_port));
    assert_eq!(kind, FailureKind::Timeout);
    assert!(
        took < Duration::from_secs(8),
        "hop 2's own 1 s connect_timeout must apply, not [defaults]' 10 s: {took:?}"
    );
    assert_names_hop(
        &reason,
        2,
        "mute",
        "timed out after 1s during SSH handshake",
    );
    tunneld.stop().await;
    drop(mute);
}

// (10) -----------------------------------------------------------------------------------------

/// The chain client -> A -> B -> C with a forward to an echo server behind C; kills (and
/// restarts) the sshd of hop `which` (0 = A, 1 = B) and checks that the tunnel notices, comes
/// back over a new connection, and carries bytes again.
async fn kill_and_restart_hop(which: usize) {
    harness::init_tracing();
    let dir = test_dir();
    let mut sshds = [debug_sshd(), debug_sshd(), debug_sshd()];
    let echo = EchoServer::start();
    let (block, port) = tunnel("chain", "hop-c", r#"["hop-a", "hop-b"]"#, echo.port());
    let config = format!(
        "{}{}{}{}{block}",
        defaults(dir.path()),
        host_entry(dir.path(), "hop-a", &sshds[0], ""),
        host_entry(dir.path(), "hop-b", &sshds[1], ""),
        host_entry(dir.path(), "hop-c", &sshds[2], ""),
    );
    let tunneld = InProcess::start(&write_config(dir.path(), &config));
    let first = connection_id(&tunneld.wait_up("chain").await);
    round_trip_eventually(port, 64 * 1024, 1, STATE_TIMEOUT).await;

    let name = ["hop-a", "hop-b"][which];
    let killed = Instant::now();
    block_in_place(|| sshds[which].kill());
    let down = tunneld
        .wait_for("chain", DETECT_BOUND, |s| !s.is_up())
        .await;
    let noticed = killed.elapsed();
    eprintln!(
        "[{name} killed] noticed after {:.3} s: {down}",
        noticed.as_secs_f64()
    );
    let Failure {
        reason,
        kind,
        permanent,
        ..
    } = tunneld.wait_failure("chain", DETECT_BOUND).await;
    eprintln!("[{name} killed] {reason} (kind {kind})");
    assert!(
        !permanent,
        "a hop that went away is not permanent: {reason}"
    );

    block_in_place(|| sshds[which].restart());
    let restarted = Instant::now();
    let up = tunneld
        .wait_for("chain", RECOVER_BOUND, up_with_new_connection(first))
        .await;
    round_trip_eventually(port, 64 * 1024, 2, RECOVER_BOUND).await;
    eprintln!(
        "[{name} killed] back {:.3} s after the restart (connection {first} -> {})",
        restarted.elapsed().as_secs_f64(),
        connection_id(&up)
    );
    // The whole chain was rebuilt: every hop saw a second login.
    for (hop, sshd) in ["hop-a", "hop-b", "hop-c"].iter().zip(&sshds) {
        assert!(
            wait_until(LOG_TIMEOUT, || sshd.logins() >= 2),
            "{hop} must see the rebuilt chain log in again ({} logins)",
            sshd.logins()
        );
    }
    tunneld.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_hops_sshd_killed_and_restarted_the_chain_comes_back() {
    kill_and_restart_hop(0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_middle_hops_sshd_killed_and_restarted_the_chain_comes_back() {
    kill_and_restart_hop(1).await;
}

// (11) -----------------------------------------------------------------------------------------

/// Hop 1's session process frozen (SIGSTOP): no RST, nothing closes; only keepalives can tell.
/// They run on the target's session, whose packets cross hop 1, so the freeze is detected within
/// the keepalive budget and the chain is rebuilt through a fresh session of hop 1's sshd.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_first_hop_is_detected_by_keepalives_and_the_chain_rebuilt() {
    harness::init_tracing();
    let dir = test_dir();
    let (a, b) = (debug_sshd(), debug_sshd());
    let echo = EchoServer::start();
    let (block, port) = tunnel("frozen", "hop-b", r#"["hop-a"]"#, echo.port());
    let config = format!(
        "{}{}{}{block}",
        defaults(dir.path()),
        host_entry(dir.path(), "hop-a", &a, ""),
        host_entry(dir.path(), "hop-b", &b, ""),
    );
    let tunneld = InProcess::start(&write_config(dir.path(), &config));
    let first = connection_id(&tunneld.wait_up("frozen").await);
    round_trip_eventually(port, 64 * 1024, 1, STATE_TIMEOUT).await;

    let stopped = block_in_place(|| a.stop_sessions());
    let frozen = Instant::now();
    let Failure { reason, kind, .. } = tunneld.wait_failure("frozen", DETECT_BOUND).await;
    eprintln!(
        "[hop-a frozen] detected after {:.3} s: {reason} (kind {kind})",
        frozen.elapsed().as_secs_f64()
    );
    assert_eq!(kind, FailureKind::Timeout, "{reason}");
    // A's listener still serves new sessions: the chain comes back while the old one is frozen.
    let up = tunneld
        .wait_for("frozen", RECOVER_BOUND, up_with_new_connection(first))
        .await;
    round_trip_eventually(port, 64 * 1024, 2, RECOVER_BOUND).await;
    eprintln!("[hop-a frozen] back on connection {}", connection_id(&up));
    for pid in stopped {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap()),
            nix::sys::signal::Signal::SIGCONT,
        );
    }
    tunneld.stop().await;
}

// (12) -----------------------------------------------------------------------------------------

/// When a jump host dies, the error says which hop it was, not only that the target's session
/// closed: errors say which hop failed and why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_death_of_the_first_hop_is_reported_as_that_hops() {
    harness::init_tracing();
    let dir = test_dir();
    let (mut a, b) = (Sshd::start(), Sshd::start());
    let echo = EchoServer::start();
    let (block, port) = tunnel("dies", "hop-b", r#"["hop-a"]"#, echo.port());
    let config = format!(
        "{}{}{}{block}",
        defaults(dir.path()),
        host_entry(dir.path(), "hop-a", &a, ""),
        host_entry(dir.path(), "hop-b", &b, ""),
    );
    let tunneld = InProcess::start(&write_config(dir.path(), &config));
    tunneld.wait_up("dies").await;
    round_trip_eventually(port, 64 * 1024, 1, STATE_TIMEOUT).await;

    block_in_place(|| a.kill());
    let Failure {
        reason,
        kind,
        permanent,
        ..
    } = tunneld.wait_failure("dies", DETECT_BOUND).await;
    eprintln!("[hop-a died] {reason} (kind {kind})");
    assert_eq!(kind, FailureKind::Network);
    assert!(!permanent);
    let prefix = "hop 1 (hop-a): ";
    assert!(
        reason.starts_with(prefix),
        "the error must blame hop 1 as {prefix:?}; tunneld says: {reason:?}"
    );
    tunneld.stop().await;
}
