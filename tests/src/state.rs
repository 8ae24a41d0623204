//! Reading a tunnel's [`TunnelState`] in the tests that run tunneld in process: which connection
//! it is up on, and why it is backing off.

use std::time::Duration;

use tunneld_ssh::FailureKind;
use tunneld_supervisor::TunnelState;

/// The id of the connection an `Up` state is on (a reconnect makes a new one). Panics on any
/// other state.
pub fn connection_id(state: &TunnelState) -> u64 {
    match state {
        TunnelState::Up { connection, .. } => *connection,
        other => panic!("not up: {other}"),
    }
}

/// Whether the tunnel is waiting out a backoff after a failure.
pub fn is_backing_off(state: &TunnelState) -> bool {
    matches!(state, TunnelState::BackingOff { .. })
}

/// A predicate for `InProcess::wait_for`: up, on another connection than `old`.
pub fn up_with_new_connection(old: u64) -> impl Fn(&TunnelState) -> bool {
    move |s| matches!(s, TunnelState::Up { connection, .. } if *connection != old)
}

/// What a `BackingOff` state says about the failure.
#[derive(Debug, Clone)]
pub struct Failure {
    /// What went wrong, as an operator reads it.
    pub reason: String,
    /// Its class.
    pub kind: FailureKind,
    /// Whether retrying cannot help until someone changes something.
    pub permanent: bool,
    /// How long the wait before the next attempt is.
    pub retry_in: Duration,
    /// How many attempts have failed in a row.
    pub failures: u32,
}

/// The failure a `BackingOff` state reports. Panics on any other state.
pub fn backing_off(state: &TunnelState) -> Failure {
    match state {
        TunnelState::BackingOff {
            reason,
            kind,
            permanent,
            retry_in,
            failures,
            ..
        } => Failure {
            reason: reason.clone(),
            kind: *kind,
            permanent: *permanent,
            retry_in: *retry_in,
            failures: *failures,
        },
        other => panic!("not backing off: {other}"),
    }
}
