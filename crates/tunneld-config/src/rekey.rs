//! `rekey_limit`: OpenSSH's RekeyLimit, `"SIZE"` or `"SIZE DURATION"` (`"1G"`, `"16M 10m"`).
//! After SIZE bytes in either direction, or DURATION, the session exchanges new keys.

use crate::model::RekeyLimit;

const EXPECTED: &str =
    r#"expected a size and an optional duration, like "1G", "256M" or "16M 10m""#;

/// The most data under one key that russh accepts (RFC 4253 recommends rekeying after 1 GiB);
/// it refuses larger limits rather than risk reusing a nonce.
const MAX_DATA: u64 = 1 << 30;

/// Below this, a session would spend its time exchanging keys.
const MIN_DATA: u64 = 64 << 10;

/// Parses a limit as written.
pub(crate) fn parse(text: &str) -> Result<RekeyLimit, String> {
    let mut words = text.split_whitespace();
    let (Some(size), time, None) = (words.next(), words.next(), words.next()) else {
        return Err(format!("{text:?}: {EXPECTED}"));
    };
    let data = parse_size(size).ok_or_else(|| format!("{size:?} is not a size ({EXPECTED})"))?;
    if !(MIN_DATA..=MAX_DATA).contains(&data) {
        return Err(format!(
            "{size:?} is out of range (from 64K to 1G: a larger limit risks reusing a nonce)"
        ));
    }
    let time = match time {
        None => RekeyLimit::default().time,
        Some(time) => match humantime::parse_duration(time) {
            Ok(time) if !time.is_zero() => time,
            _ => return Err(format!("{time:?} is not a duration ({EXPECTED})")),
        },
    };
    Ok(RekeyLimit { data, time })
}

/// Bytes, with an optional K, M or G suffix (powers of 1024, as OpenSSH reads them).
fn parse_size(size: &str) -> Option<u64> {
    let (digits, shift) = match size.char_indices().last()? {
        (at, 'K' | 'k') => (&size[..at], 10),
        (at, 'M' | 'm') => (&size[..at], 20),
        (at, 'G' | 'g') => (&size[..at], 30),
        _ => (size, 0),
    };
    let number: u64 = digits.parse().ok()?;
    number.checked_mul(1 << shift)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn sizes_and_durations() {
        let limit = |data, secs| RekeyLimit {
            data,
            time: Duration::from_secs(secs),
        };
        assert_eq!(parse("1G"), Ok(limit(1 << 30, 3600)));
        assert_eq!(parse("16M"), Ok(limit(16 << 20, 3600)));
        assert_eq!(parse("  512k   30s "), Ok(limit(512 << 10, 30)));
        assert_eq!(parse("16M 10m"), Ok(limit(16 << 20, 600)));
        assert_eq!(parse("1048576"), Ok(limit(1 << 20, 3600)));
    }

    #[test]
    fn refusals_say_what_is_expected() {
        for bad in [
            "",
            "fast",
            "16X",
            "M",
            "-1M",
            "16M 10m 1h",
            "16M 0s",
            "16M soon",
        ] {
            let error = parse(bad).unwrap_err();
            assert!(error.contains("expected a size"), "{bad:?}: {error}");
        }
        assert!(parse("2G").unwrap_err().contains("out of range"));
        assert!(parse("1K").unwrap_err().contains("out of range"));
        assert!(parse("99999999999999999999G").is_err());
    }
}
