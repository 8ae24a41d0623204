//! Forward strings in ssh's own syntax (`-L`, `-R`, `-D`), IPv6 addresses in brackets.
//!
//! Pure functions from the string as written to the model; errors are messages without a
//! position, which the caller places.

use std::path::PathBuf;

use crate::address::{self, Field};
use crate::model::{
    BindAddress, DynamicForward, Listen, LocalForward, RemoteForward, RemoteListen, RemoteTarget,
    Target,
};

const FORWARD_SYNTAX: &str = "[bind:]port:host:hostport";
const DYNAMIC_SYNTAX: &str = "[bind:]port";

/// The parts of a `local` or `remote` forward.
struct Parts {
    bind: BindAddress,
    port: u16,
    host: String,
    host_port: u16,
}

/// Parses a `local` forward (`-L [bind:]port:host:hostport`); the forms with a Unix socket are
/// `streamlocal`'s.
pub(crate) fn local(spec: &str) -> Result<LocalForward, String> {
    let parts = forward(spec, false)?;
    Ok(LocalForward {
        listen: Listen::Port {
            bind: parts.bind,
            port: parts.port,
        },
        target: Target::Port {
            host: parts.host,
            port: parts.host_port,
        },
        spec: spec.to_owned(),
    })
}

/// Parses a `remote` forward (`-R [bind:]port:host:hostport`, or `-R [bind:]port` for remote
/// dynamic forwarding); port 0 lets the server pick. The forms with a Unix socket are
/// `streamlocal`'s.
pub(crate) fn remote(spec: &str) -> Result<RemoteForward, String> {
    if let Some(socks) = remote_dynamic(spec)? {
        return Ok(socks);
    }
    // Anything else is judged as the fixed-target form, whose messages name its syntax.
    let parts = forward(spec, true)?;
    Ok(RemoteForward {
        listen: RemoteListen::Port {
            bind: parts.bind,
            port: parts.port,
        },
        target: RemoteTarget::Connect(Target::Port {
            host: parts.host,
            port: parts.host_port,
        }),
        spec: spec.to_owned(),
    })
}

/// `[bind:]port` alone, as ssh reads `-R`: the server's port becomes a SOCKS proxy whose
/// connections leave from this side. `None` when the spec has another shape; an error when it
/// has this one with a bad port or bind address.
fn remote_dynamic(spec: &str) -> Result<Option<RemoteForward>, String> {
    let Some(fields) = address::split_fields(spec) else {
        return Ok(None);
    };
    let (bind, port) = match fields.as_slice() {
        [port] if !port.bracketed && is_number(port.text) => (BindAddress::Default, *port),
        [bind, port] if !port.bracketed && is_number(port.text) => {
            (bind_address(spec, *bind, DYNAMIC_SYNTAX)?, *port)
        }
        _ => return Ok(None),
    };
    Ok(Some(RemoteForward {
        listen: RemoteListen::Port {
            bind,
            port: field_port(spec, port.text, true)?,
        },
        target: RemoteTarget::Socks,
        spec: spec.to_owned(),
    }))
}

/// A field of digits only: what makes `[bind:]port` a port and not a host.
fn is_number(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())
}

/// Parses the listening address of a `dynamic` forward (`-D [bind:]port`).
pub(crate) fn dynamic(spec: &str, auth_file: Option<PathBuf>) -> Result<DynamicForward, String> {
    let (bind, port) = listen_address(spec, false)?;
    Ok(DynamicForward {
        bind,
        port,
        auth_file,
        spec: spec.to_owned(),
    })
}

/// Parses a listening address, `[bind:]port`; `allow_zero` for a server that picks the port.
pub(crate) fn listen_address(spec: &str, allow_zero: bool) -> Result<(BindAddress, u16), String> {
    let shape = || format!("{spec:?} is not {DYNAMIC_SYNTAX}");
    let fields = address::split_fields(spec).ok_or_else(shape)?;
    let (bind, port) = match fields.as_slice() {
        [port] if !port.bracketed => (BindAddress::Default, *port),
        [bind, port] if !port.bracketed => (bind_address(spec, *bind, DYNAMIC_SYNTAX)?, *port),
        _ => return Err(shape()),
    };
    Ok((bind, field_port(spec, port.text, allow_zero)?))
}

