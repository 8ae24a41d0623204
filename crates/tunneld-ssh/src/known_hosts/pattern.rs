//! Which known_hosts lines name a host: OpenSSH's lookup name, glob patterns and hashed names.

use ring::hmac;

/// The name OpenSSH looks a server up by: `host` on port 22, `[host]:port` on any other port
/// (its `put_host_port`). Lowercased, because ssh lowercases the host name before it looks it up
/// or hashes it, so `ssh-keygen -H` hashes the lowercase form.
///
/// `host` is given without brackets, even for an IPv6 address (`::1`, port 2222 gives
/// `[::1]:2222`).
pub fn lookup_name(host: &str, port: u16) -> String {
    let host = host.to_ascii_lowercase();
    if port == 22 {
        host
    } else {
        format!("[{host}]:{port}")
    }
}

/// Whether a comma-separated pattern list (split already) matches `name`, as OpenSSH's
/// `match_hostname`: at least one positive pattern matches and no negated (`!`) one does. A
/// negated match wins over any positive one, so a line of only negations never matches.
pub(super) fn patterns_match(patterns: &[String], name: &str) -> bool {
    let mut positive = false;
    for pattern in patterns {
        let (negated, pattern) = match pattern.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, pattern.as_str()),
        };
        if glob_match(pattern.to_ascii_lowercase().as_bytes(), name.as_bytes()) {
            if negated {
                return false;
            }
            positive = true;
        }
    }
    positive
}

/// Whether a hashed name (`|1|salt|hash`) is `name`: the hash is HMAC-SHA1 keyed with the salt
/// over the lookup name. `verify` compares in constant time, not that it matters much here.
pub(super) fn hashed_match(salt: &[u8], hash: &[u8], name: &str) -> bool {
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, salt);
    hmac::verify(&key, name.as_bytes(), hash).is_ok()
}

/// `*` matches any run of bytes (also none), `?` exactly one, anything else itself; the whole
/// text must match. Byte-wise like OpenSSH's `match_pattern`. Iterative with one backtrack point
/// (the last `*`), so a hostile pattern such as `*a*a*a*a*b` costs O(pattern x text), not an
/// exponential recursion.
fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    // Where the last `*` was seen, and the text position it currently stands for up to.
    let mut backtrack: Option<(usize, usize)> = None;
    while let Some(&c) = text.get(t) {
        match pattern.get(p) {
            Some(b'*') => {
                backtrack = Some((p, t));
                p += 1;
            }
            Some(&q) if q == b'?' || q == c => {
                p += 1;
                t += 1;
            }
            _ => match backtrack {
                // Let the last `*` swallow one more byte and retry from just after it.
                Some((star, swallowed)) => {
                    backtrack = Some((star, swallowed + 1));
                    p = star + 1;
                    t = swallowed + 1;
                }
                None => return false,
            },
        }
    }
    pattern
        .get(p..)
        .is_some_and(|rest| rest.iter().all(|&q| q == b'*'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(s: &str) -> Vec<String> {
        s.split(',').map(str::to_owned).collect()
    }

    #[test]
    fn lookup_name_brackets_other_ports_only() {
        assert_eq!(lookup_name("DB.Example.com", 22), "db.example.com");
        assert_eq!(lookup_name("127.0.0.1", 2222), "[127.0.0.1]:2222");
        assert_eq!(lookup_name("::1", 2222), "[::1]:2222");
        assert_eq!(lookup_name("::1", 22), "::1");
    }

    #[test]
    fn globs() {
        for (pattern, text, expected) in [
            ("*", "", true),
            ("*", "anything", true),
            ("", "", true),
            ("", "a", false),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("*.example.com", "db.example.com", true),
            ("*.example.com", "example.com", false),
            ("*.example.com", "a.b.example.com", true),
            ("[*.example.com]:2222", "[db.example.com]:2222", true),
            ("[*.example.com]:2222", "[db.example.com]:22222", false),
            ("[*.example.com]:*", "[db.example.com]:22222", true),
            (
                "*a*a*a*a*a*a*a*a*b",
                "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                false,
            ),
            ("db*", "db", true),
            ("db**?", "db", false),
        ] {
            assert_eq!(
                glob_match(pattern.as_bytes(), text.as_bytes()),
                expected,
                "{pattern} ~ {text}"
            );
        }
    }

    #[test]
    fn negation_wins_and_case_is_ignored() {
        assert!(patterns_match(&list("*.Example.COM"), "db.example.com"));
        assert!(!patterns_match(
            &list("*.example.com,!db.example.com"),
            "db.example.com"
        ));
        assert!(!patterns_match(
            &list("!db.example.com,*.example.com"),
            "db.example.com"
        ));
        assert!(patterns_match(
            &list("*.example.com,!db.example.com"),
            "web.example.com"
        ));
        // Only negations: nothing positive matched, so the line does not apply.
        assert!(!patterns_match(&list("!db.example.com"), "web.example.com"));
        // A plain name does not match the same host on another port.
        assert!(!patterns_match(
            &list("db.example.com"),
            "[db.example.com]:2222"
        ));
    }

    #[test]
    fn hashed_names() {
        // The real `ssh-keygen -H` output is checked by tests/known_hosts.rs.
        let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, b"salt");
        let tag = hmac::sign(&key, b"[127.0.0.1]:2222");
        assert!(hashed_match(b"salt", tag.as_ref(), "[127.0.0.1]:2222"));
        assert!(!hashed_match(b"salt", tag.as_ref(), "127.0.0.1"));
        assert!(!hashed_match(b"other", tag.as_ref(), "[127.0.0.1]:2222"));
    }
}
