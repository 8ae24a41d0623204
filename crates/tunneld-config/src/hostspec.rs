//! `[user@]hostname[:port]`: how a tunnel's `host` and the elements of `jump` name a server that
//! has no `[hosts]` entry. IPv6 addresses as `[2001:db8::1]:2222`, or bare without a port.

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

/// Parses `[user@]hostname[:port]`.
pub(crate) fn parse(s: &str) -> Result<HostSpec, String> {
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
}
