//! What a tunnel has carried, and the latest round trip to its server: kept by the tunnel's
//! task across its connections, handed to its forwarders, and read by snapshots.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tunneld_config::Tunnel;
use tunneld_ssh::forward::{ForwardCounters, RemoteCounters};

/// One tunnel's counters. They live as long as the tunnel's task: a reconnect keeps them, a
/// reload that restarts the tunnel starts them again from zero.
#[derive(Debug, Default)]
pub(crate) struct TunnelCounters {
    /// One per forward, in the snapshot's order: local, then remote, then dynamic.
    forwards: Vec<Arc<ForwardCounters>>,
    locals: usize,
    remote_count: usize,
    remotes: RemoteCounters,
    /// The round trip of the last answered probe, while connected.
    rtt: Mutex<Option<Duration>>,
}

impl TunnelCounters {
    /// Fresh counters for each forward of `tunnel`.
    pub(crate) fn new(tunnel: &Tunnel) -> Self {
        let count = tunnel.local.len() + tunnel.remote.len() + tunnel.dynamic.len();
        let forwards: Vec<Arc<ForwardCounters>> = (0..count).map(|_| Arc::default()).collect();
        let locals = tunnel.local.len();
        let remotes = RemoteCounters::new(
            tunnel
                .remote
                .iter()
                .cloned()
                .zip(forwards.iter().skip(locals).cloned()),
        );
        TunnelCounters {
            forwards,
            locals,
            remote_count: tunnel.remote.len(),
            remotes,
            rtt: Mutex::new(None),
        }
    }

    /// Every forward's counters, in the snapshot's order.
    pub(crate) fn forwards(&self) -> &[Arc<ForwardCounters>] {
        &self.forwards
    }

    /// The counters of the listening forward at `index` in the listeners' order (local, then
    /// dynamic).
    pub(crate) fn listener(&self, index: usize) -> Arc<ForwardCounters> {
        let at = if index < self.locals {
            index
        } else {
            index + self.remote_count
        };
        self.forwards.get(at).cloned().unwrap_or_default()
    }

    /// The remote forwards' counters, for the routing of the server's channels.
    pub(crate) fn remotes(&self) -> RemoteCounters {
        self.remotes.clone()
    }

    /// Records the round trip of an answered probe, or forgets it (`None`) when the connection
    /// ends.
    pub(crate) fn set_rtt(&self, rtt: Option<Duration>) {
        *self.rtt.lock().unwrap_or_else(PoisonError::into_inner) = rtt;
    }

    /// The round trip of the last answered probe of the current connection.
    pub(crate) fn rtt(&self) -> Option<Duration> {
        *self.rtt.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
