//! How far a failed attempt got (`TunnelError::reach`), against peers on loopback that fail at
//! each step before SSH: nothing listening, a listener that closes at once, one that never
//! speaks, one that speaks something else. The supervisor retries each by what it cost the
//! server, so the classification is by type, checked here end to end through the real dialler.

#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::net::{Ipv4Addr, TcpListener};
use std::path::PathBuf;
use std::time::Duration;

use tunneld_config::{Hop, HostKeyPolicy, Keepalive};
use tunneld_ssh::{Connection, FailureKind, Reach, TunnelError};

/// A hop to 127.0.0.1:`port` that is never authenticated to (every test fails before that).
fn hop(port: u16, connect_timeout: Duration) -> Hop {
    Hop {
        label: format!("127.0.0.1:{port}"),
        hostname: "127.0.0.1".to_owned(),
        port,
        user: "tester".to_owned(),
        identity_files: Vec::new(),
        certificate_files: Vec::new(),
        use_agent: false,
        known_hosts: PathBuf::from("/nonexistent/known_hosts"),
        global_known_hosts: PathBuf::from("/nonexistent/global_known_hosts"),
        host_key_policy: HostKeyPolicy::Strict,
        update_host_keys: true,
        connect_timeout,
        compression: false,
        ciphers: Vec::new(),
        rekey_limit: tunneld_config::RekeyLimit::default(),
        proxy: None,
    }
}

async fn fail(port: u16, connect_timeout: Duration) -> TunnelError {
    let keepalive = Keepalive {
        interval: None,
        max: 3,
    };
    let hop = hop(port, connect_timeout);
    let progress = |_| {};
    let establishing = Connection::establish(&hop, &[], &keepalive, &progress);
    match tokio::time::timeout(Duration::from_secs(20), establishing).await {
        Ok(Err(err)) => err,
        Ok(Ok(_)) => panic!("connected to a peer that is no SSH server"),
        Err(_) => panic!("the attempt did not end within 20 s"),
    }
}

/// A listener that does `each` with every connection it accepts, on a thread of its own.
fn serve(each: fn(std::net::TcpStream)) -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            each(stream);
        }
    });
    port
}

#[tokio::test]
async fn a_refused_connect_is_the_networks() {
    let port = {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        listener.local_addr().unwrap().port()
    };
    let err = fail(port, Duration::from_secs(5)).await;
    assert!(matches!(err, TunnelError::Connect { .. }), "{err}");
    assert_eq!(err.reach(), Reach::Network, "{err}");
    assert_eq!(err.kind(), FailureKind::Network);
    assert!(!err.is_permanent());
}

#[tokio::test]
async fn a_connection_closed_before_any_byte_is_the_networks() {
    // A port forward or proxy in front of a server that is down accepts, then closes.
    let port = serve(drop);
    let err = fail(port, Duration::from_secs(5)).await;
    assert!(
        matches!(err, TunnelError::ClosedBeforeVersion { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().starts_with(&format!(
            "127.0.0.1:{port}: closed before the server sent its SSH version: "
        )),
        "{err}"
    );
    assert_eq!(err.reach(), Reach::Network);
    assert_eq!(err.kind(), FailureKind::Network);
}

#[tokio::test]
async fn a_peer_that_never_speaks_is_unanswered() {
    // The kernel completes the TCP handshake into the backlog; nobody ever sends a version.
    let mute = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let port = mute.local_addr().unwrap().port();
    let err = fail(port, Duration::from_millis(500)).await;
    // Worded as before: the version is the first step of the SSH handshake.
    assert_eq!(
        err.to_string(),
        format!("127.0.0.1:{port}: timed out after 0.5s during SSH handshake")
    );
    assert_eq!(err.reach(), Reach::Unanswered);
    assert_eq!(err.kind(), FailureKind::Timeout);
    drop(mute);
}

#[tokio::test]
async fn a_peer_that_answered_was_reached() {
    // Something spoke (not SSH), then closed: a server took part.
    let port = serve(|mut stream| {
        let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n");
    });
    let err = fail(port, Duration::from_secs(5)).await;
    assert!(matches!(err, TunnelError::Protocol { .. }), "{err:?}");
    assert_eq!(err.reach(), Reach::Server, "{err}");
}
