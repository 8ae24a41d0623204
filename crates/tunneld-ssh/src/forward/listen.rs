//! Binding the local listeners of `local` and `dynamic` forwards, with ssh's address rules.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use socket2::{Domain, Socket, Type};
use tokio::net::TcpListener;
use tracing::debug;
use tunneld_config::BindAddress;

use crate::error::TunnelError;

/// Binds every address a forward listens on: both loopbacks when no bind address was given
/// (as ssh does), both wildcards for `*`, or every address a host name resolves to.
///
/// Every address must bind (ExitOnForwardFailure), except that a missing IPv6 loopback or
/// wildcard on a machine without IPv6 is skipped, as ssh skips it.
pub async fn bind(bind: &BindAddress, port: u16) -> Result<Vec<TcpListener>, TunnelError> {
    let (addrs, optional_v6): (Vec<SocketAddr>, bool) = match bind {
        BindAddress::Default => (
            vec![
                SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port),
                SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), port),
            ],
            true,
        ),
        BindAddress::Any => (
            vec![
                SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port),
                SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port),
            ],
            true,
        ),
        BindAddress::Host(host) => {
            let resolved = tokio::net::lookup_host((host.as_str(), port))
                .await
                .map_err(|source| TunnelError::Listen {
                    listen: format!("{bind}:{port}"),
                    source,
                })?;
            let mut addrs: Vec<SocketAddr> = Vec::new();
            for addr in resolved {
                if !addrs.contains(&addr) {
                    addrs.push(addr);
                }
            }
            (addrs, false)
        }
    };

    let mut listeners = Vec::with_capacity(addrs.len());
    for addr in addrs {
        match bind_one(addr) {
            Ok(listener) => listeners.push(listener),
            Err(err) if optional_v6 && addr.is_ipv6() && ipv6_unavailable(&err) => {
                debug!(%addr, error = %err, "no IPv6 here; listening on IPv4 only");
            }
            Err(source) => {
                return Err(TunnelError::Listen {
                    listen: addr.to_string(),
                    source,
                });
            }
        }
    }
    Ok(listeners)
}

fn ipv6_unavailable(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc_codes::EADDRNOTAVAIL | libc_codes::EAFNOSUPPORT)
    )
}

/// errno values, spelled out rather than pulling in libc for two constants.
mod libc_codes {
    pub(super) const EADDRNOTAVAIL: i32 = nix::errno::Errno::EADDRNOTAVAIL as i32;
    pub(super) const EAFNOSUPPORT: i32 = nix::errno::Errno::EAFNOSUPPORT as i32;
}

fn bind_one(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    if addr.is_ipv6() {
        // Otherwise `::` would also take the IPv4 port that the `0.0.0.0` listener needs.
        socket.set_only_v6(true)?;
    }
    // Like every server: a restart must not fail on connections lingering in TIME_WAIT.
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}
