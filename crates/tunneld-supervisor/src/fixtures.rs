//! What the unit tests of several modules build alike.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tunneld_config::{
    Backoff, BindAddress, Hop, HostKeyPolicy, Keepalive, Listen, LocalForward, RemoteForward,
    RemoteListen, RemoteTarget, Target, Tunnel,
};
use tunneld_ssh::Negotiated;

use crate::board::Board;
use crate::health::Liveness;
use crate::state::{ListenerState, ListenerStatus, RemoteState, RemoteStatus, TunnelState, all_up};

/// What the server negotiated, in every fixture.
pub(crate) fn negotiated() -> Negotiated {
    Negotiated {
        cipher: "aes128-gcm@openssh.com".to_owned(),
        compression: "none".to_owned(),
    }
}

/// A tunnel connected to `db.example`, with one remote forward (`8080:localhost:80`) in each of
/// `remote`'s states and one local forward (`5432:localhost:5432`) in each of `listeners`':
/// `Up` when every one of them is, `Degraded` otherwise.
pub(crate) fn connected(remote: Vec<RemoteState>, listeners: Vec<ListenerState>) -> TunnelState {
    let remote: Vec<RemoteStatus> = remote
        .into_iter()
        .map(|state| RemoteStatus {
            spec: "8080:localhost:80".to_owned(),
            state,
        })
        .collect();
    let listeners: Vec<ListenerStatus> = listeners
        .into_iter()
        .map(|state| ListenerStatus {
            spec: "5432:localhost:5432".to_owned(),
            state,
        })
        .collect();
    let (connection, peer, since) = (1, "db.example".to_owned(), SystemTime::UNIX_EPOCH);
    if all_up(&remote, &listeners) {
        TunnelState::Up {
            connection,
            peer,
            since,
            negotiated: negotiated(),
            remote,
            listeners,
        }
    } else {
        TunnelState::Degraded {
            connection,
            peer,
            since,
            negotiated: negotiated(),
            remote,
            listeners,
        }
    }
}

/// A tunnel that is up on `db.example`, with no forwards that could fail.
pub(crate) fn up() -> TunnelState {
    connected(Vec::new(), Vec::new())
}

/// A tunnel `t` to `db.example` with these forwards, whose server is never really dialled.
pub(crate) fn tunnel(local: &[LocalForward], remote: &[RemoteForward]) -> Tunnel {
    let target = Hop {
        label: "db".to_owned(),
        hostname: "db.example".to_owned(),
        port: 22,
        user: "tunneld".to_owned(),
        identity_files: Vec::new(),
        certificate_files: Vec::new(),
        use_agent: true,
        known_hosts: PathBuf::from("/nonexistent/known_hosts"),
        global_known_hosts: PathBuf::from("/nonexistent/global_known_hosts"),
        host_key_policy: HostKeyPolicy::Strict,
        update_host_keys: true,
        connect_timeout: Duration::from_secs(10),
        compression: false,
        ciphers: Vec::new(),
        rekey_limit: tunneld_config::RekeyLimit::default(),
        proxy: None,
    };
    Tunnel {
        name: "t".to_owned(),
        target,
        jump: Vec::new(),
        local: local.to_vec(),
        remote: remote.to_vec(),
        dynamic: Vec::new(),
        keepalive: Keepalive {
            interval: Some(Duration::from_secs(15)),
            max: 3,
        },
        backoff: Backoff {
            min: Duration::from_secs(1),
            max: Duration::from_secs(20),
            max_network: Duration::from_secs(5),
        },
        exit_on_forward_failure: false,
    }
}

/// `5432:localhost:5432` on 127.0.0.1 and a given port.
pub(crate) fn local_forward(port: u16) -> LocalForward {
    LocalForward {
        listen: Listen::Port {
            bind: BindAddress::Host("127.0.0.1".to_owned()),
            port,
        },
        target: Target::Port {
            host: "localhost".to_owned(),
            port: 5432,
        },
        spec: format!("127.0.0.1:{port}:localhost:5432"),
    }
}

/// `8080:localhost:80`.
pub(crate) fn remote_forward() -> RemoteForward {
    RemoteForward {
        listen: RemoteListen::Port {
            bind: BindAddress::Default,
            port: 8080,
        },
        target: RemoteTarget::Connect(Target::Port {
            host: "localhost".to_owned(),
            port: 80,
        }),
        spec: "8080:localhost:80".to_owned(),
    }
}

/// A board for `tunnel`, and a receiver of what it publishes.
pub(crate) fn board(tunnel: &Tunnel) -> (Arc<Board>, watch::Receiver<TunnelState>) {
    let (state, watcher) = watch::channel(TunnelState::Starting);
    let board = Board::new(
        state,
        Arc::new(Liveness::new()),
        Arc::new(crate::record::Record::new(std::time::SystemTime::now())),
        tunnel,
    );
    (Arc::new(board), watcher)
}
