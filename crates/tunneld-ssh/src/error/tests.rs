//! Failures in words and by class.

use super::*;

#[test]
fn a_hop_is_named_once() {
    let timeout = TunnelError::Timeout {
        peer: Peer::new("mute", "127.0.0.1", 2222),
        stage: Stage::Handshake,
        after: Duration::from_secs(1),
    };
    assert_eq!(
        TunnelError::at_hop(2, "mute", timeout).to_string(),
        "hop 2 (mute): 127.0.0.1:2222: timed out after 1s during SSH handshake"
    );
    // A hop written as `user@host:port` is already named by its address.
    let refused = TunnelError::AuthRefused {
        user: "pi".to_string(),
        peer: Peer::new("pi@gateway.example", "gateway.example", 22),
        tried: vec![],
    };
    assert_eq!(
        TunnelError::at_hop(1, "pi@gateway.example", refused).to_string(),
        "hop 1 (pi@gateway.example): authentication refused for pi@gateway.example:22 (tried: no keys)"
    );
}

#[test]
fn a_peer_is_named_by_its_label_unless_the_label_holds_its_address() {
    assert_eq!(
        Peer::new("db", "10.0.0.5", 2222).to_string(),
        "db (10.0.0.5:2222)"
    );
    assert_eq!(
        Peer::new("pi@gateway.example", "gateway.example", 22).to_string(),
        "gateway.example:22"
    );
    let v6 = Peer::new("v6", "::1", 22);
    assert_eq!(v6.address, "[::1]:22");
    assert_eq!(v6.to_string(), "v6 ([::1]:22)");
    let mut inner = v6;
    inner.address_only();
    assert_eq!(inner.to_string(), "[::1]:22");
}

fn io(kind: std::io::ErrorKind) -> std::io::Error {
    std::io::Error::from(kind)
}

fn connect(errors: &[std::io::ErrorKind]) -> TunnelError {
    TunnelError::Connect {
        peer: Peer::new("db", "192.0.2.5", 22),
        attempts: errors
            .iter()
            .map(|kind| (SocketAddr::from(([192, 0, 2, 5], 22)), io(*kind)))
            .collect(),
    }
}

fn resolve(lookup: Lookup) -> TunnelError {
    TunnelError::Resolve {
        host: "db.example".to_owned(),
        lookup,
        source: io(std::io::ErrorKind::Other),
    }
}

#[test]
fn failures_before_the_ssh_version_exchange_are_the_networks() {
    use std::io::ErrorKind::{ConnectionRefused, HostUnreachable, NetworkUnreachable, TimedOut};
    let peer = || Peer::new("db", "192.0.2.5", 22);
    let timeout = |stage| TunnelError::Timeout {
        peer: peer(),
        stage,
        after: Duration::from_secs(10),
    };
    let cases = [
        (connect(&[ConnectionRefused]), Reach::Network),
        (connect(&[HostUnreachable]), Reach::Network),
        (
            connect(&[NetworkUnreachable, ConnectionRefused]),
            Reach::Network,
        ),
        // Every address stayed silent: the attempt already waited for an answer.
        (connect(&[TimedOut, TimedOut]), Reach::Unanswered),
        (connect(&[TimedOut, ConnectionRefused]), Reach::Network),
        // The name resolved to no address at all.
        (connect(&[]), Reach::Network),
        (resolve(Lookup::NoAnswer), Reach::Network),
        (resolve(Lookup::NoSuchName), Reach::Network),
        (timeout(Stage::Connect), Reach::Unanswered),
        (timeout(Stage::Version), Reach::Unanswered),
        (timeout(Stage::Handshake), Reach::Server),
        (timeout(Stage::Authentication), Reach::Server),
        (TunnelError::Dropped { peer: peer() }, Reach::Server),
        (
            TunnelError::AuthRefused {
                user: "u".to_owned(),
                peer: peer(),
                tried: Vec::new(),
            },
            Reach::Server,
        ),
        // A jump chain: the failure is its hop's. The bastion could not reach the next hop.
        (
            TunnelError::at_hop(
                2,
                "db",
                TunnelError::Through {
                    via: "bastion".to_owned(),
                    target: "192.0.2.5:22".to_owned(),
                    reason: russh::ChannelOpenFailure::ConnectFailed,
                },
            ),
            Reach::Network,
        ),
        (
            TunnelError::at_hop(2, "db", timeout(Stage::Connect)),
            Reach::Unanswered,
        ),
        (
            TunnelError::at_hop(1, "bastion", connect(&[ConnectionRefused])),
            Reach::Network,
        ),
        (
            TunnelError::at_hop(2, "db", timeout(Stage::Handshake)),
            Reach::Server,
        ),
    ];
    for (err, reach) in cases {
        assert_eq!(err.reach(), reach, "{err}");
    }
}

#[test]
fn a_name_that_does_not_exist_needs_a_fix_and_no_answer_is_the_networks() {
    let missing = resolve(Lookup::NoSuchName);
    assert_eq!(missing.kind(), FailureKind::Config);
    assert!(missing.is_permanent());
    let unanswered = resolve(Lookup::NoAnswer);
    assert_eq!(unanswered.kind(), FailureKind::Network);
    assert!(!unanswered.is_permanent());
    // Same words as tokio's lookup_host gave, and a hop says where.
    assert_eq!(
        TunnelError::at_hop(1, "bastoin", missing).to_string(),
        "hop 1 (bastoin): cannot resolve db.example: other error"
    );
}
