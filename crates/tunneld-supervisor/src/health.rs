//! The daemon's health as systemd should see it: READY once every tunnel has finished its first
//! attempt, a one-line STATUS, and whether the watchdog may be petted.
//!
//! A tunnel that is patiently reconnecting is healthy; so is a degraded one, connected and
//! retrying the forwards that failed while it serves the others. One stuck in a step beyond that
//! step's own timeouts is wedged, and a wedged daemon must stop petting the watchdog so that
//! systemd restarts it.

use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::state::{RemoteState, TunnelState};

/// How much longer than its own bound a step may take before the tunnel counts as wedged:
/// room for a loaded machine, far below any WatchdogSec worth setting.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(10);

/// While up, a tunnel's task proves it is alive this often.
pub(crate) const HEARTBEAT: Duration = Duration::from_secs(1);

/// When a tunnel's task last showed signs of life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Marks {
    /// When the task entered its current state: a step's bound runs from here.
    pub(crate) entered: Instant,
    /// When the task last proved it is alive: a heartbeat while up, or entering a state.
    pub(crate) beat: Instant,
}

/// A tunnel's [`Marks`], written by its task and read by the report.
#[derive(Debug)]
pub(crate) struct Liveness {
    marks: Mutex<Marks>,
}

impl Liveness {
    pub(crate) fn new() -> Self {
        let now = Instant::now();
        Liveness {
            marks: Mutex::new(Marks {
                entered: now,
                beat: now,
            }),
        }
    }

    /// The task is alive (a heartbeat while up).
    pub(crate) fn beat(&self) {
        if let Ok(mut marks) = self.marks.lock() {
            marks.beat = Instant::now();
        }
    }

    /// The task entered a new state.
    pub(crate) fn entered(&self) {
        if let Ok(mut marks) = self.marks.lock() {
            let now = Instant::now();
            *marks = Marks {
                entered: now,
                beat: now,
            };
        }
    }

    /// The marks as they are now. A poisoned lock (a panic while holding it, which the code
    /// above cannot do) reads as "alive now" rather than wedging the daemon over it.
    pub(crate) fn read(&self) -> Marks {
        self.marks.lock().map(|marks| *marks).unwrap_or_else(|_| {
            let now = Instant::now();
            Marks {
                entered: now,
                beat: now,
            }
        })
    }
}

/// One tunnel as the report sees it.
pub(crate) struct TunnelView<'a> {
    pub(crate) name: &'a str,
    pub(crate) state: TunnelState,
    /// What its task last showed of itself.
    pub(crate) marks: Marks,
    /// The longest a connection attempt may take (the sum of its hops' connect timeouts).
    pub(crate) attempt_bound: Duration,
}

/// What systemd should be told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// Every tunnel has finished its first attempt: up, degraded (every remote forward has had
    /// its answer, granted or not; a listener that could not be bound is being retried), or
    /// failed with its reason.
    pub ready: bool,
    /// `1/3 tunnels up, 1 degraded; db: degraded (db-server), 2/3 forwards up; ...; web:
    /// authentication refused for ...; retry in 40s`: every tunnel that is not up, and why.
    pub status: String,
    /// Tunnels stuck beyond their bounds, with why; empty when healthy.
    pub wedged: Vec<String>,
}

impl Report {
    /// Whether the watchdog may be petted.
    pub fn healthy(&self) -> bool {
        self.wedged.is_empty()
    }
}

/// The report at `now`. Pure: every instant it compares comes in through its arguments, so that
/// tests can judge any moment without waiting for it.
pub(crate) fn report(tunnels: &[TunnelView<'_>], grace: Duration, now: Instant) -> Report {
    let total = tunnels.len();
    let up = tunnels.iter().filter(|t| t.state.is_up()).count();
    let degraded = tunnels.iter().filter(|t| t.state.is_degraded()).count();
    let mut status = format!("{up}/{total} tunnels up");
    if degraded > 0 {
        let _ = write!(status, ", {degraded} degraded");
    }
    let mut ready = true;
    let mut wedged = Vec::new();
    for tunnel in tunnels {
        if !settled(&tunnel.state) {
            ready = false;
        }
        if !tunnel.state.is_up() {
            let _ = write!(status, "; {}: {}", tunnel.name, tunnel.state.at(now));
        }
        if let Some(why) = stuck(tunnel, grace, now) {
            wedged.push(format!("{}: {why}", tunnel.name));
        }
    }
    Report {
        ready,
        status,
        wedged,
    }
}

fn settled(state: &TunnelState) -> bool {
    match state {
        TunnelState::Up { remote, .. } | TunnelState::Degraded { remote, .. } => remote
            .iter()
            .all(|r| !matches!(r.state, RemoteState::Requesting)),
        TunnelState::BackingOff { .. } | TunnelState::Stopped => true,
        TunnelState::Starting
        | TunnelState::Connecting { .. }
        | TunnelState::Authenticating { .. } => false,
    }
}

/// Why a tunnel counts as wedged, if it does.
fn stuck(tunnel: &TunnelView<'_>, grace: Duration, now: Instant) -> Option<String> {
    let in_state = now.saturating_duration_since(tunnel.marks.entered);
    match &tunnel.state {
        // A degraded tunnel is connected and beats like an up one; its forwards retry on
        // their own pauses, which do not hold its task up.
        TunnelState::Up { .. } | TunnelState::Degraded { .. } => {
            let silent = now.saturating_duration_since(tunnel.marks.beat);
            (silent > HEARTBEAT + grace).then(|| {
                format!(
                    "no sign of life for {}s while {}",
                    silent.as_secs(),
                    if tunnel.state.is_up() {
                        "up"
                    } else {
                        "degraded"
                    }
                )
            })
        }
        TunnelState::Starting
        | TunnelState::Connecting { .. }
        | TunnelState::Authenticating { .. } => {
            (in_state > tunnel.attempt_bound + grace).then(|| {
                format!(
                    "{} for {}s, beyond its {}s timeout",
                    tunnel.state.at(now),
                    in_state.as_secs(),
                    tunnel.attempt_bound.as_secs()
                )
            })
        }
        TunnelState::BackingOff { retry_at, .. } => {
            let late = now.saturating_duration_since(*retry_at);
            (late > grace).then(|| format!("retry overdue by {}s", late.as_secs()))
        }
        TunnelState::Stopped => None,
    }
}

#[cfg(test)]
mod tests;
