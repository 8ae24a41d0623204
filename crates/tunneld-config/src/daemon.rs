//! `[daemon]`: settings of the daemon itself rather than of a tunnel (where its control socket
//! is, where it serves metrics).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use toml::Spanned;

use crate::address::{port, split_fields};
use crate::error::{ConfigError, Key, Source};
use crate::raw::RawDaemon;
use crate::settings::checked_path;

/// The `[daemon]` table, checked. Everything is optional.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Daemon {
    /// `control_socket`: where `tunneld run` serves its control socket, instead of the place
    /// derived from the file's name (`tunneld status` looks here first).
    pub control_socket: Option<PathBuf>,
    /// `metrics_listen`: where Prometheus metrics are served (`GET /metrics`); off when `None`.
    /// Port 0 picks a free port.
    pub metrics_listen: Option<SocketAddr>,
}

/// Checks the `[daemon]` table.
pub(crate) fn resolve(
    source: &Source<'_>,
    raw: Option<&Spanned<RawDaemon>>,
    base_dir: &Path,
) -> Result<Daemon, ConfigError> {
    let Some(raw) = raw else {
        return Ok(Daemon::default());
    };
    let raw = raw.get_ref();
    let section = Key::root("daemon");
    let control_socket = match &raw.control_socket {
        Some(text) => Some(
            checked_path(text.get_ref(), base_dir)
                .map_err(|m| source.error(&text.span(), section.field("control_socket"), m))?,
        ),
        None => None,
    };
    let metrics_listen = match &raw.metrics_listen {
        Some(text) => Some(
            metrics_listen(text.get_ref())
                .map_err(|m| source.error(&text.span(), section.field("metrics_listen"), m))?,
        ),
        None => None,
    };
    Ok(Daemon {
        control_socket,
        metrics_listen,
    })
}

/// `PORT`, `ADDRESS:PORT`, `[IPV6]:PORT` or `localhost:PORT`. Loopback unless an address is
/// written: metrics say which tunnels exist and where they go.
fn metrics_listen(text: &str) -> Result<SocketAddr, String> {
    const EXPECTED: &str = "(expected PORT, ADDRESS:PORT or [IPV6]:PORT, like \"127.0.0.1:9469\")";
    let fields =
        split_fields(text).ok_or_else(|| format!("{text:?} is not an address {EXPECTED}"))?;
    let (address, port_text) = match fields.as_slice() {
        [port] if !port.bracketed => (IpAddr::V4(Ipv4Addr::LOCALHOST), port.text),
        [host, port] if !port.bracketed => {
            let address = if host.text == "localhost" && !host.bracketed {
                IpAddr::V4(Ipv4Addr::LOCALHOST)
            } else {
                let address: IpAddr = host
                    .text
                    .parse()
                    .map_err(|_| format!("{:?} is not an IP address {EXPECTED}", host.text))?;
                if address.is_ipv6() && !host.bracketed {
                    return Err(format!(
                        "an IPv6 address needs brackets, as in \"[{}]:{}\" {EXPECTED}",
                        host.text, port.text
                    ));
                }
                address
            };
            (address, port.text)
        }
        _ => {
            if let Some((host, port)) = text.rsplit_once(':')
                && host.parse::<std::net::Ipv6Addr>().is_ok()
            {
                return Err(format!(
                    "an IPv6 address needs brackets, as in \"[{host}]:{port}\" {EXPECTED}"
                ));
            }
            return Err(format!("{text:?} is not an address {EXPECTED}"));
        }
    };
    let port = port(port_text, true)?;
    Ok(SocketAddr::new(address, port))
}

#[cfg(test)]
mod tests {
    use super::metrics_listen;

    #[test]
    fn metrics_listen_is_loopback_unless_written() {
        let ok = |text: &str| metrics_listen(text).map(|a| a.to_string());
        assert_eq!(ok("9469").as_deref(), Ok("127.0.0.1:9469"));
        assert_eq!(ok("0").as_deref(), Ok("127.0.0.1:0"));
        assert_eq!(ok("localhost:9469").as_deref(), Ok("127.0.0.1:9469"));
        assert_eq!(ok("0.0.0.0:9469").as_deref(), Ok("0.0.0.0:9469"));
        assert_eq!(ok("[::1]:9469").as_deref(), Ok("[::1]:9469"));
        assert!(ok("::1:9469").is_err_and(|e| e.contains("brackets")));
        assert!(ok("metrics.example.com:9469").is_err_and(|e| e.contains("not an IP address")));
        assert!(ok("127.0.0.1:70000").is_err());
        assert!(ok("127.0.0.1").is_err());
        assert!(ok("").is_err());
    }
}
