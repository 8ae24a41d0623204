//! Building the chain: bytes through two jump hosts, checked on every hop's sshd; where each
//! hop's settings come from (its `[hosts]` entry, with its own `jump`, or `[defaults]` for a
//! `user@host:port` hop); each hop's own known_hosts file and host key policy.

use harness::{
    EchoServer, Failure, HostEntry, connection_id, host_entry, known_hosts_file, localhost,
    random_bytes,
};
use tunneld_ssh::FailureKind;
use tunneld_supervisor::TunnelState;

use crate::support::{InProcess, echo_through, test_dir, write_config};
use crate::{
    LOG_TIMEOUT, RECOVER_BOUND, STATE_TIMEOUT, assert_channel_logged, assert_names_hop,
    chain_config, debug_sshd, direct_tcpip_line, hops, round_trip_eventually, tunnel,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_64_mib_payload_crosses_two_jump_hosts_byte_identical() {
    harness::init_tracing();
    let dir = test_dir();
    let (a, b, c) = (debug_sshd(), debug_sshd(), debug_sshd());
    let echo = EchoServer::start();
    let (block, port) = tunnel("chain", "hop-c", r#"["hop-a", "hop-b"]"#, echo.port());
    let hops = hops(dir.path(), [&a, &b, &c]);
    let tunneld = InProcess::start(&chain_config(dir.path(), &[&hops, &block]));
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
    let entry_a = host_entry(dir.path(), "hop-a", &a, "");
    let tunneld = InProcess::start(&chain_config(dir.path(), &[&entry_a, &entry_b, &block]));
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
    let tunneld = InProcess::start(&chain_config(dir.path(), &[&entry_a, &entry_b, &block]));
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