fn forward(spec: &str, allow_zero: bool) -> Result<Parts, String> {
    let shape = || format!("{spec:?} is not {FORWARD_SYNTAX}");
    let fields = address::split_fields(spec).ok_or_else(shape)?;
    let (bind, port, host, host_port) = match fields.as_slice() {
        [port, host, host_port] => (BindAddress::Default, *port, *host, *host_port),
        [bind, port, host, host_port] => (
            bind_address(spec, *bind, FORWARD_SYNTAX)?,
            *port,
            *host,
            *host_port,
        ),
        _ => return Err(shape()),
    };
    if port.bracketed || host_port.bracketed {
        return Err(shape());
    }
    let port = field_port(spec, port.text, allow_zero)?;
    address::host(host.text).map_err(|e| format!("{spec:?}: {e} (expected {FORWARD_SYNTAX})"))?;
    Ok(Parts {
        bind,
        port,
        host: host.text.to_owned(),
        host_port: field_port(spec, host_port.text, false)?,
    })
}

fn bind_address(spec: &str, field: Field<'_>, syntax: &str) -> Result<BindAddress, String> {
    if !field.bracketed && (field.text.is_empty() || field.text == "*") {
        return Ok(BindAddress::Any);
    }
    address::host(field.text)
        .map_err(|e| format!("{spec:?}: bind address: {e} (expected {syntax})"))?;
    Ok(BindAddress::Host(field.text.to_owned()))
}

