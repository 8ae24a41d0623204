//! `proxy`: the HTTP (CONNECT) or SOCKS5 proxy through which the first hop is reached, as
//! `"http://HOST:PORT"` or `"socks5://HOST:PORT"`.

use std::fmt;

/// The kind of proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyKind {
    /// An HTTP proxy that takes `CONNECT host:port`.
    Http,
    /// A SOCKS5 proxy, asked without authentication, with the host name (the proxy resolves it).
    Socks5,
}

/// A proxy in front of the first hop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proxy {
    /// HTTP or SOCKS5.
    pub kind: ProxyKind,
    /// The proxy's host name or address (an IPv6 address without brackets).
    pub host: String,
    /// Its port.
    pub port: u16,
}

impl fmt::Display for Proxy {
    /// `http://proxy.example.com:3128`, `socks5://[::1]:1080`: as the file takes it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.kind {
            ProxyKind::Http => "http",
            ProxyKind::Socks5 => "socks5",
        };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

/// What a valid value looks like, for messages.
pub(crate) const EXPECTED: &str =
    "\"http://HOST:PORT\" or \"socks5://HOST:PORT\", an IPv6 address in brackets";

/// Parses `text` strictly: a scheme, a host and a port, nothing else (no credentials, no path).
pub(crate) fn parse(text: &str) -> Result<Proxy, String> {
    let Some((scheme, rest)) = text.split_once("://") else {
        return Err(format!("{text:?} has no scheme"));
    };
    let kind = match scheme.to_ascii_lowercase().as_str() {
        "http" => ProxyKind::Http,
        // socks5h (curl's "the proxy resolves the name") is what tunneld always does.
        "socks5" | "socks5h" => ProxyKind::Socks5,
        other => return Err(format!("unsupported proxy scheme {other:?}")),
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains('@') {
        return Err("a user and password for the proxy are not supported".to_owned());
    }
    if rest.contains(['/', '?', '#']) {
        return Err(format!("{text:?} has a path; a proxy is only HOST:PORT"));
    }
    let (host, port) = if let Some(bracketed) = rest.strip_prefix('[') {
        let Some((host, after)) = bracketed.split_once(']') else {
            return Err(format!("{text:?} has an unclosed '['"));
        };
        if host.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("{host:?} in brackets is not an IPv6 address"));
        }
        let Some(port) = after.strip_prefix(':') else {
            return Err(format!("{text:?} has no port"));
        };
        (host, port)
    } else {
        match rest.rsplit_once(':') {
            Some((host, _)) if host.contains(':') => {
                return Err(format!("{text:?}: an IPv6 address goes in brackets"));
            }
            Some((host, port)) => (host, port),
            None => return Err(format!("{text:?} has no port")),
        }
    };
    let valid_host = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'));
    if !valid_host {
        return Err(format!("{host:?} is not a host name or address"));
    }
    let port = match port.parse::<u16>() {
        Ok(port) if port > 0 => port,
        _ => return Err(format!("{port:?} is not a port (1-65535)")),
    };
    Ok(Proxy {
        kind,
        host: host.to_owned(),
        port,
    })
}

#[cfg(test)]
mod tests {
    use super::{Proxy, ProxyKind, parse};

    #[test]
    fn takes_http_and_socks5_with_a_host_and_a_port() {
        let http = parse("http://proxy.example.com:3128").unwrap();
        assert_eq!(
            http,
            Proxy {
                kind: ProxyKind::Http,
                host: "proxy.example.com".to_owned(),
                port: 3128
            }
        );
        assert_eq!(http.to_string(), "http://proxy.example.com:3128");
        let socks = parse("socks5://[::1]:1080/").unwrap();
        assert_eq!(
            (socks.kind, socks.host.as_str()),
            (ProxyKind::Socks5, "::1")
        );
        assert_eq!(socks.to_string(), "socks5://[::1]:1080");
        assert_eq!(parse("SOCKS5H://127.0.0.1:1080").unwrap().port, 1080);
    }

    #[test]
    fn refuses_what_it_cannot_dial() {
        for (text, why) in [
            ("proxy.example.com:3128", "has no scheme"),
            ("https://p:3128", "unsupported proxy scheme \"https\""),
            ("http://p", "has no port"),
            ("http://p:0", "is not a port"),
            ("http://p:99999", "is not a port"),
            ("http://user:pw@p:3128", "user and password"),
            ("http://p:3128/path", "has a path"),
            ("http://::1:3128", "in brackets"),
            ("http://[p]:3128", "not an IPv6 address"),
            ("http://:3128", "not a host name"),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.contains(why), "{text}: {err}");
        }
    }

    #[test]
    fn a_tunnels_proxy_reaches_its_first_jump_host_and_a_bad_one_is_located() {
        let env = crate::Environment {
            user: "u".to_owned(),
        };
        let path = std::path::Path::new("t.toml");
        let text = "[defaults]\nuse_agent = true\n[hosts.gw]\nhostname = \"gw.example.com\"\n\
                    [tunnels.t]\nhost = \"db\"\njump = [\"gw\"]\n\
                    proxy = \"http://proxy.example.com:3128\"\nlocal = [\"1:x:1\"]\n";
        let config = crate::parse(path, text, &env).unwrap();
        let first = &config.tunnels[0].jump[0];
        assert_eq!(
            first.proxy.as_ref().map(ToString::to_string).as_deref(),
            Some("http://proxy.example.com:3128")
        );
        let bad = text.replace("http://proxy.example.com:3128", "proxy:3128");
        let err = crate::parse(path, &bad, &env).unwrap_err().to_string();
        assert_eq!(
            err,
            "t.toml:8:9: tunnels.t.proxy: \"proxy:3128\" has no scheme (expected \
             \"http://HOST:PORT\" or \"socks5://HOST:PORT\", an IPv6 address in brackets)"
        );
    }
}
