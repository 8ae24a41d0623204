//! The Unix-socket forms of `local` and `remote` forwards (OpenSSH's streamlocal), in ssh's syntax: a field
//! that starts with `/` is a socket path. Paths cannot contain `:`, as in ssh.

use std::path::PathBuf;

use crate::address;
use crate::forward;
use crate::model::{
    BindAddress, Listen, LocalForward, RemoteForward, RemoteListen, RemoteTarget, Target,
};

const LOCAL_SYNTAX: &str = "/socket:host:hostport, /socket:/socket or [bind:]port:/socket";
const REMOTE_SYNTAX: &str =
    "/serversocket:host:hostport, /serversocket:/socket or [bind:]port:/socket";

/// The longest socket path the kernel takes (`sun_path` is 108 bytes with its NUL).
const MAX_PATH: usize = 107;

/// Parses a `local` forward with a socket at either end; `None` when neither end is one.
/// `mode` is the `socket_mode` of the tunnel, for a socket it listens on.
pub(crate) fn local(spec: &str, mode: u32) -> Result<Option<LocalForward>, String> {
    let Some((listen, target)) = ends(spec, false, LOCAL_SYNTAX)? else {
        return Ok(None);
    };
    let listen = match listen {
        End::Port { bind, port } => Listen::Port { bind, port },
        End::Socket(path) => Listen::Socket { path, mode },
    };
    Ok(Some(LocalForward {
        listen,
        target,
        spec: spec.to_owned(),
    }))
}

/// Parses a `remote` forward with a socket at either end (the listening one is the server's);
/// `None` when neither end is one.
pub(crate) fn remote(spec: &str) -> Result<Option<RemoteForward>, String> {
    let Some((listen, target)) = ends(spec, true, REMOTE_SYNTAX)? else {
        return Ok(None);
    };
    let listen = match listen {
        End::Port { bind, port } => RemoteListen::Port { bind, port },
        End::Socket(path) => RemoteListen::Socket(path),
    };
    Ok(Some(RemoteForward {
        listen,
        target: RemoteTarget::Connect(target),
        spec: spec.to_owned(),
    }))
}

/// The listening end of a forward with a socket.
enum End {
    Port { bind: BindAddress, port: u16 },
    Socket(PathBuf),
}

fn ends(spec: &str, allow_zero: bool, syntax: &str) -> Result<Option<(End, Target)>, String> {
    let shape = || format!("{spec:?} is not {syntax}");
    let (listen, target) = if spec.starts_with('/') {
        let (path, target) = spec.split_once(':').ok_or_else(shape)?;
        (End::Socket(socket_path(spec, path)?), target)
    } else if let Some(at) = spec.find(":/") {
        let (bind, rest) = spec.split_at(at);
        let port = forward::listen_address(bind, allow_zero)
            .map_err(|e| format!("{spec:?}: {e} (expected {syntax})"))?;
        (
            End::Port {
                bind: port.0,
                port: port.1,
            },
            &rest[1..],
        )
    } else {
        return Ok(None);
    };
    let target = if target.starts_with('/') {
        Target::Socket(socket_path(spec, target)?)
    } else {
        let fields = address::split_fields(target).ok_or_else(shape)?;
        let [host, port] = fields.as_slice() else {
            return Err(shape());
        };
        if port.bracketed {
            return Err(shape());
        }
        address::host(host.text).map_err(|e| format!("{spec:?}: {e} (expected {syntax})"))?;
        Target::Port {
            host: host.text.to_owned(),
            port: address::port(port.text, false).map_err(|e| format!("{spec:?}: {e}"))?,
        }
    };
    Ok(Some((listen, target)))
}

fn socket_path(spec: &str, path: &str) -> Result<PathBuf, String> {
    if path.len() > MAX_PATH {
        return Err(format!(
            "{spec:?}: socket path {path:?} is {} bytes long (at most {MAX_PATH})",
            path.len()
        ));
    }
    if path.ends_with('/') || path.contains('\0') {
        return Err(format!("{spec:?}: {path:?} is not a socket file path"));
    }
    Ok(PathBuf::from(path))
}

