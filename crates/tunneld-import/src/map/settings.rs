//! The options that set how tunneld connects: keepalives, timeouts, host keys, ciphers.

use tunneld_config::SUPPORTED_CIPHERS;

use super::{Mapped, list, one};
use crate::evaluate::Options;
use crate::files::Line;
use crate::paths::{self, Tokens};
use crate::render::toml_string;

impl Mapped {
    pub(super) fn settings(&mut self, options: &Options, tokens: &Tokens<'_>) {
        if let Some(line) = options.first("serveraliveinterval") {
            match one(line).and_then(seconds) {
                Some(s) => self.set("serveraliveinterval", toml_string(&format!("{s}s"))),
                None => self.unmapped(line, "not a time"),
            }
        }
        if let Some(line) = options.first("serveralivecountmax") {
            match one(line).and_then(|n| n.parse::<u32>().ok()) {
                Some(n) if n >= 1 => self.set("serveralivecountmax", n.to_string()),
                _ => self.unmapped(line, "tunneld needs a whole number of at least 1"),
            }
        }
        if let Some(line) = options.first("connecttimeout") {
            match one(line).and_then(seconds) {
                Some(s) if s > 0 => self.set("connecttimeout", toml_string(&format!("{s}s"))),
                _ => self.unmapped(line, "tunneld needs a time longer than zero"),
            }
        }
        for keyword in ["compression", "exitonforwardfailure", "updatehostkeys"] {
            if let Some(line) = options.first(keyword) {
                match one(line).and_then(yes_no) {
                    Some(value) => self.set(keyword, value.to_string()),
                    None => self.unmapped(line, "tunneld takes yes or no only"),
                }
            }
        }
        if let Some(line) = options.first("ciphers") {
            self.ciphers(line);
        }
        if let Some(line) = options.first("stricthostkeychecking") {
            self.host_key_policy(line);
        }
        if let Some(line) = options.first("userknownhostsfile") {
            self.known_hosts(line, "userknownhostsfile", tokens);
        }
        if let Some(line) = options.first("globalknownhostsfile") {
            self.known_hosts(line, "globalknownhostsfile", tokens);
        }
    }

    fn ciphers(&mut self, line: &Line) {
        let Some(value) = one(line) else {
            return self.unmapped(line, "expected one comma-separated list");
        };
        if value.starts_with(['+', '-', '^']) || value.contains(['*', '?']) {
            return self.unmapped(
                line,
                "changes OpenSSH's default list, and tunneld's default differs; \
                 write the ciphers out",
            );
        }
        let (known, unknown): (Vec<&str>, Vec<&str>) = value
            .split(',')
            .partition(|name| SUPPORTED_CIPHERS.contains(name));
        if !unknown.is_empty() {
            self.note(format!(
                "Ciphers {} ({}): not supported by tunneld, left out",
                unknown.join(","),
                line.at
            ));
        }
        if !known.is_empty() {
            let known: Vec<String> = known.into_iter().map(str::to_owned).collect();
            self.set("ciphers", list(&known));
        }
    }

    fn host_key_policy(&mut self, line: &Line) {
        match one(line).map(str::to_ascii_lowercase).as_deref() {
            Some("yes" | "true") => self.key("host_key_policy", toml_string("strict")),
            Some("accept-new") => self.key("host_key_policy", toml_string("accept-new")),
            Some("no" | "off" | "false") => {
                self.note(format!(
                    "{} ({}): tunneld never connects to a server whose key changed; accept-new \
                     is the closest, and stricter: it learns the key of a server it does not \
                     know and refuses a changed one",
                    line.text(),
                    line.at
                ));
                self.key("host_key_policy", toml_string("accept-new"));
            }
            Some("ask") => self.note(format!(
                "{} ({}): tunneld runs unattended and cannot ask; it uses strict (the default): \
                 put the server's key in /etc/tunneld/known_hosts, or set host_key_policy = \
                 \"accept-new\"",
                line.text(),
                line.at
            )),
            _ => self.unmapped(line, "expected yes, accept-new, no or ask"),
        }
    }

    fn known_hosts(&mut self, line: &Line, keyword: &str, tokens: &Tokens<'_>) {
        let Some(first) = line.args.first() else {
            return self.unmapped(line, "expected a path");
        };
        if first == "/dev/null" || first.eq_ignore_ascii_case("none") {
            return self.unmapped(
                line,
                "it would make every server new at every connection; tunneld keeps its own \
                 file (the default /var/lib/tunneld/known_hosts)",
            );
        }
        if line.args.len() > 1 {
            self.note(format!(
                "{} ({}): tunneld reads one file here; only the first is imported",
                line.text(),
                line.at
            ));
        }
        match paths::expand(first, tokens) {
            Ok(path) => {
                self.check_home(
                    std::slice::from_ref(&path),
                    tokens.local,
                    "/etc/tunneld/known_hosts (keys you pinned) or /var/lib/tunneld/known_hosts",
                );
                self.set(keyword, toml_string(&path.display().to_string()));
            }
            Err(why) => self.unmapped(line, &why),
        }
    }
}

/// OpenSSH's time format (`convtime`): `30`, `30s`, `5m`, `1h30m`; in seconds.
pub(crate) fn seconds(text: &str) -> Option<u64> {
    let mut total: u64 = 0;
    let mut number = String::new();
    let mut any = false;
    let mut add = |number: &mut String, unit: u64| -> Option<()> {
        total = total.checked_add(number.parse::<u64>().ok()?.checked_mul(unit)?)?;
        number.clear();
        any = true;
        Some(())
    };
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c.to_ascii_lowercase() {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86400,
            'w' => 604_800,
            _ => return None,
        };
        if number.is_empty() {
            return None;
        }
        add(&mut number, unit)?;
    }
    if !number.is_empty() {
        add(&mut number, 1)?;
    }
    any.then_some(total)
}

/// ssh_config's booleans.
fn yes_no(text: &str) -> Option<bool> {
    match text.to_ascii_lowercase().as_str() {
        "yes" | "true" => Some(true),
        "no" | "false" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::seconds;

    #[test]
    fn openssh_times() {
        for (text, expected) in [
            ("30", Some(30)),
            ("30s", Some(30)),
            ("5m", Some(300)),
            ("1h30m", Some(5400)),
            ("0", Some(0)),
            ("", None),
            ("x", None),
            ("5q", None),
            ("m", None),
        ] {
            assert_eq!(seconds(text), expected, "{text}");
        }
    }
}
