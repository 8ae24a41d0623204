//! Counting the retries of one forward that keeps failing on a live tunnel, so that its log says
//! the first failure and then one summary a minute, never a line per retry.

use std::time::Duration;

use tokio::time::Instant;

/// How often a forward that is still failing is summarised in the log.
pub(crate) const SUMMARY_EVERY: Duration = Duration::from_secs(60);

/// The failures of one forward since it was first asked for.
pub(crate) struct Retries {
    started: Instant,
    attempts: u64,
    last_said: Option<Instant>,
}

/// What the log should say about a failure.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Say {
    /// The first failure: what went wrong.
    First,
    /// It still fails: for how long, and after how many attempts.
    Summary,
    /// Nothing: said recently enough.
    Nothing,
}

impl Retries {
    pub(crate) fn new() -> Self {
        Retries {
            started: Instant::now(),
            attempts: 0,
            last_said: None,
        }
    }

    /// Counts an attempt, before its outcome is known.
    pub(crate) fn attempt(&mut self) {
        self.attempts += 1;
    }

    /// The attempt failed: what to log about it.
    pub(crate) fn failed(&mut self) -> Say {
        let now = Instant::now();
        let say = match self.last_said {
            None => Say::First,
            Some(at) if now - at >= SUMMARY_EVERY => Say::Summary,
            Some(_) => return Say::Nothing,
        };
        self.last_said = Some(now);
        say
    }

    /// How many attempts were made.
    pub(crate) fn attempts(&self) -> u64 {
        self.attempts
    }

    /// Whole seconds since the first attempt.
    pub(crate) fn secs(&self) -> u64 {
        self.started.elapsed().as_secs()
    }
}
