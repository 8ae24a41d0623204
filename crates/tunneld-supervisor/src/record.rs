//! What a tunnel's published state alone cannot tell: when it entered that state, its most
//! recent failure, how often it had to connect again, and when it last came up. The tunnel's
//! board and its connect loop write it; snapshots read it.

use std::sync::{Mutex, PoisonError};
use std::time::SystemTime;

use tunneld_ssh::{FailureKind, TunnelError};

use crate::state_name::{LastError, StateName};

/// One tunnel's history, shared between its task and whoever takes snapshots.
#[derive(Debug)]
pub(crate) struct Record {
    inner: Mutex<History>,
}

/// The history as of one instant.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct History {
    /// The state last entered, and when: `since` moves only when the state's name changes, so
    /// that a remote forward answered on an up connection does not reset it.
    pub(crate) state: StateName,
    pub(crate) since: SystemTime,
    pub(crate) last_error: Option<LastError>,
    /// Failures that made the tunnel connect again, by class, in the order first seen.
    pub(crate) reconnects: Vec<(FailureKind, u64)>,
    pub(crate) last_connect: Option<SystemTime>,
}

impl Record {
    /// A tunnel that is starting now (it shows as connecting until its first attempt).
    pub(crate) fn new(now: SystemTime) -> Self {
        Record {
            inner: Mutex::new(History {
                state: StateName::Connecting,
                since: now,
                last_error: None,
                reconnects: Vec::new(),
                last_connect: None,
            }),
        }
    }

    /// The tunnel's state is now `state`.
    pub(crate) fn entered(&self, state: StateName, now: SystemTime) {
        let mut history = self.lock();
        if history.state != state {
            history.state = state;
            history.since = now;
        }
    }

    /// An attempt or a connection failed with `err`; the tunnel will connect again.
    pub(crate) fn failed(&self, err: &TunnelError, now: SystemTime) {
        let kind = err.kind();
        let mut history = self.lock();
        history.last_error = Some(LastError {
            message: err.to_string(),
            kind,
            at: now,
        });
        match history.reconnects.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, count)) => *count += 1,
            None => history.reconnects.push((kind, 1)),
        }
    }

    /// A connection came up.
    pub(crate) fn connected(&self, now: SystemTime) {
        self.lock().last_connect = Some(now);
    }

    /// The history as it is now.
    pub(crate) fn read(&self) -> History {
        self.lock().clone()
    }

    /// A poisoned lock (a panic while holding it, which the code above cannot do) still holds a
    /// usable history.
    fn lock(&self) -> std::sync::MutexGuard<'_, History> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tunneld_ssh::Peer;

    use super::*;

    fn dropped() -> TunnelError {
        TunnelError::Dropped {
            peer: Peer::new("db.example", "db.example", 22),
        }
    }

    #[test]
    fn since_moves_only_when_the_state_changes() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let record = Record::new(t0);
        record.entered(StateName::Connecting, t0 + Duration::from_secs(1));
        assert_eq!(record.read().since, t0);
        record.entered(StateName::Up, t0 + Duration::from_secs(2));
        record.entered(StateName::Up, t0 + Duration::from_secs(3));
        let history = record.read();
        assert_eq!(history.state, StateName::Up);
        assert_eq!(history.since, t0 + Duration::from_secs(2));
        record.entered(StateName::Degraded, t0 + Duration::from_secs(4));
        assert_eq!(record.read().since, t0 + Duration::from_secs(4));
    }

    #[test]
    fn failures_are_counted_by_class_and_the_last_is_kept_after_recovery() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let record = Record::new(t0);
        assert_eq!(record.read().last_error, None);
        record.failed(&dropped(), t0 + Duration::from_secs(1));
        record.failed(&dropped(), t0 + Duration::from_secs(2));
        record.connected(t0 + Duration::from_secs(3));
        record.entered(StateName::Up, t0 + Duration::from_secs(3));
        let history = record.read();
        assert_eq!(history.reconnects, vec![(FailureKind::Network, 2)]);
        assert_eq!(history.last_connect, Some(t0 + Duration::from_secs(3)));
        let last = history.last_error.expect("kept after recovery");
        assert_eq!(last.kind, FailureKind::Network);
        assert_eq!(last.at, t0 + Duration::from_secs(2));
        assert_eq!(last.message, dropped().to_string());
    }
}
