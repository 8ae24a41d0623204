//! `[user@]hostname[:port]`: how a tunnel's `host` and the elements of `jump` name a server that
//! has no `[hosts]` entry. IPv6 addresses as `[2001:db8::1]:2222`, or bare without a port. Also
//! `ssh://[user@]host[:port]`, the URL form that OpenSSH's `ssh` and `-J` accept.

use std::net::Ipv6Addr;

use crate::address;

const SYNTAX: &str = "[user@]hostname[:port]";

/// A server named by a string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct HostSpec {
    /// The user before `@`, if any.
    pub(crate) user: Option<String>,
    /// The host name or address (IPv6 without brackets).
    pub(crate) hostname: String,
    /// The port after `:`, if any.
    pub(crate) port: Option<u16>,
}

/// Parses `[user@]hostname[:port]` or `ssh://[user@]host[:port]`.
pub(crate) fn parse(s: &str) -> Result<HostSpec, String> {
    if let Some((scheme, rest)) = s.split_once("://") {
        return url(s, scheme, rest);
    }
    let shape = |why: &str| format!("{s:?} is not a [hosts] name or {SYNTAX}: {why}");
    let (user, rest) = match s.rsplit_once('@') {
        Some((user, rest)) => {
            check_user(user).map_err(|e| shape(&e))?;
            (Some(user.to_owned()), rest)
        }
        None => (None, s),
    };
    let (hostname, port) = if rest.starts_with('[') {
        let fields = address::split_fields(rest).ok_or_else(|| shape("unbalanced brackets"))?;
        match fields.as_slice() {
            [host] => (host.text, None),
            [host, port] if !port.bracketed => (host.text, Some(port.text)),
            _ => return Err(shape("unexpected text after the address")),
        }
    } else {
        match rest.split_once(':') {
            None => (rest, None),
            Some((host, port)) if !port.contains(':') => (host, Some(port)),
            // Several colons and no brackets: a bare IPv6 address, which cannot carry a port.
            Some(_) if rest.parse::<Ipv6Addr>().is_ok() => (rest, None),
            Some(_) => {
                return Err(shape(
                    "an IPv6 address with a port goes in brackets, as in [2001:db8::1]:22",
                ));
            }
        }
    };
    address::host(hostname).map_err(|e| shape(&e))?;
    let port = match port {
        Some(port) => Some(address::port(port, false).map_err(|e| shape(&e))?),
        None => None,
    };
    Ok(HostSpec {
        user,
        hostname: hostname.to_owned(),
        port,
    })
}

const URL_SYNTAX: &str = "ssh://[user@]host[:port]";

/// `ssh://[user@]host[:port]`, as OpenSSH reads it (`parse_uri` in its misc.c): the user ends at
/// the first `@` and is percent-decoded, the host may be an IPv6 address in brackets, and a
/// trailing `/` is allowed but a path is not. OpenSSH ignores `;` connection parameters after
/// the user; they are refused here rather than silently dropped.
fn url(s: &str, scheme: &str, rest: &str) -> Result<HostSpec, String> {
    let bad = |why: &str| format!("{s:?} is not a server URL: {why} (expected {URL_SYNTAX})");
    if !scheme.eq_ignore_ascii_case("ssh") {
        return Err(bad(&format!("{scheme}:// is not ssh://")));
    }
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains('/') {
        return Err(bad("a server URL has no path"));
    }
    let (user, rest) = match rest.split_once('@') {
        Some((user, _)) if user.contains(';') => {
            return Err(bad("connection parameters (;...) are not supported"));
        }
        Some((user, rest)) => {
            let user =
                percent_decode(user).ok_or_else(|| bad("the user is not valid %-encoded UTF-8"))?;
            check_user(&user).map_err(|e| bad(&e))?;
            (Some(user), rest)
        }
        None => (None, rest),
    };
    let fields = address::split_fields(rest).ok_or_else(|| bad("unbalanced brackets"))?;
    let (hostname, port) = match fields.as_slice() {
        [host] => (host.text, None),
        [host, port] if !port.bracketed => (host.text, Some(port.text)),
        _ => {
            return Err(bad(
                "an IPv6 address goes in brackets, as in ssh://[2001:db8::1]:22",
            ));
        }
    };
    address::host(hostname).map_err(|e| bad(&e))?;
    let port = match port {
        Some(port) => Some(address::port(port, false).map_err(|e| bad(&e))?),
        None => None,
    };
    Ok(HostSpec {
        user,
        hostname: hostname.to_owned(),
        port,
    })
}

/// OpenSSH's `urldecode`, which the user of an `ssh://` URL goes through: `%XX` is a byte and
/// `+` a space (which `check_user` then refuses, rather than logging in as someone else). Written
/// out because the percent-encoding crate keeps `+` and passes a broken `%` through, where ssh
/// refuses the URL. `None` for a broken escape or bytes that are not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(text.len());
    let mut rest = text.as_bytes();
    while let Some((&byte, tail)) = rest.split_first() {
        rest = tail;
        match byte {
            b'+' => bytes.push(b' '),
            b'%' => {
                let hex = std::str::from_utf8(rest.get(..2)?).ok()?;
                bytes.push(u8::from_str_radix(hex, 16).ok()?);
                rest = rest.get(2..)?;
            }
            _ => bytes.push(byte),
        }
    }
    String::from_utf8(bytes).ok()
}

