//! Binding the local listeners of `local` and `dynamic` forwards, with ssh's address rules.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use socket2::{Domain, Socket, Type};
use tokio::net::TcpListener;
use tracing::debug;
use tunneld_config::BindAddress;

use crate::error::TunnelError;

/// One address a forward listens on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListenAddress {
    /// The address and port.
    pub addr: SocketAddr,
    /// Whether the machine may lack it: the IPv6 loopback or wildcard, when no bind address or
    /// `*` was written. ssh skips those on a machine without IPv6, and so do we.
    pub optional: bool,
}

impl ListenAddress {
    /// Binds this address and listens on it. `Ok(None)` when it was optional and this machine
    /// has no IPv6.
    pub fn bind(&self) -> io::Result<Option<TcpListener>> {
        match bind_one(self.addr) {
            Ok(listener) => Ok(Some(listener)),
            Err(err) if self.optional && self.addr.is_ipv6() && ipv6_unavailable(&err) => {
                debug!(addr = %self.addr, error = %err, "no IPv6 here; listening on IPv4 only");
                Ok(None)
            }
            Err(err) => Err(err),
        }
    }

    /// The failure to bind this address, as the tunnel reports it.
    pub fn failed(&self, source: io::Error) -> TunnelError {
        TunnelError::Listen {
            listen: self.addr.to_string(),
            source,
        }
    }
}

/// Every address a forward listens on: both loopbacks when no bind address was given (as ssh
/// does), both wildcards for `*`, or every address a host name resolves to.
pub async fn addresses(bind: &BindAddress, port: u16) -> Result<Vec<ListenAddress>, TunnelError> {
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
    Ok(addrs
        .into_iter()
        .map(|addr| ListenAddress {
            addr,
            optional: optional_v6 && addr.is_ipv6(),
        })
        .collect())
}

/// Binds every address a forward listens on (see [`addresses`]), all of them or none
/// (ExitOnForwardFailure), except that a missing IPv6 loopback or wildcard on a machine without
/// IPv6 is skipped, as ssh skips it.
pub async fn bind(bind: &BindAddress, port: u16) -> Result<Vec<TcpListener>, TunnelError> {
    let mut listeners = Vec::new();
    for address in addresses(bind, port).await? {
        listeners.extend(address.bind().map_err(|err| address.failed(err))?);
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
