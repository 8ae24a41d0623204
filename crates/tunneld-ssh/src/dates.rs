//! Certificate times as people read them: the clock in unix seconds, dates in UTC, validity
//! windows in the words of `ssh-keygen -L`. Host certificates (`known_hosts`) and user
//! certificates (`certificate`) print their dates the same way.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `valid before` of a certificate that never expires (and the largest time there is).
pub(crate) const FOREVER: u64 = u64::MAX;

/// Seconds since the epoch by this machine's clock; a clock before 1970 counts as 1970 (every
/// certificate whose validity starts later is then "not yet valid", which is the safe answer).
pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// `YYYY-MM-DD HH:MM:SS UTC` for unix seconds, from humantime's RFC 3339 form
/// (`2040-01-01T00:00:00Z`). humantime refuses dates past the year 9999, and a certificate
/// that never expires says so with `valid before` = u64::MAX; such values print as seconds.
pub(crate) fn utc(secs: u64) -> String {
    /// 9999-12-31 23:59:59 UTC, the last second humantime formats.
    const LAST: u64 = 253_402_300_799;
    let as_seconds = || format!("{secs} (unix seconds)");
    if secs > LAST {
        return as_seconds();
    }
    let Some(time) = UNIX_EPOCH.checked_add(Duration::from_secs(secs)) else {
        return as_seconds();
    };
    let mut rfc3339 = String::new();
    if write!(rfc3339, "{}", humantime::format_rfc3339_seconds(time)).is_err() {
        return as_seconds();
    }
    format!(
        "{} UTC",
        rfc3339.trim_end_matches('Z').replacen('T', " ", 1)
    )
}

/// A certificate's validity window as `ssh-keygen -L` words it (OpenSSH's
/// `sshkey_format_cert_validity`): `forever`, `before X`, `after X` or `from X to Y`. A
/// `valid after` of 0 means "from the beginning" and a `valid before` of u64::MAX "forever".
pub(crate) fn window(valid_after: u64, valid_before: u64) -> String {
    match (valid_after, valid_before) {
        (0, FOREVER) => "forever".to_owned(),
        (0, before) => format!("before {}", utc(before)),
        (after, FOREVER) => format!("after {}", utc(after)),
        (after, before) => format!("from {} to {}", utc(after), utc(before)),
    }
}

/// A length of time to the hour (from a day up) or to the minute: `6days 23h`, `2h 5m`.
/// Certificates are renewed in days, so seconds would only be noise.
pub(crate) fn span(secs: u64) -> String {
    const DAY: u64 = 86_400;
    let unit = if secs >= DAY { 3_600 } else { 60 };
    let rounded = secs - secs % unit;
    if rounded == 0 {
        return "less than a minute".to_owned();
    }
    humantime::format_duration(Duration::from_secs(rounded)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_577_923_199), "2020-01-01 23:59:59 UTC");
        assert_eq!(utc(1_767_225_600), "2026-01-01 00:00:00 UTC");
        assert_eq!(utc(253_402_300_799), "9999-12-31 23:59:59 UTC");
        // Past the year 9999 (humantime's limit), and a certificate's "forever": seconds.
        assert_eq!(utc(253_402_300_800), "253402300800 (unix seconds)");
        assert_eq!(utc(u64::MAX), "18446744073709551615 (unix seconds)");
    }

    #[test]
    fn windows_in_ssh_keygen_words() {
        let (a, b) = (1_767_225_600, 1_767_312_000);
        assert_eq!(window(0, FOREVER), "forever");
        assert_eq!(window(0, b), "before 2026-01-02 00:00:00 UTC");
        assert_eq!(window(a, FOREVER), "after 2026-01-01 00:00:00 UTC");
        assert_eq!(
            window(a, b),
            "from 2026-01-01 00:00:00 UTC to 2026-01-02 00:00:00 UTC"
        );
        // A date past humantime's range that is not "forever" still prints, as seconds.
        assert_eq!(
            window(a, FOREVER - 1),
            "from 2026-01-01 00:00:00 UTC to 18446744073709551614 (unix seconds)"
        );
    }

    #[test]
    fn spans_to_the_hour_or_minute() {
        assert_eq!(span(0), "less than a minute");
        assert_eq!(span(59), "less than a minute");
        assert_eq!(span(125), "2m");
        assert_eq!(span(2 * 3_600 + 5 * 60 + 7), "2h 5m");
        assert_eq!(span(7 * 86_400 - 1), "6days 23h");
        assert_eq!(span(3 * 86_400), "3days");
    }
}
