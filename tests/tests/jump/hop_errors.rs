//! A hop that fails: each error names the hop by position and name and says why, and nothing
//! goes past the hop that failed. A changed host key at hop 2, authentication refused at hop 1,
//! forwarding forbidden by a hop's sshd, a next hop that the previous one cannot reach, and a
//! hop's own connect timeout.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use harness::{
    ClosedPort, EchoServer, Failure, HostEntry, KeyPair, Sshd, host_entry, known_hosts_file,
};
use tunneld_ssh::FailureKind;

use crate::support::{InProcess, test_dir};
use crate::{
    STATE_TIMEOUT, assert_channel_logged, assert_names_hop, assert_stays_down, chain_config,
    connections_since, debug_sshd, direct_tcpip_line, hops, tunnel,
};

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
    let entry_a = host_entry(dir.path(), "hop-a", &a, "");
    let entry_c = host_entry(dir.path(), "hop-c", &c, "");
    let c_mark = c.log_mark();
    let tunneld = InProcess::start(&chain_config(
        dir.path(),
        &[&entry_a, &entry_b, &entry_c, &block],
    ));
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
    let entry_b = host_entry(dir.path(), "hop-b", &b, "");
    let b_mark = b.log_mark();
    let tunneld = InProcess::start(&chain_config(dir.path(), &[&entry_a, &entry_b, &block]));
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
    let hops = hops(dir.path(), [&a, &b, &c]);
    let (b_mark, c_mark) = (b.log_mark(), c.log_mark());
    let tunneld = InProcess::start(&chain_config(dir.path(), &[&hops, &block]));
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
    let bastion = host_entry(dir.path(), "bastion", &a, "");
    let tunneld = InProcess::start(&chain_config(dir.path(), &[&bastion, &entry, &block]));
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
    let entry_a = host_entry(dir.path(), "hop-a", &a, "");
    let config = chain_config(dir.path(), &[&entry_a, &entry, &block]);
    let started = Instant::now();
    let tunneld = InProcess::start(&config);
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
