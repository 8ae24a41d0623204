//! OpenSSH's host patterns (match.c): `*` and `?` wildcards, `!` negation.

/// `*` matches any run of characters, `?` any one character; everything else itself.
pub(crate) fn wildcard(text: &str, pattern: &str) -> bool {
    let text: Vec<char> = text.chars().collect();
    let pattern: Vec<char> = pattern.chars().collect();
    // Iterative matching with one backtrack point: linear enough for host names.
    let (mut t, mut p) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == '?' || c == text[t] => {
                t += 1;
                p += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

/// A `Host` line: some pattern matches `alias` and no negated one does. Case matters, as in
/// OpenSSH's `Host` (not in `Match host`).
pub(crate) fn host_line(alias: &str, patterns: &[String]) -> bool {
    let mut matched = false;
    for pattern in patterns {
        match pattern.strip_prefix('!') {
            Some(negated) if wildcard(alias, negated) => return false,
            Some(_) => {}
            None => matched |= wildcard(alias, pattern),
        }
    }
    matched
}

/// A comma-separated pattern list of `Match`, compared in lowercase as OpenSSH's
/// `match_hostname` does.
pub(crate) fn list(text: &str, patterns: &str) -> bool {
    let text = text.to_lowercase();
    let patterns: Vec<String> = patterns
        .to_lowercase()
        .split(',')
        .map(str::to_owned)
        .collect();
    host_line(&text, &patterns)
}

/// Whether `name` names one host, not a pattern: what can become a tunnel.
pub(crate) fn is_plain(name: &str) -> bool {
    !name.contains(['*', '?', '!'])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        for (text, pattern, expected) in [
            ("db", "db", true),
            ("db", "*", true),
            ("web.corp", "*.corp", true),
            ("corp", "*.corp", false),
            ("db1", "db?", true),
            ("db12", "db?", false),
            ("a.b.c", "a*c", true),
            ("abcabd", "*abd", true),
            ("", "*", true),
            ("Db", "db", false),
        ] {
            assert_eq!(wildcard(text, pattern), expected, "{text} {pattern}");
        }
    }

    #[test]
    fn negation_wins() {
        let patterns = |p: &[&str]| p.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(host_line("web.corp", &patterns(&["*.corp", "!db.corp"])));
        assert!(!host_line("db.corp", &patterns(&["*.corp", "!db.corp"])));
        assert!(!host_line("db", &patterns(&["!x"])));
        assert!(list("DB.corp", "*.corp,!web.corp"));
        assert!(!list("web.corp", "*.corp,!web.corp"));
    }
}
