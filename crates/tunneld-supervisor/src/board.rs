//! A tunnel's published state, and the status of each forward that a connected state is made
//! of. Everything that changes the state goes through here, so that `Up` and `Degraded` always
//! agree with the forwards, and so that "tunnel up" is logged only once every forward is.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use tokio::sync::watch;
use tracing::{info, warn};
use tunneld_config::Tunnel;
use tunneld_ssh::Negotiated;

use crate::health::Liveness;
use crate::record::Record;
use crate::state::{
    ListenerState, ListenerStatus, RemoteState, RemoteStatus, TunnelState, all_up, not_up,
};
use crate::state_name::name_of;

/// The writer of one tunnel's [`TunnelState`].
pub(crate) struct Board {
    state: watch::Sender<TunnelState>,
    liveness: Arc<Liveness>,
    /// When the state's name last changed, and what the state alone does not say.
    record: Arc<Record>,
    /// The remote forwards as written, in order.
    remote: Vec<String>,
    /// Listeners outlive connections, so their statuses are kept here between connections and
    /// copied into each connected state. Only changed while the state's own lock is held (inside
    /// `send_modify`), so a listener that binds just as a connection comes up is never lost.
    listeners: Mutex<Vec<ListenerStatus>>,
    /// What the log last said about the current connection.
    announced: Mutex<Announced>,
    /// The remote forwards that a server has granted on some connection of this tunnel.
    granted: Mutex<Vec<usize>>,
}

/// What the log last said about the forwards of the current connection.
#[derive(Debug, PartialEq)]
enum Announced {
    Nothing,
    Up,
    /// Degraded, for these reasons.
    Degraded(Vec<String>),
}

impl Board {
    /// A board for `tunnel`, publishing on `state`. Its listeners count as listening until the
    /// first binding says otherwise (no connected state is published before that).
    pub(crate) fn new(
        state: watch::Sender<TunnelState>,
        liveness: Arc<Liveness>,
        record: Arc<Record>,
        tunnel: &Tunnel,
    ) -> Self {
        let specs = tunnel.local.iter().map(|f| &f.spec);
        let listeners = specs
            .chain(tunnel.dynamic.iter().map(|f| &f.spec))
            .map(|spec| ListenerStatus {
                spec: spec.clone(),
                state: ListenerState::Listening,
            })
            .collect();
        Board {
            state,
            liveness,
            record,
            remote: tunnel.remote.iter().map(|f| f.spec.clone()).collect(),
            listeners: Mutex::new(listeners),
            announced: Mutex::new(Announced::Nothing),
            granted: Mutex::new(Vec::new()),
        }
    }

    /// Publishes a state that is not connected (starting, connecting, backing off, stopped).
    pub(crate) fn publish(&self, state: TunnelState) {
        self.liveness.entered();
        self.state.send_replace(state);
        self.note_state();
    }

    /// Moves `since` when the published state's name changed.
    fn note_state(&self) {
        let name = name_of(&self.state.borrow());
        self.record.entered(name, SystemTime::now());
    }

    /// The history that the state alone does not tell.
    pub(crate) fn record(&self) -> &Record {
        &self.record
    }

    /// The connection came up: every remote forward is yet to be asked for, and each listener is
    /// as it was. Publishes `Up` or `Degraded` accordingly.
    pub(crate) fn connected(&self, connection: u64, peer: String, negotiated: Negotiated) {
        self.liveness.entered();
        self.record.connected(SystemTime::now());
        *lock(&self.announced) = Announced::Nothing;
        self.state.send_modify(|state| {
            let remote = self
                .remote
                .iter()
                .map(|spec| RemoteStatus {
                    spec: spec.clone(),
                    state: RemoteState::Requesting,
                })
                .collect();
            *state = made_of(Connected {
                connection,
                peer,
                since: SystemTime::now(),
                negotiated,
                remote,
                listeners: lock(&self.listeners).clone(),
            });
        });
        self.announce();
    }

    /// Whether the `index`th remote forward was granted on an earlier connection.
    pub(crate) fn granted_before(&self, index: usize) -> bool {
        lock(&self.granted).contains(&index)
    }

