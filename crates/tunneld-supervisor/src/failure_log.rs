//! Which failures are worth a log line. A tunnel that keeps failing the same way would say the
//! same thing every few seconds for as long as the outage lasts (thousands of lines an hour for a
//! name that does not resolve). So the same failure (same hop, kind and cost) is logged once,
//! then at most once a minute as a summary with the latest error; a different failure is logged
//! at once, and so is the recovery. The repeats go to debug.
//!
//! Only the log is spared: the tunnel's state, and so STATUS=, always holds the latest error.

use std::time::{Duration, SystemTime};

use tokio::time::Instant;
use tracing::{debug, info, warn};
use tunneld_ssh::{FailureKind, TunnelError};

use crate::backoff::Cost;

/// A failure that keeps repeating is summed up at most this often.
pub(crate) const SUMMARY_EVERY: Duration = Duration::from_secs(60);

/// What makes two failures the same one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Sameness {
    pub(crate) hop: Option<usize>,
    pub(crate) kind: FailureKind,
    pub(crate) cost: Cost,
}

/// The same failure, over and over.
#[derive(Debug)]
struct Streak {
    same: Sameness,
    attempts: u32,
    since: SystemTime,
    last_said: Instant,
}

/// What to log about a failure.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Say {
    /// A new failure: in full.
    New,
    /// The same failure again, a minute or more after it was last said: a summary.
    StillFailing {
        /// Failed attempts in a row that failed this way.
        attempts: u32,
        /// When the first of them failed.
        since: SystemTime,
    },
    /// The same failure again: at debug only.
    Again,
}

/// One tunnel's failures, as far as the log is concerned.
#[derive(Debug, Default)]
pub(crate) struct FailureLog {
    streak: Option<Streak>,
    /// Failed attempts since the tunnel was last up, and when the first of them failed.
    outage: Option<(u32, SystemTime)>,
    /// The last failure was not logged: the next attempt's steps go to debug as well.
    quiet: bool,
}

impl FailureLog {
    /// Decides what to say about a failure like `same`, at `now` (`wall` on the wall clock).
    pub(crate) fn judge(&mut self, same: Sameness, now: Instant, wall: SystemTime) -> Say {
        let outage = self.outage.get_or_insert((0, wall));
        outage.0 = outage.0.saturating_add(1);
        let say = match &mut self.streak {
            Some(streak) if streak.same == same => {
                streak.attempts = streak.attempts.saturating_add(1);
                if now.saturating_duration_since(streak.last_said) >= SUMMARY_EVERY {
                    streak.last_said = now;
                    Say::StillFailing {
                        attempts: streak.attempts,
                        since: streak.since,
                    }
                } else {
                    Say::Again
                }
            }
            _ => {
                self.streak = Some(Streak {
                    same,
                    attempts: 1,
                    since: wall,
                    last_said: now,
                });
                Say::New
            }
        };
        self.quiet = say == Say::Again;
        say
    }

    /// Whether the next attempt should be quiet: the failure before it was not logged.
    pub(crate) fn quiet(&self) -> bool {
        self.quiet
    }

    /// Logs `err`, which cost `cost` and is retried after `delay`.
    pub(crate) fn failed(&mut self, err: &TunnelError, cost: Cost, delay: Duration) {
        let same = Sameness {
            hop: err.hop(),
            kind: err.kind(),
            cost,
        };
        let (error, error_kind, permanent) = (err.to_string(), err.kind(), err.is_permanent());
        match self.judge(same, Instant::now(), SystemTime::now()) {
            Say::New => warn!(
                %error,
                %error_kind,
                permanent,
                retry_in = ?delay,
                "tunnel down; reconnecting"
            ),
            Say::StillFailing { attempts, since } => warn!(
                %error,
                %error_kind,
                permanent,
                retry_in = ?delay,
                "still failing after {attempts} attempts since {}",
                humantime::format_rfc3339_seconds(since)
            ),
            Say::Again => debug!(
                %error,
                %error_kind,
                permanent,
                retry_in = ?delay,
                "tunnel down again; reconnecting"
            ),
        }
    }

    /// The tunnel is up: logs the end of the outage, if there was one, and forgets it.
    pub(crate) fn recovered(&mut self) {
        self.streak = None;
        self.quiet = false;
        if let Some((attempts, since)) = self.outage.take() {
            let plural = if attempts == 1 { "" } else { "s" };
            info!(
                "recovered after {attempts} failed attempt{plural} since {}",
                humantime::format_rfc3339_seconds(since)
            );
        }
    }
}

#[cfg(test)]
mod tests;
