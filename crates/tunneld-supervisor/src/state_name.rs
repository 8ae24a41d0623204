//! The names of a tunnel's states and of its failures as `tunneld status` and the metrics show
//! them, apart from the snapshot so that the history (`record`) and the snapshot share them.

use std::time::SystemTime;

use tunneld_ssh::FailureKind;

use crate::state::TunnelState;

/// The state of a tunnel, as `tunneld status` and the metrics name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StateName {
    /// Every forward is up.
    Up,
    /// Connected; some forwards are not up.
    Degraded,
    /// Dialling (or about to: listeners are bound before the first attempt).
    Connecting,
    /// The host key was accepted; authenticating.
    Authenticating,
    /// Waiting before the next attempt.
    BackingOff,
    /// Stopped for good.
    Stopped,
}

impl StateName {
    /// Every state, in this order (metrics publish one series per state).
    pub const ALL: [StateName; 6] = [
        StateName::Up,
        StateName::Degraded,
        StateName::Connecting,
        StateName::Authenticating,
        StateName::BackingOff,
        StateName::Stopped,
    ];

    /// The name on the wire: `up`, `degraded`, `connecting`, `authenticating`, `backing-off`,
    /// `stopped`. Never renamed.
    pub fn as_str(self) -> &'static str {
        match self {
            StateName::Up => "up",
            StateName::Degraded => "degraded",
            StateName::Connecting => "connecting",
            StateName::Authenticating => "authenticating",
            StateName::BackingOff => "backing-off",
            StateName::Stopped => "stopped",
        }
    }
}

/// A failure, as `last_error` shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct LastError {
    /// What went wrong, in words.
    pub message: String,
    /// Its class (its name on the wire is `FailureKind`'s Display: `network`, `auth`, ...).
    pub kind: FailureKind,
    /// When it happened.
    pub at: SystemTime,
}

/// The name of a published state.
pub(crate) fn name_of(state: &TunnelState) -> StateName {
    match state {
        TunnelState::Starting | TunnelState::Connecting { .. } => StateName::Connecting,
        TunnelState::Authenticating { .. } => StateName::Authenticating,
        TunnelState::Up { .. } => StateName::Up,
        TunnelState::Degraded { .. } => StateName::Degraded,
        TunnelState::BackingOff { .. } => StateName::BackingOff,
        TunnelState::Stopped => StateName::Stopped,
    }
}
