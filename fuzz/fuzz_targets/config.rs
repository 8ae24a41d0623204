//! Fuzzes the configuration from bytes to `tunneld check`'s verdict: `parse_with_findings`, then
//! `judge` with a made-up resolver (no DNS, no files: key and certificate files are what `check`
//! reads besides, and they have parsers of their own).
//!
//! The input is the file's text. Bytes that are not UTF-8 are replaced (U+FFFD), as `load` would
//! refuse the file before parsing: this way a mutation that breaks UTF-8 still reaches the
//! parser. Checked, besides "never panics":
//!
//! - an error names a line and column within the input, and reads `PATH:LINE:COLUMN: `;
//! - parsing and judging are deterministic (the same text gives the same answer twice);
//! - a file that parses parses to the same configuration and findings with a comment appended
//!   (nothing depends on where the file ends);
//! - every finding is positioned within the input, and every verdict line starts with the path
//!   and a finding's position; a listener clash always fails the check.

#![no_main]

use std::net::IpAddr;
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use tunneld_config::{ConfigError, Environment, Finding, judge, parse_with_findings};

const PATH: &str = "/etc/tunneld/fuzz.toml";

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let env = Environment {
        user: "runner".to_owned(),
    };
    let path = Path::new(PATH);
    let parsed = parse_with_findings(path, &text, &env);
    let again = parse_with_findings(path, &text, &env);
    match (&parsed, &again) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "parsing is not deterministic"),
        (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "errors differ"),
        _ => panic!("parsing is not deterministic: {parsed:?} then {again:?}"),
    }
    let (config, findings) = match parsed {
        Ok(loaded) => loaded,
        Err(err) => {
            check_error(&text, &err);
            return;
        }
    };

    let longer = format!("{text}\n# appended\n");
    match parse_with_findings(path, &longer, &env) {
        Ok(reparsed) => assert_eq!(
            reparsed,
            (config, findings.clone()),
            "a trailing comment changed the configuration"
        ),
        Err(err) => panic!("a trailing comment made a valid file invalid: {err}"),
    }

    for finding in &findings {
        let at = finding.at();
        assert_within(&text, at.line, at.column);
    }
    let verdicts = judge(path, &findings, &mut resolve);
    assert_eq!(
        verdicts,
        judge(path, &findings, &mut resolve),
        "judging is not deterministic"
    );
    let places: Vec<String> = findings
        .iter()
        .map(|finding| format!("{PATH}:{}: ", finding.at()))
        .collect();
    let lines = verdicts
        .problems
        .iter()
        .chain(verdicts.warnings.iter().map(|(_, line)| line));
    for line in lines {
        assert!(
            places.iter().any(|place| line.starts_with(place.as_str())),
            "a verdict not at a finding: {line}"
        );
    }
    assert!(verdicts.problems.len() + verdicts.warnings.len() <= findings.len());
    let clashes = findings
        .iter()
        .filter(|finding| matches!(finding, Finding::ListenerClash { .. }))
        .count();
    assert!(
        verdicts.problems.len() >= clashes,
        "a listener clash passed"
    );
});

/// A load error points into the text, and says so first.
fn check_error(text: &str, err: &ConfigError) {
    let (Some(line), Some(column)) = (err.line(), err.column()) else {
        panic!("parsing text gave an error without a position: {err}");
    };
    assert_within(text, line, column);
    let message = err.to_string();
    assert!(
        message.starts_with(&format!("{PATH}:{line}:{column}: ")),
        "{message}"
    );
}

/// `line` and `column` (1-based, the column in characters) are in `text`, or just after its end.
fn assert_within(text: &str, line: usize, column: usize) {
    let lines: Vec<&str> = text.split('\n').collect();
    assert!(
        (1..=lines.len()).contains(&line),
        "line {line} of {}",
        lines.len()
    );
    let width = lines[line - 1].chars().count();
    assert!(
        (1..=width + 1).contains(&column),
        "column {column} of line {line}, {width} characters long"
    );
}

/// A resolver that needs no network but answers all three ways: addresses are themselves,
/// `localhost` is both loopback addresses, other names resolve or not by their length, and names
/// of one length and first letter are one server, so that two names can share an address.
fn resolve(host: &str) -> Vec<IpAddr> {
    if let Ok(address) = host.parse() {
        return vec![address];
    }
    if host.eq_ignore_ascii_case("localhost") {
        return vec![
            IpAddr::from([127, 0, 0, 1]),
            IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]),
        ];
    }
    let first = host.bytes().next().unwrap_or(0).to_ascii_lowercase();
    match host.len() % 3 {
        0 => Vec::new(),
        n => vec![IpAddr::from([10, 0, n as u8, first])],
    }
}
