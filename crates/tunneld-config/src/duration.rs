//! Durations: strings with a unit (`"500ms"`, `"15s"`, `"2m"`, `"1h"`), parsed by humantime.

use std::time::Duration;

use crate::raw::RawDuration;

const EXPECTED: &str = r#"expected a duration with a unit, like "500ms", "15s", "2m" or "1h""#;

/// Parses a duration as written; a number without a unit is an error, never a guess.
pub(crate) fn parse(raw: &RawDuration) -> Result<Duration, String> {
    match raw {
        RawDuration::Number(number) => Err(format!("{number} has no unit ({EXPECTED})")),
        RawDuration::Text(text) => {
            let trimmed = text.trim();
            if !trimmed.is_empty() && trimmed.chars().all(|c| c.is_ascii_digit() || c == '.') {
                return Err(format!("{text:?} has no unit ({EXPECTED})"));
            }
            humantime::parse_duration(trimmed)
                .map_err(|e| format!("{text:?} is not a duration: {e} ({EXPECTED})"))
        }
    }
}

/// Formats a duration as the file would write it.
pub(crate) fn show(duration: Duration) -> String {
    humantime::format_duration(duration).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Result<Duration, String> {
        parse(&RawDuration::Text(s.to_owned()))
    }

    #[test]
    fn with_units() {
        assert_eq!(text("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(text("15s"), Ok(Duration::from_secs(15)));
        assert_eq!(text("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(text("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(text("1m 30s"), Ok(Duration::from_secs(90)));
        assert_eq!(text("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn without_units() {
        let expected = r#"expected a duration with a unit, like "500ms", "15s", "2m" or "1h""#;
        assert_eq!(text("15"), Err(format!("\"15\" has no unit ({expected})")));
        assert_eq!(text("0"), Err(format!("\"0\" has no unit ({expected})")));
        assert_eq!(
            parse(&RawDuration::Number("15".to_owned())),
            Err(format!("15 has no unit ({expected})"))
        );
        assert!(text("").is_err());
        assert!(text("15 parsecs").is_err());
        assert!(text("-1s").is_err());
        assert!(text("99999999999999999999999h").is_err());
    }

    #[test]
    fn shows_durations_as_written() {
        assert_eq!(show(Duration::from_secs(90)), "1m 30s");
        assert_eq!(show(Duration::from_millis(500)), "500ms");
    }
}
