//! When each tunnel of a batch makes its first attempt: spread out, not all at once.
//!
//! OpenSSH's sshd drops connections that have not yet authenticated once there are more than
//! `MaxStartups` of them: by default (10:30:100) it starts refusing new ones at random, 30% of
//! them, when 10 are unauthenticated, rising to all of them at 100. A daemon whose 200 tunnels
//! all dial the same server at the same instant would have most of them dropped before the
//! banner ("kex_exchange_identification: Connection closed by remote host"), fail, and back off,
//! and would come up only over several rounds of backoff. Spacing the first attempts by
//! `SPACING` keeps at most 50 new connections a second: on a LAN, where a handshake and
//! authentication take a few tens of milliseconds, only a handful are unauthenticated at any
//! moment. The whole batch is spread over at most `SPREAD_MAX`, so that however many tunnels
//! there are, the last one starts soon, and well within the watchdog's grace (`health.rs`).
//!
//! Listeners are bound at once, before the wait: a client that arrives meanwhile waits for the
//! tunnel as it would during a reconnect. Later attempts (reconnects) are spread by the backoff's
//! jitter, not by this.

use std::time::Duration;

/// The gap between the first attempts of two tunnels started together.
pub(crate) const SPACING: Duration = Duration::from_millis(20);

/// The longest any tunnel of a batch waits before its first attempt.
pub(crate) const SPREAD_MAX: Duration = Duration::from_secs(4);

/// How long the `index`th of `count` tunnels started together waits before its first attempt:
/// the first starts at once, the others `SPACING` apart, closer together if `count` is so large
/// that the batch would take longer than `SPREAD_MAX`.
pub(crate) fn delay(index: usize, count: usize) -> Duration {
    if index == 0 || count < 2 {
        return Duration::ZERO;
    }
    let last = u32::try_from(count - 1).unwrap_or(u32::MAX);
    let spacing = SPACING.min(SPREAD_MAX / last);
    spacing * u32::try_from(index).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_tunnel_starts_at_once() {
        assert_eq!(delay(0, 1), Duration::ZERO);
    }

    #[test]
    fn two_hundred_tunnels_start_twenty_milliseconds_apart() {
        assert_eq!(delay(0, 200), Duration::ZERO);
        assert_eq!(delay(1, 200), Duration::from_millis(20));
        assert_eq!(delay(199, 200), Duration::from_millis(3980));
    }

    #[test]
    fn a_larger_batch_is_squeezed_into_the_same_spread() {
        assert_eq!(delay(1000, 1001), SPREAD_MAX);
        assert!(delay(1, 1001) < SPACING);
        assert!((0..5000).all(|index| delay(index, 5000) <= SPREAD_MAX));
    }
}