fn field_port(spec: &str, text: &str, allow_zero: bool) -> Result<u16, String> {
    address::port(text, allow_zero).map_err(|e| format!("{spec:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use BindAddress::{Any, Default, Host};

    fn h(s: &str) -> BindAddress {
        Host(s.to_owned())
    }

    #[test]
    fn local_forwards() {
        let table = [
            ("5432:localhost:5432", Default, 5432, "localhost", 5432),
            (
                "127.0.0.1:6379:localhost:6379",
                h("127.0.0.1"),
                6379,
                "localhost",
                6379,
            ),
            ("[::1]:5432:db:5432", h("::1"), 5432, "db", 5432),
            ("*:8080:web:80", Any, 8080, "web", 80),
            (":8080:web:80", Any, 8080, "web", 80),
            (
                "5432:[2001:db8::1]:5432",
                Default,
                5432,
                "2001:db8::1",
                5432,
            ),
            ("0.0.0.0:1:h:65535", h("0.0.0.0"), 1, "h", 65535),
            (
                "[2001:db8::2]:443:[2001:db8::1]:8443",
                h("2001:db8::2"),
                443,
                "2001:db8::1",
                8443,
            ),
            (
                "localhost:3000:grafana.internal:3000",
                h("localhost"),
                3000,
                "grafana.internal",
                3000,
            ),
        ];
        for (spec, bind, port, host, host_port) in table {
            let expected = LocalForward {
                listen: Listen::Port { bind, port },
                target: Target::Port {
                    host: host.to_owned(),
                    port: host_port,
                },
                spec: spec.to_owned(),
            };
            assert_eq!(local(spec), Ok(expected), "{spec}");
        }
    }

    #[test]
    fn bad_local_forwards() {
        let table = [
            (
                "5432:localhost",
                r#""5432:localhost" is not [bind:]port:host:hostport"#,
            ),
            ("5432", r#""5432" is not [bind:]port:host:hostport"#),
            ("", r#""" is not [bind:]port:host:hostport"#),
            (
                "a:b:c:d:e",
                r#""a:b:c:d:e" is not [bind:]port:host:hostport"#,
            ),
            (
                "::1:5432:db:5432",
                r#""::1:5432:db:5432" is not [bind:]port:host:hostport"#,
            ),
            (
                "[::1:5432:db:5432",
                r#""[::1:5432:db:5432" is not [bind:]port:host:hostport"#,
            ),
            (
                "[5432]:db:5432",
                r#""[5432]:db:5432" is not [bind:]port:host:hostport"#,
            ),
            (
                "70000:localhost:5432",
                r#""70000:localhost:5432": port 70000 is out of range (expected 1-65535)"#,
            ),
            (
                "0:localhost:5432",
                r#""0:localhost:5432": port 0 is out of range (expected 1-65535)"#,
            ),
            (
                "5432:localhost:0",
                r#""5432:localhost:0": port 0 is out of range (expected 1-65535)"#,
            ),
            (
                "pg:localhost:5432",
                r#""pg:localhost:5432": "pg" is not a port number (expected 1-65535)"#,
            ),
            (
                "5432::5432",
                r#""5432::5432": the host name is empty (expected [bind:]port:host:hostport)"#,
            ),
            (
                "5432:db host:5432",
                r#""5432:db host:5432": host name "db host" contains ' ' (expected [bind:]port:host:hostport)"#,
            ),
            (
                "[]:5432:db:5432",
                r#""[]:5432:db:5432": bind address: the host name is empty (expected [bind:]port:host:hostport)"#,
            ),
        ];
        for (spec, message) in table {
            assert_eq!(local(spec), Err(message.to_owned()), "{spec}");
        }
    }

    #[test]
    fn remote_forwards() {
        let table = [
            ("9000:localhost:3000", Default, 9000, "localhost", 3000),
            ("2222:localhost:22", Default, 2222, "localhost", 22),
            ("0:localhost:22", Default, 0, "localhost", 22),
            ("*:9000:localhost:3000", Any, 9000, "localhost", 3000),
            (
                "0.0.0.0:9000:localhost:3000",
                h("0.0.0.0"),
                9000,
                "localhost",
                3000,
            ),
            ("[::]:9000:[::1]:3000", h("::"), 9000, "::1", 3000),
        ];
        for (spec, bind, port, host, host_port) in table {
            let expected = RemoteForward {
                listen: RemoteListen::Port { bind, port },
                target: RemoteTarget::Connect(Target::Port {
                    host: host.to_owned(),
                    port: host_port,
                }),
                spec: spec.to_owned(),
            };
            assert_eq!(remote(spec), Ok(expected), "{spec}");
        }
        assert_eq!(
            remote("9000:localhost:0"),
            Err(r#""9000:localhost:0": port 0 is out of range (expected 1-65535)"#.to_owned())
        );
        assert_eq!(
            remote("9000:localhost"),
            Err(r#""9000:localhost" is not [bind:]port:host:hostport"#.to_owned())
        );
    }

    #[test]
    fn remote_dynamic_forwards() {
        let table = [
            ("1080", Default, 1080),
            ("0", Default, 0),
            ("127.0.0.1:1080", h("127.0.0.1"), 1080),
            ("[::1]:1080", h("::1"), 1080),
            ("*:1080", Any, 1080),
            (":1080", Any, 1080),
        ];
        for (spec, bind, port) in table {
            let expected = RemoteForward {
                listen: RemoteListen::Port { bind, port },
                target: RemoteTarget::Socks,
                spec: spec.to_owned(),
            };
            assert_eq!(remote(spec), Ok(expected), "{spec}");
        }
        // What is not `[bind:]port` is judged as the fixed-target form, with its messages.
        let table = [
            ("", r#""" is not [bind:]port:host:hostport"#),
            ("socks", r#""socks" is not [bind:]port:host:hostport"#),
            (
                "65536",
                r#""65536": port 65536 is out of range (expected 0-65535)"#,
            ),
            (
                "a b:1080",
                r#""a b:1080": bind address: host name "a b" contains ' ' (expected [bind:]port)"#,
            ),
            ("[::1]", r#""[::1]" is not [bind:]port:host:hostport"#),
        ];
        for (spec, message) in table {
            assert_eq!(remote(spec), Err(message.to_owned()), "{spec}");
        }
    }

    #[test]
    fn dynamic_forwards() {
        let table = [
            ("1080", Default, 1080),
            ("127.0.0.1:1080", h("127.0.0.1"), 1080),
            ("[::1]:1080", h("::1"), 1080),
            ("*:1080", Any, 1080),
            (":1080", Any, 1080),
        ];
        for (spec, bind, port) in table {
            let expected = DynamicForward {
                bind,
                port,
                auth_file: None,
                spec: spec.to_owned(),
            };
            assert_eq!(dynamic(spec, None), Ok(expected), "{spec}");
        }
        let with_auth = dynamic("1080", Some(PathBuf::from("/etc/tunneld/socks-users")));
        assert_eq!(
            with_auth.map(|d| d.auth_file),
            Ok(Some(PathBuf::from("/etc/tunneld/socks-users")))
        );
    }

    #[test]
    fn bad_dynamic_forwards() {
        let table = [
            ("", r#""": "" is not a port number (expected 1-65535)"#),
            (
                "socks",
                r#""socks": "socks" is not a port number (expected 1-65535)"#,
            ),
            ("0", r#""0": port 0 is out of range (expected 1-65535)"#),
            (
                "65536",
                r#""65536": port 65536 is out of range (expected 1-65535)"#,
            ),
            ("a:b:1080", r#""a:b:1080" is not [bind:]port"#),
            ("::1:1080", r#""::1:1080" is not [bind:]port"#),
            ("[::1]", r#""[::1]" is not [bind:]port"#),
            ("[::1]:[1080]", r#""[::1]:[1080]" is not [bind:]port"#),
            (
                "a b:1080",
                r#""a b:1080": bind address: host name "a b" contains ' ' (expected [bind:]port)"#,
            ),
        ];
        for (spec, message) in table {
            assert_eq!(dynamic(spec, None), Err(message.to_owned()), "{spec}");
        }
    }
}
