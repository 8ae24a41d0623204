//! Reconnect delays: exponential with jitter, capped after jitter, reset once a connection has
//! proved stable, and straight to the cap for failures that retrying cannot fix.
//!
//! A pure value: the randomness is passed in, so tests need neither a clock nor luck.

use std::hash::{BuildHasher, Hasher, RandomState};
use std::time::Duration;

/// A connection that stayed up this long resets the delay to the minimum.
pub const STABLE_AFTER: Duration = Duration::from_secs(30);

/// The state of one tunnel's reconnect delays.
#[derive(Clone, Debug)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    /// The base of the next delay, before jitter.
    next: Duration,
}

impl Backoff {
    /// Delays from `min` to `max`. `max` is raised to `min` if it is smaller.
    pub fn new(min: Duration, max: Duration) -> Self {
        let max = max.max(min);
        Backoff {
            min,
            max,
            next: min,
        }
    }

    /// The delay before the next attempt. `unit` is a random number in `[0, 1]`.
    ///
    /// Below the cap the delay is the base plus up to half of it again; the base doubles each
    /// time. At the cap, and for permanent failures, it is between 80% and 100% of the cap, so
    /// a fleet that failed together spreads out but never waits longer than `max`.
    pub fn next_delay(&mut self, permanent: bool, unit: f64) -> Duration {
        let unit = clamp_unit(unit);
        if permanent || self.next >= self.max {
            self.next = self.max;
            return jitter_below(self.max, unit).max(self.min);
        }
        let base = self.next;
        self.next = base.saturating_mul(2).min(self.max);
        base.mul_f64(1.0 + 0.5 * unit).clamp(self.min, self.max)
    }

    /// Tells the backoff how long the last connection stayed up: long enough, and the next
    /// failure starts again from the minimum.
    pub fn connection_lasted(&mut self, up_for: Duration) {
        if up_for >= STABLE_AFTER {
            self.next = self.min;
        }
    }
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
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn doubles_from_min_to_max_without_jitter() {
        let mut b = Backoff::new(secs(1.0), secs(60.0));
        let delays: Vec<f64> = (0..8)
            .map(|_| b.next_delay(false, 0.0).as_secs_f64())
            .collect();
        assert_eq!(delays, vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 48.0, 48.0]);
    }

    #[test]
    fn cap_holds_after_jitter() {
        for unit in [0.0, 0.3, 0.999, 1.0] {
            let mut b = Backoff::new(secs(1.0), secs(60.0));
            for _ in 0..20 {
                let d = b.next_delay(false, unit);
                assert!(d <= secs(60.0), "{d:?} with unit {unit}");
                assert!(d >= secs(1.0), "{d:?} with unit {unit}");
            }
        }
    }

    #[test]
    fn jitter_spreads_below_the_cap() {
        let mut low = Backoff::new(secs(1.0), secs(60.0));
        let mut high = Backoff::new(secs(1.0), secs(60.0));
        low.next_delay(false, 0.0);
        high.next_delay(false, 1.0);
        assert_eq!(low.next_delay(false, 0.0), secs(2.0));
        assert_eq!(high.next_delay(false, 1.0), secs(3.0));
    }

    #[test]
    fn permanent_failures_wait_at_the_cap_at_once() {
        let mut b = Backoff::new(secs(1.0), secs(40.0));
        let d = b.next_delay(true, 1.0);
        assert_eq!(d, secs(40.0));
        let d = b.next_delay(true, 0.0);
        assert_eq!(d, secs(32.0));
        // and a transient failure after it stays at the cap until a stable connection
        assert!(b.next_delay(false, 0.0) >= secs(32.0));
    }

    #[test]
    fn stable_connection_resets_short_one_does_not() {
        let mut b = Backoff::new(secs(1.0), secs(60.0));
        for _ in 0..5 {
            b.next_delay(false, 0.0);
        }
        b.connection_lasted(secs(5.0));
        assert_eq!(b.next_delay(false, 0.0), secs(32.0));
        b.connection_lasted(STABLE_AFTER);
        assert_eq!(b.next_delay(false, 0.0), secs(1.0));
    }

    #[test]
    fn min_above_max_is_not_a_panic() {
        let mut b = Backoff::new(secs(5.0), secs(1.0));
        assert_eq!(b.next_delay(false, 0.5), secs(5.0));
        assert_eq!(b.next_delay(true, 0.5), secs(5.0));
    }

    #[test]
    fn jitter_below_stays_within_80_to_100_percent() {
        let max = secs(1.5);
        assert_eq!(jitter_below(max, 0.0), secs(1.2));
        assert_eq!(jitter_below(max, 1.0), max);
        assert_eq!(jitter_below(max, 0.5), secs(1.35));
        // Out of range or not a number: clamped, never a panic and never past the bounds.
        assert_eq!(jitter_below(max, -3.0), secs(1.2));
        assert_eq!(jitter_below(max, 7.0), max);
        assert_eq!(jitter_below(max, f64::NAN), secs(1.35));
        assert_eq!(jitter_below(max, f64::INFINITY), secs(1.35));
        assert_eq!(jitter_below(Duration::ZERO, 0.7), Duration::ZERO);
        for _ in 0..256 {
            let d = jitter_below(max, jitter_unit());
            assert!(d >= secs(1.2) && d <= max, "{d:?}");
        }
    }

    #[test]
    fn jitter_unit_is_in_range_and_varies() {
        let samples: Vec<f64> = (0..64).map(|_| jitter_unit()).collect();
        assert!(samples.iter().all(|u| (0.0..=1.0).contains(u)));
        let first = samples.first().copied().unwrap_or_default();
        assert!(samples.iter().any(|u| (u - first).abs() > 1e-9));
    }
}
