//! Reconnect delays: exponential with jitter, capped after jitter, and following what the
//! failure cost the server. An attempt that never reached an SSH server costs it nothing and is
//! retried under a short cap; one that reached it (a handshake, a login) costs it work and log
//! lines, and backs off to the long cap; one that retrying cannot fix waits at the long cap.
//!
//! A pure value: the randomness is passed in, so tests need neither a clock nor luck.

use std::hash::{BuildHasher, Hasher, RandomState};
use std::time::Duration;

use tunneld_ssh::{Reach, TunnelError};

/// A connection that stayed up this long proved stable: the drop that ends it starts the
/// delays after drops again from the minimum.
pub const STABLE_AFTER: Duration = Duration::from_secs(30);

/// The pause after an attempt that nothing answered (see [`Cost::Unanswered`]).
pub const UNANSWERED_RETRY: Duration = Duration::from_secs(1);

/// What a failure cost the server, which decides the wait before the next attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Cost {
    /// Nothing answered within `connect_timeout`: the attempt itself already waited, sending a
    /// new SYN every second. The next one follows after about [`UNANSWERED_RETRY`] (at most the
    /// short cap), and the delays do not grow: the sooner it probes, the sooner the tunnel is
    /// back once the network is.
    Unanswered,
    /// No SSH server took part, and the network said so at once (refused, no route, no DNS
    /// answer, closed before the server's SSH version). Doubles up to the short cap.
    Network,
    /// An SSH server answered and the attempt failed anyway (or the failure was local). Doubles
    /// up to the long cap.
    Server,
    /// Retrying cannot help until someone fixes something: repeated failed logins fill the
    /// server's logs and get the client banned. At the long cap at once.
    Permanent,
    /// A connection that was up ended. The first drop retries at the minimum; each connection
    /// that dies before [`STABLE_AFTER`] doubles the next drop's delay, up to the long cap, so a
    /// server that drops every session soon after login is not hammered with logins.
    Dropped,
}

impl Cost {
    /// The cost of `err`; `ended_connection` when it ended a connection that was up.
    pub fn of(err: &TunnelError, ended_connection: bool) -> Cost {
        if err.is_permanent() {
            return Cost::Permanent;
        }
        if ended_connection {
            return Cost::Dropped;
        }
        match err.reach() {
            Reach::Unanswered => Cost::Unanswered,
            Reach::Network => Cost::Network,
            Reach::Server => Cost::Server,
        }
    }
}

/// The state of one tunnel's reconnect delays.
#[derive(Clone, Debug)]
pub struct Backoff {
    min: Duration,
    /// The long cap.
    max: Duration,
    /// The short cap, for failures before SSH.
    max_network: Duration,
    /// The base of the next delay after a failure an SSH server saw, before jitter.
    next: Duration,
    /// The same after a failure before SSH.
    next_network: Duration,
    /// Connections that ended since the last one that proved stable, that one included.
    drops: u32,
    /// A connection has just ended: the next failure is its drop.
    ended: bool,
}

impl Backoff {
    /// Delays from `min` to `max`, and to `max_network` after failures before SSH. `max` is
    /// raised to `min` if it is smaller, and `max_network` is kept between the two.
    pub fn new(min: Duration, max: Duration, max_network: Duration) -> Self {
        let max = max.max(min);
        Backoff {
            min,
            max,
            max_network: max_network.clamp(min, max),
            next: min,
            next_network: min,
            drops: 0,
            ended: false,
        }
    }

    /// What `err` cost and the delay before the next attempt. `unit` is a random number in
    /// `[0, 1]`.
    pub fn next_delay(&mut self, err: &TunnelError, unit: f64) -> (Cost, Duration) {
        let cost = Cost::of(err, std::mem::take(&mut self.ended));
        (cost, self.delay(cost, unit))
    }

    /// The delay after a failure that cost `cost`.
    ///
    /// Below a cap the delay is the base plus up to half of it again; the base doubles each
    /// time. At a cap, and for permanent failures, it is between 80% and 100% of the cap, so a
    /// fleet that failed together spreads out but never waits longer than the cap.
    pub fn delay(&mut self, cost: Cost, unit: f64) -> Duration {
        let unit = clamp_unit(unit);
        match cost {
            Cost::Unanswered => jitter_below(UNANSWERED_RETRY.min(self.max_network), unit),
            Cost::Network => grow(&mut self.next_network, self.min, self.max_network, unit),
            Cost::Server => grow(&mut self.next, self.min, self.max, unit),
            Cost::Permanent => {
                self.next = self.max;
                jitter_below(self.max, unit).max(self.min)
            }
            Cost::Dropped => {
                let doublings = self.drops.saturating_sub(1).min(31);
                let base = self.min.saturating_mul(1 << doublings).min(self.max);
                spread(base, self.min, self.max, unit)
            }
        }
    }

    /// Tells the backoff that the connection ended after `up_for`. The server was reached, so
    /// the delays of failed attempts start again from the minimum; the delay after this drop
    /// grows only if connections keep dying before they prove stable.
    pub fn connection_lasted(&mut self, up_for: Duration) {
        self.next = self.min;
        self.next_network = self.min;
        self.drops = if up_for >= STABLE_AFTER {
            1
        } else {
            self.drops.saturating_add(1)
        };
        self.ended = true;
    }
}

/// The delay for `*next`, which then doubles up to `cap`.
fn grow(next: &mut Duration, min: Duration, cap: Duration, unit: f64) -> Duration {
    let base = *next;
    *next = base.saturating_mul(2).min(cap);
    spread(base, min, cap, unit)
}

/// `base` plus up to half of it by `unit`, within `[min, cap]`; at the cap, 80-100% of it.
fn spread(base: Duration, min: Duration, cap: Duration, unit: f64) -> Duration {
    if base >= cap {
        return jitter_below(cap, unit).max(min);
    }
    base.mul_f64(1.0 + 0.5 * unit).clamp(min, cap)
}

/// Between 80% and 100% of `max`, by `unit` (a random number in `[0, 1]`, from
/// [`jitter_unit`]; anything outside is clamped, anything not finite counts as 0.5). For waits
/// that many tunnels may start at the same moment (a fleet that failed together) and that must
/// spread out without ever exceeding `max`.
pub fn jitter_below(max: Duration, unit: f64) -> Duration {
    max.mul_f64(0.8 + 0.2 * clamp_unit(unit))
}

/// `unit` within `[0, 1]`, so that no caller's mistake turns into a panic in `mul_f64`.
fn clamp_unit(unit: f64) -> f64 {
    if unit.is_finite() {
        unit.clamp(0.0, 1.0)
    } else {
        0.5
    }
}

/// A random number in `[0, 1]` for jitter. std's `RandomState` is randomly keyed, and each new
/// one is keyed differently: plenty for spreading retries, and no crate for it.
pub fn jitter_unit() -> f64 {
    let bits = RandomState::new().build_hasher().finish();
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests;