/// Checks a user name: not empty, no blanks or control characters.
pub(crate) fn check_user(user: &str) -> Result<(), String> {
    if user.is_empty() {
        return Err("the user name is empty".to_owned());
    }
    if let Some(c) = user.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("user name {user:?} contains {c:?}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(user: Option<&str>, hostname: &str, port: Option<u16>) -> HostSpec {
        HostSpec {
            user: user.map(str::to_owned),
            hostname: hostname.to_owned(),
            port,
        }
    }

    #[test]
    fn host_strings() {
        let table = [
            ("db.example.com", spec(None, "db.example.com", None)),
            (
                "admin@proxy.example.com",
                spec(Some("admin"), "proxy.example.com", None),
            ),
            (
                "admin@203.0.113.7:2222",
                spec(Some("admin"), "203.0.113.7", Some(2222)),
            ),
            ("[::1]:2222", spec(None, "::1", Some(2222))),
            ("[2001:db8::1]", spec(None, "2001:db8::1", None)),
            ("2001:db8::1", spec(None, "2001:db8::1", None)),
            ("::1", spec(None, "::1", None)),
            ("u@[::1]:22", spec(Some("u"), "::1", Some(22))),
            ("a@b@host", spec(Some("a@b"), "host", None)),
        ];
        for (text, expected) in table {
            assert_eq!(parse(text), Ok(expected), "{text}");
        }
    }

    #[test]
    fn bad_host_strings() {
        let table = [
            ("", "the host name is empty"),
            ("admin@", "the host name is empty"),
            ("@host", "the user name is empty"),
            ("host:0", "port 0 is out of range (expected 1-65535)"),
            (
                "host:70000",
                "port 70000 is out of range (expected 1-65535)",
            ),
            (
                "host:ssh",
                "\"ssh\" is not a port number (expected 1-65535)",
            ),
            ("host:", "\"\" is not a port number (expected 1-65535)"),
            (
                "2001:db8::1:22x",
                "an IPv6 address with a port goes in brackets, as in [2001:db8::1]:22",
            ),
            ("[::1", "unbalanced brackets"),
            ("[::1]:22:33", "unexpected text after the address"),
            ("my host", "host name \"my host\" contains ' '"),
            ("ad min@host", "user name \"ad min\" contains ' '"),
        ];
        for (text, why) in table {
            let expected =
                format!("{text:?} is not a [hosts] name or [user@]hostname[:port]: {why}");
            assert_eq!(parse(text), Err(expected), "{text}");
        }
    }

    #[test]
    fn ssh_urls() {
        let table = [
            ("ssh://h", spec(None, "h", None)),
            ("ssh://user@h:2222", spec(Some("user"), "h", Some(2222))),
            ("ssh://user@h:2222/", spec(Some("user"), "h", Some(2222))),
            ("SSH://h/", spec(None, "h", None)),
            ("ssh://[::1]:22", spec(None, "::1", Some(22))),
            (
                "ssh://u@[2001:db8::1]",
                spec(Some("u"), "2001:db8::1", None),
            ),
            (
                "ssh://first.last%40corp@h",
                spec(Some("first.last@corp"), "h", None),
            ),
        ];
        for (text, expected) in table {
            assert_eq!(parse(text), Ok(expected), "{text}");
        }
    }

    #[test]
    fn bad_ssh_urls() {
        let table = [
            ("sftp://h", "sftp:// is not ssh://"),
            ("ssh://h/db", "a server URL has no path"),
            ("ssh://h:2222/x", "a server URL has no path"),
            (
                "ssh://u;fingerprint=x@h",
                "connection parameters (;...) are not supported",
            ),
            ("ssh://@h", "the user name is empty"),
            ("ssh://a+b@h", "user name \"a b\" contains ' '"),
            ("ssh://u%4@h", "the user is not valid %-encoded UTF-8"),
            ("ssh://u%zz@h", "the user is not valid %-encoded UTF-8"),
            ("ssh://u%ff@h", "the user is not valid %-encoded UTF-8"),
            ("ssh://", "the host name is empty"),
            ("ssh://u@", "the host name is empty"),
            ("ssh://h:0", "port 0 is out of range (expected 1-65535)"),
            ("ssh://h:", "\"\" is not a port number (expected 1-65535)"),
            (
                "ssh://2001:db8::1",
                "an IPv6 address goes in brackets, as in ssh://[2001:db8::1]:22",
            ),
            ("ssh://[::1", "unbalanced brackets"),
            ("ssh://a@b@h", "host name \"b@h\" contains '@'"),
        ];
        for (text, why) in table {
            let expected =
                format!("{text:?} is not a server URL: {why} (expected ssh://[user@]host[:port])");
            assert_eq!(parse(text), Err(expected), "{text}");
        }
    }
}
