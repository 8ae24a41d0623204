//! What the unit tests of several modules build alike.

use std::time::SystemTime;

use tunneld_ssh::Negotiated;

use crate::state::{RemoteState, RemoteStatus, TunnelState};

/// A tunnel that is up on `db.example`, with one remote forward (`8080:localhost:80`) in each
/// of `remote`'s states.
pub(crate) fn up(remote: Vec<RemoteState>) -> TunnelState {
    TunnelState::Up {
        connection: 1,
        peer: "db.example".to_owned(),
        since: SystemTime::UNIX_EPOCH,
        negotiated: Negotiated {
            cipher: "aes128-gcm@openssh.com".to_owned(),
            compression: "none".to_owned(),
        },
        remote: remote
            .into_iter()
            .map(|state| RemoteStatus {
                spec: "8080:localhost:80".to_owned(),
                state,
            })
            .collect(),
    }
}
