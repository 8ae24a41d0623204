//! One established SSH connection: dialled (directly or through jump hosts), verified,
//! authenticated, and watched until it ends.
//!
//! `dial.rs` establishes one hop (`heard.rs` tells whether its server ever spoke), `end.rs` says
//! when and why the connection ended, `requests.rs` holds what the forwarders ask of a live
//! connection, and `rtt.rs` measures the round trip to the server.

mod dial;
mod end;
mod heard;
mod requests;
mod rtt;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use russh::client::Handle;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::info;
use tunneld_config::{Hop, Keepalive};

use crate::algorithms::Negotiated;
use crate::descriptors;
use crate::error::{Peer, TunnelError};
use crate::handler::{ClientHandler, Shared};
use crate::routes::{IncomingForward, Routes};
use dial::Dial;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// How far an attempt to establish a connection has come, reported as it happens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Opening the TCP connection (or the channel through the previous hop) and handshaking.
    Connecting {
        /// The server.
        peer: Peer,
    },
    /// The host key was accepted; authenticating.
    Authenticating {
        /// The server.
        peer: Peer,
    },
    /// A read-only connection ([`Connection::establish_read_only`]) met a server that no
    /// known_hosts file names, under `accept-new`: a daemon would learn this key; nothing was
    /// written.
    WouldLearn {
        /// The server.
        peer: Peer,
        /// The key's type and SHA256 fingerprint: `ssh-ed25519 SHA256:...`.
        fingerprint: String,
    },
}

/// Receives [`Progress`] reports.
pub type ProgressFn = dyn Fn(Progress) + Send + Sync;

/// One SSH session to one server.
struct Session {
    /// The only strong reference: the handler holds a weak one.
    handle: Arc<Handle<ClientHandler>>,
    shared: Arc<Shared>,
    ended: CancellationToken,
    /// Remote forward routes (the target session only).
    routes: Option<Arc<Routes>>,
    /// Where forwarded connections arrive, until the tunnel takes it.
    incoming: std::sync::Mutex<Option<mpsc::UnboundedReceiver<IncomingForward>>>,
    /// The server.
    peer: Peer,
    /// Its position in a jump chain (from 1), or `None` when dialled directly.
    hop: Option<usize>,
}

/// An established, authenticated SSH connection that carries a tunnel's forwards.
pub struct Connection {
    id: u64,
    target: Session,
    /// The sessions to the jump hosts, outermost first. Kept alive for as long as the target
    /// session runs inside their channels.
    jumps: Vec<Session>,
    negotiated: Negotiated,
    keepalive: Keepalive,
    channel_open_timeout: Duration,
    /// Cancelled when any session of the chain ends (the target's, or a jump host's).
    chain_ended: CancellationToken,
    /// The chain's one socket (to the first hop; the others run inside its channels), counted
    /// so that forwarded connections leave room for it.
    _descriptor: descriptors::Slot,
}

impl Connection {
    /// Connects to `target`, through `jump` hosts in order, verifying each host key and
    /// authenticating at each hop. Each hop has its own `connect_timeout`. Keepalives run on the
    /// target session, the one the forwards use.
    pub async fn establish(
        target: &Hop,
        jump: &[Hop],
        keepalive: &Keepalive,
        progress: &ProgressFn,
    ) -> Result<Connection, TunnelError> {
        Self::establish_with(target, jump, keepalive, progress, false).await
    }

    /// [`Connection::establish`] that writes nothing (`tunneld check --connect`): known_hosts is
    /// only read. A host that no file names is accepted under `accept-new` and reported as
    /// [`Progress::WouldLearn`]; host keys the server announces are not followed.
    pub async fn establish_read_only(
        target: &Hop,
        jump: &[Hop],
        keepalive: &Keepalive,
        progress: &ProgressFn,
    ) -> Result<Connection, TunnelError> {
        Self::establish_with(target, jump, keepalive, progress, true).await
    }

    async fn establish_with(
        target: &Hop,
        jump: &[Hop],
        keepalive: &Keepalive,
        progress: &ProgressFn,
        read_only: bool,
    ) -> Result<Connection, TunnelError> {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let chain_ended = CancellationToken::new();
        let count = jump.len() + 1;
        let mut sessions: Vec<Session> = Vec::with_capacity(count);
        for (i, hop) in jump.iter().chain(std::iter::once(target)).enumerate() {
            let is_target = i + 1 == count;
            let at = Dial {
                hop,
                index: (count > 1).then_some(i + 1),
                keepalive: is_target.then_some(keepalive),
                progress,
                chain_ended: &chain_ended,
                read_only,
            };
            let session = at.dial(sessions.last()).await?;
            sessions.push(session);
        }
        let Some(session) = sessions.pop() else {
            unreachable!("the loop dials the target last");
        };
        let negotiated = session
            .shared
            .negotiated
            .lock()
            .ok()
            .and_then(|n| n.clone())
            .unwrap_or_default();
        info!(
            connection = id,
            peer = %session.peer,
            cipher = %negotiated.cipher,
            compression = %negotiated.compression,
            "connected"
        );
        Ok(Connection {
            id,
            target: session,
            jumps: sessions,
            negotiated,
            keepalive: *keepalive,
            channel_open_timeout: target.connect_timeout,
            chain_ended,
            _descriptor: descriptors::hold(),
        })
    }

    /// A number that tells connections apart in logs and tests: a reconnect makes a new one.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The target server.
    pub fn peer(&self) -> &Peer {
        &self.target.peer
    }

    /// The cipher and compression agreed with the target server.
    pub fn negotiated(&self) -> &Negotiated {
        &self.negotiated
    }

    /// The target server's name in the configuration, for messages about forwards.
    fn label(&self) -> &str {
        &self.target.peer.label
    }
}