/// Parses a `socket_mode` value: octal permission bits, as chmod takes them.
pub(crate) fn mode(text: &str) -> Result<u32, String> {
    let bad = || format!("{text:?} is not an octal file mode (expected e.g. \"0660\")");
    let digits = text.strip_prefix("0o").unwrap_or(text);
    if digits.is_empty() || digits.len() > 4 {
        return Err(bad());
    }
    let mode = u32::from_str_radix(digits, 8).map_err(|_| bad())?;
    if mode > 0o777 {
        return Err(format!(
            "{text:?}: only permission bits (at most 0777) apply to a socket"
        ));
    }
    Ok(mode)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn socket(path: &str) -> Listen {
        Listen::Socket {
            path: PathBuf::from(path),
            mode: 0o660,
        }
    }

    #[test]
    fn socket_forms() {
        let table = [
            (
                "/run/tunneld/pg.sock:/var/run/postgresql/.s.PGSQL.5432",
                socket("/run/tunneld/pg.sock"),
                Target::Socket(PathBuf::from("/var/run/postgresql/.s.PGSQL.5432")),
            ),
            (
                "/run/tunneld/pg.sock:db.internal:5432",
                socket("/run/tunneld/pg.sock"),
                Target::Port {
                    host: "db.internal".to_owned(),
                    port: 5432,
                },
            ),
            (
                "/run/a.sock:[::1]:5432",
                socket("/run/a.sock"),
                Target::Port {
                    host: "::1".to_owned(),
                    port: 5432,
                },
            ),
            (
                "5432:/var/run/postgresql/.s.PGSQL.5432",
                Listen::Port {
                    bind: BindAddress::Default,
                    port: 5432,
                },
                Target::Socket(PathBuf::from("/var/run/postgresql/.s.PGSQL.5432")),
            ),
            (
                "[::1]:5432:/run/pg.sock",
                Listen::Port {
                    bind: BindAddress::Host("::1".to_owned()),
                    port: 5432,
                },
                Target::Socket(PathBuf::from("/run/pg.sock")),
            ),
        ];
        for (spec, listen, target) in table {
            let expected = LocalForward {
                listen,
                target,
                spec: spec.to_owned(),
            };
            assert_eq!(local(spec, 0o660), Ok(Some(expected)), "{spec}");
        }
        assert_eq!(local("5432:localhost:5432", 0o660), Ok(None));
    }

    #[test]
    fn bad_socket_forms() {
        let syntax = LOCAL_SYNTAX;
        let long = format!("/{}:/x", "a".repeat(110));
        let table = [
            ("/run/a.sock", format!(r#""/run/a.sock" is not {syntax}"#)),
            (
                "/run/a.sock:db",
                format!(r#""/run/a.sock:db" is not {syntax}"#),
            ),
            (
                "/run/a.sock:db:0",
                r#""/run/a.sock:db:0": port 0 is out of range (expected 1-65535)"#.to_owned(),
            ),
            (
                "pg:/run/a.sock",
                format!(
                    r#""pg:/run/a.sock": "pg": "pg" is not a port number (expected 1-65535) (expected {syntax})"#
                ),
            ),
            (
                "/run/dir/:/x",
                r#""/run/dir/:/x": "/run/dir/" is not a socket file path"#.to_owned(),
            ),
            (
                long.as_str(),
                format!(
                    "{long:?}: socket path {:?} is 111 bytes long (at most 107)",
                    &long[..111]
                ),
            ),
        ];
        for (spec, message) in table {
            assert_eq!(local(spec, 0o660), Err(message), "{spec}");
        }
    }

    #[test]
    fn remote_socket_forms() {
        let table = [
            (
                "/home/tunnel/app.sock:localhost:3000",
                RemoteListen::Socket(PathBuf::from("/home/tunnel/app.sock")),
                Target::Port {
                    host: "localhost".to_owned(),
                    port: 3000,
                },
            ),
            (
                "8080:/run/app.sock",
                RemoteListen::Port {
                    bind: BindAddress::Default,
                    port: 8080,
                },
                Target::Socket(PathBuf::from("/run/app.sock")),
            ),
            (
                "0:/run/app.sock",
                RemoteListen::Port {
                    bind: BindAddress::Default,
                    port: 0,
                },
                Target::Socket(PathBuf::from("/run/app.sock")),
            ),
            (
                "/srv/a.sock:/run/b.sock",
                RemoteListen::Socket(PathBuf::from("/srv/a.sock")),
                Target::Socket(PathBuf::from("/run/b.sock")),
            ),
        ];
        for (spec, listen, target) in table {
            let expected = RemoteForward {
                listen,
                target: RemoteTarget::Connect(target),
                spec: spec.to_owned(),
            };
            assert_eq!(remote(spec), Ok(Some(expected)), "{spec}");
        }
        assert_eq!(remote("9000:localhost:3000"), Ok(None));
    }

    #[test]
    fn modes() {
        assert_eq!(mode("0660"), Ok(0o660));
        assert_eq!(mode("600"), Ok(0o600));
        assert_eq!(mode("0o666"), Ok(0o666));
        assert_eq!(
            mode("rw"),
            Err(r#""rw" is not an octal file mode (expected e.g. "0660")"#.to_owned())
        );
        assert_eq!(
            mode("4755"),
            Err(r#""4755": only permission bits (at most 0777) apply to a socket"#.to_owned())
        );
    }
}