    /// The `index`th remote forward is now `new` (on the current connection).
    pub(crate) fn set_remote(&self, index: usize, new: RemoteState) {
        if matches!(new, RemoteState::Listening { .. }) {
            let mut granted = lock(&self.granted);
            if !granted.contains(&index) {
                granted.push(index);
            }
        }
        let changed = self.state.send_if_modified(|state| {
            let Some(mut connected) = take_connected(state) else {
                return false;
            };
            let changed = match connected.remote.get_mut(index) {
                Some(status) if status.state != new => {
                    status.state = new;
                    true
                }
                _ => false,
            };
            *state = made_of(connected);
            changed
        });
        if changed {
            self.announce();
        }
    }

    /// The listener of the `index`th local-then-dynamic forward is now `new`.
    pub(crate) fn set_listener(&self, index: usize, new: ListenerState) {
        let changed = self.state.send_if_modified(|state| {
            let mut listeners = lock(&self.listeners);
            match listeners.get_mut(index) {
                Some(status) if status.state != new => status.state = new,
                _ => return false,
            }
            let Some(mut connected) = take_connected(state) else {
                return false;
            };
            connected.listeners.clone_from(&listeners);
            *state = made_of(connected);
            true
        });
        if changed {
            self.announce();
        }
    }

    /// The listeners' statuses as they are now.
    pub(crate) fn listeners(&self) -> Vec<ListenerStatus> {
        lock(&self.listeners).clone()
    }

    /// Logs "tunnel up" when every forward has become up, and "tunnel degraded" when the set of
    /// forwards that failed changes; a remote forward that has merely not been answered yet is
    /// neither.
    fn announce(&self) {
        self.note_state();
        let mut announced = lock(&self.announced);
        let (now, connection, forwards_up) = match &*self.state.borrow() {
            TunnelState::Up { connection, .. } => (Announced::Up, *connection, String::new()),
            TunnelState::Degraded {
                connection,
                remote,
                listeners,
                ..
            } => {
                let answered: Vec<RemoteStatus> = remote
                    .iter()
                    .filter(|r| r.state != RemoteState::Requesting)
                    .cloned()
                    .collect();
                let (failed, _) = not_up(&answered, listeners);
                if failed.is_empty() {
                    return;
                }
                let (not_up, total) = not_up(remote, listeners);
                let forwards_up = format!("{}/{total}", total - not_up.len());
                (Announced::Degraded(failed), *connection, forwards_up)
            }
            _ => return,
        };
        if *announced == now {
            return;
        }
        if let Announced::Degraded(failed) = &now {
            warn!(
                connection,
                forwards_up,
                error = %failed.join("; "),
                "tunnel degraded; serving the forwards that work and retrying the others"
            );
        } else {
            info!(connection, "tunnel up");
        }
        *announced = now;
    }
}

/// The fields of a connected state, `Up` or `Degraded` alike.
struct Connected {
    connection: u64,
    peer: String,
    since: SystemTime,
    negotiated: Negotiated,
    remote: Vec<RemoteStatus>,
    listeners: Vec<ListenerStatus>,
}

/// Takes the fields out of a connected state (leaving `Stopped` in its place until it is put
/// back); `None`, and the state untouched, when it is not connected.
fn take_connected(state: &mut TunnelState) -> Option<Connected> {
    if !state.is_up() && !state.is_degraded() {
        return None;
    }
    match std::mem::replace(state, TunnelState::Stopped) {
        TunnelState::Up {
            connection,
            peer,
            since,
            negotiated,
            remote,
            listeners,
        }
        | TunnelState::Degraded {
            connection,
            peer,
            since,
            negotiated,
            remote,
            listeners,
        } => Some(Connected {
            connection,
            peer,
            since,
            negotiated,
            remote,
            listeners,
        }),
        _ => unreachable!("checked that it is connected"),
    }
}

/// `Up` when every forward is, `Degraded` otherwise.
fn made_of(c: Connected) -> TunnelState {
    if all_up(&c.remote, &c.listeners) {
        TunnelState::Up {
            connection: c.connection,
            peer: c.peer,
            since: c.since,
            negotiated: c.negotiated,
            remote: c.remote,
            listeners: c.listeners,
        }
    } else {
        TunnelState::Degraded {
            connection: c.connection,
            peer: c.peer,
            since: c.since,
            negotiated: c.negotiated,
            remote: c.remote,
            listeners: c.listeners,
        }
    }
}

/// A poisoned lock (a panic while holding it, which the code above cannot do) still holds
/// usable statuses.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
