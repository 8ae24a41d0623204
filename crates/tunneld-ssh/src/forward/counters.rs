//! What a forward has carried: the one set of counters that `tunneld status` and the metrics
//! both read.
//!
//! The counters belong to the tunnel's supervisor, which hands them to the forwarders, so they
//! outlive every SSH connection. Every forwarded connection adds to them per chunk with Relaxed
//! atomics: a reader wants a recent value, not an ordering with anything else, and an
//! uncontended Relaxed add costs next to nothing beside the chunk's encryption.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};

use tunneld_config::RemoteForward;

/// The counters of one forward.
#[derive(Debug, Default)]
pub struct ForwardCounters {
    active: AtomicU64,
    total: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    listen: Mutex<Vec<SocketAddr>>,
    sockets: Mutex<Vec<String>>,
}

/// The counters of one forward, read at one instant (each value on its own: a connection may
/// be counted in `connections_total` a moment before its first byte).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CountersRead {
    /// Forwarded connections open now.
    pub active: u64,
    /// Forwarded connections since the counters were made.
    pub connections_total: u64,
    /// Bytes the forward's clients sent into the tunnel.
    pub bytes_in: u64,
    /// Bytes that came back out to them.
    pub bytes_out: u64,
    /// The addresses its listeners are bound to (local and dynamic forwards), in bind order.
    pub listen: Vec<SocketAddr>,
    /// The Unix sockets it listens on (local forwards), by path.
    pub sockets: Vec<String>,
}

impl ForwardCounters {
    /// Counts a forwarded connection, open until the returned guard is dropped.
    pub fn opened(&self) -> Active<'_> {
        self.total.fetch_add(1, Relaxed);
        self.active.fetch_add(1, Relaxed);
        Active(self)
    }

    /// Bytes that a client sent into the tunnel.
    pub fn count_in(&self, n: usize) {
        self.bytes_in.fetch_add(n as u64, Relaxed);
    }

    /// Bytes that came back out to a client.
    pub fn count_out(&self, n: usize) {
        self.bytes_out.fetch_add(n as u64, Relaxed);
    }

    /// Records a listener of the forward, once it is bound.
    pub fn listening(&self, addr: SocketAddr) {
        let mut listen = self.listen.lock().unwrap_or_else(PoisonError::into_inner);
        if !listen.contains(&addr) {
            listen.push(addr);
        }
    }

    /// Records the Unix socket a forward listens on, once it is bound.
    pub fn listening_on(&self, path: String) {
        let mut sockets = self.sockets.lock().unwrap_or_else(PoisonError::into_inner);
        if !sockets.contains(&path) {
            sockets.push(path);
        }
    }

    /// The values now.
    pub fn read(&self) -> CountersRead {
        CountersRead {
            active: self.active.load(Relaxed),
            connections_total: self.total.load(Relaxed),
            bytes_in: self.bytes_in.load(Relaxed),
            bytes_out: self.bytes_out.load(Relaxed),
            listen: self
                .listen
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
            sockets: self
                .sockets
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        }
    }
}

/// A forwarded connection that is open: counted as active until dropped.
#[derive(Debug)]
pub struct Active<'a>(&'a ForwardCounters);

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Relaxed);
    }
}

/// How a pipe counts into a forward's counters: which of its two sides is the forward's client.
/// For `local` and `dynamic` forwards the client is the TCP side; for a `remote` forward it is
/// the channel, whose client connected to the server's port (the TCP side is the target).
#[derive(Clone, Copy, Debug)]
pub struct Tally<'a> {
    counters: &'a ForwardCounters,
    tcp_is_client: bool,
}

impl<'a> Tally<'a> {
    /// The TCP side is the client (local and dynamic forwards).
    pub fn tcp_client(counters: &'a ForwardCounters) -> Self {
        Tally {
            counters,
            tcp_is_client: true,
        }
    }

    /// The channel's side is the client (remote forwards).
    pub fn channel_client(counters: &'a ForwardCounters) -> Self {
        Tally {
            counters,
            tcp_is_client: false,
        }
    }

    /// Counts a forwarded connection, open until the guard is dropped.
    pub(crate) fn opened(self) -> Active<'a> {
        self.counters.opened()
    }

    /// Bytes read from the TCP side and sent into the channel.
    pub(crate) fn read_from_tcp(self, n: usize) {
        if self.tcp_is_client {
            self.counters.count_in(n);
        } else {
            self.counters.count_out(n);
        }
    }

    /// Bytes from the channel written to the TCP side.
    pub(crate) fn written_to_tcp(self, n: usize) {
        if self.tcp_is_client {
            self.counters.count_out(n);
        } else {
            self.counters.count_in(n);
        }
    }
}

/// The counters of a tunnel's remote forwards, found by the forward that a channel from the
/// server belongs to.
#[derive(Clone, Debug, Default)]
pub struct RemoteCounters(Arc<Vec<(RemoteForward, Arc<ForwardCounters>)>>);

impl RemoteCounters {
    /// Each remote forward with its counters.
    pub fn new(forwards: impl IntoIterator<Item = (RemoteForward, Arc<ForwardCounters>)>) -> Self {
        RemoteCounters(Arc::new(forwards.into_iter().collect()))
    }

    /// The counters of `forward`. A forward that has none (not one of the tunnel's) gets fresh
    /// counters that nobody reads, so that forwarding never depends on counting.
    pub fn of(&self, forward: &RemoteForward) -> Arc<ForwardCounters> {
        self.0
            .iter()
            .find(|(f, _)| f == forward)
            .map(|(_, counters)| counters.clone())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn active_goes_back_down_and_the_total_stays() {
        let counters = ForwardCounters::default();
        let first = counters.opened();
        let second = counters.opened();
        counters.count_in(5);
        counters.count_out(7);
        assert_eq!(counters.read().active, 2);
        drop(first);
        drop(second);
        let read = counters.read();
        assert_eq!(
            (
                read.active,
                read.connections_total,
                read.bytes_in,
                read.bytes_out
            ),
            (0, 2, 5, 7)
        );
    }

    #[test]
    fn a_listener_is_recorded_once() {
        let counters = ForwardCounters::default();
        let addr: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        counters.listening(addr);
        counters.listening(addr);
        assert_eq!(counters.read().listen, vec![addr]);
    }
}
