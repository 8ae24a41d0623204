//! Opening the TCP connection to a server: resolve afresh, try each address in turn, tune the
//! socket for a long-lived tunnel.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use dns_lookup::{AddrInfoHints, LookupErrorKind, SockType};
use socket2::SockRef;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tracing::debug;

use crate::error::{Lookup, Peer, Stage, TunnelError};

/// The shortest time any one address gets, so that a host with many addresses does not split
/// the budget into slivers that no handshake could meet.
const MIN_PER_ADDRESS: Duration = Duration::from_secs(1);

/// How long an unanswered TCP connect waits before another one is started beside it.
const STAGGER: Duration = Duration::from_secs(1);

/// At most this many connects to one address at once.
const MAX_STAGGERED: usize = 16;

/// Resolves `host` (again on every call, so a DNS change is followed) and connects to its
/// addresses in turn until one answers. Each address gets an equal share of what is left of
/// the budget, so one black-holed address cannot eat all of it.
pub(crate) async fn connect_tcp(
    host: &str,
    port: u16,
    peer: &Peer,
    deadline: Instant,
    budget: Duration,
) -> Result<TcpStream, TunnelError> {
    let addrs = tokio::time::timeout_at(deadline, resolve(host, port))
        .await
        .map_err(|_| TunnelError::Timeout {
            peer: peer.clone(),
            stage: Stage::Connect,
            after: budget,
        })??;

    let mut attempts = Vec::new();
    for (index, addr) in addrs.iter().enumerate() {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        let left = u32::try_from(addrs.len() - index).unwrap_or(u32::MAX);
        let share = ((deadline - now) / left).max(MIN_PER_ADDRESS);
        let attempt_deadline = (now + share).min(deadline);
        debug!(%addr, "connecting");
        match connect_staggered(*addr, attempt_deadline).await {
            Ok(stream) => return Ok(stream),
            Err(err) => attempts.push((*addr, err)),
        }
    }
    if attempts.is_empty() && !addrs.is_empty() {
        return Err(TunnelError::Timeout {
            peer: peer.clone(),
            stage: Stage::Connect,
            after: budget,
        });
    }
    Err(TunnelError::Connect {
        peer: peer.clone(),
        attempts,
    })
}

/// The addresses of `host`, from the system's resolver (getaddrinfo, so /etc/hosts and
/// nsswitch.conf count as they do for ssh). It blocks, so it runs on a blocking thread; an
/// address literal needs no lookup.
///
/// The failure keeps getaddrinfo's code: a name that does not exist and a DNS server that does
/// not answer are retried very differently, and the message text is no way to tell them apart.
async fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, TunnelError> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let name = host.to_owned();
    let looked_up = tokio::task::spawn_blocking(move || {
        let hints = AddrInfoHints {
            socktype: SockType::Stream.into(),
            ..AddrInfoHints::default()
        };
        dns_lookup::getaddrinfo(Some(&name), Some(&port.to_string()), Some(hints)).map(|found| {
            // An entry of a family that is not IP cannot be dialled; skip it.
            found
                .filter_map(|info| info.ok().map(|info| info.sockaddr))
                .collect::<Vec<_>>()
        })
    })
    .await
    .map_err(|source| TunnelError::TaskFailed {
        what: "resolving a host name",
        source,
    })?;
    looked_up.map_err(|err| TunnelError::Resolve {
        host: host.to_string(),
        lookup: match err.kind() {
            LookupErrorKind::NoName | LookupErrorKind::NoData => Lookup::NoSuchName,
            _ => Lookup::NoAnswer,
        },
        source: err.into(),
    })
}

/// Connects to `addr`, starting a fresh attempt every [`STAGGER`] while earlier ones get no
/// answer; the first to succeed wins.
///
/// After a network cut the kernel retransmits an unanswered SYN only after 1, 3, 7, 15 s...,
/// so a single attempt can sit for seconds after the path is back. A new SYN every second
/// bounds that wait to about a second.
async fn connect_staggered(addr: SocketAddr, deadline: Instant) -> io::Result<TcpStream> {
    let mut attempts = tokio::task::JoinSet::new();
    let mut last_error: Option<io::Error> = None;
    attempts.spawn(TcpStream::connect(addr));
    let mut next_start = Instant::now() + STAGGER;
    loop {
        tokio::select! {
            joined = attempts.join_next(), if !attempts.is_empty() => match joined {
                Some(Ok(Ok(stream))) => return Ok(stream),
                // Refused, unreachable...: the answer is in; another SYN would get the same.
                Some(Ok(Err(err))) => {
                    if attempts.is_empty() {
                        return Err(err);
                    }
                    last_error = Some(err);
                }
                Some(Err(join)) => last_error = Some(io::Error::other(join)),
                None => {}
            },
            () = tokio::time::sleep_until(next_start), if attempts.len() < MAX_STAGGERED => {
                attempts.spawn(TcpStream::connect(addr));
                next_start += STAGGER;
            }
            () = tokio::time::sleep_until(deadline) => {
                return Err(last_error.unwrap_or_else(|| io::Error::new(io::ErrorKind::TimedOut, "no answer")));
            }
        }
        if attempts.is_empty()
            && let Some(err) = last_error.take()
        {
            return Err(err);
        }
    }
}

/// Socket options for the SSH connection.
///
/// `user_timeout` bounds how long written data may stay unacknowledged before the kernel gives
/// up on the connection: the case of a peer frozen while we write, which keepalives miss.
pub(crate) fn tune(stream: &TcpStream, user_timeout: Option<Duration>) {
    let sock = SockRef::from(stream);
    if let Err(err) = sock.set_tcp_nodelay(true) {
        debug!(error = %err, "TCP_NODELAY");
    }
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if let Some(timeout) = user_timeout
        && let Err(err) = sock.set_tcp_user_timeout(Some(timeout))
    {
        debug!(error = %err, "TCP_USER_TIMEOUT");
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let _ = user_timeout;
}

/// The SSH socket, re-arming TCP_QUICKACK after every read that emptied it.
///
/// OpenSSH's sshd leaves Nagle on for sessions without a pty. A reply that a target writes in
/// two pieces then waits for our delayed ACK: a 40 ms stall on every small request (pitfall 9).
/// Linux clears QUICKACK by itself, so it has to be set again. Only a read that returned less
/// than it asked for needs it: that read took all the kernel held, so we now wait for the
/// server, and an ACK held back now is what would stall it. A read that filled its buffer
/// leaves more to read at once. (russh reads whatever the socket holds, up to 256 KiB,
/// vendor/russh/PATCHES.md change 3; during a transfer most reads empty the socket, so this
/// mostly saves the call on the reads that do not.)
pub(crate) struct QuickAckStream {
    inner: TcpStream,
}

impl QuickAckStream {
    pub(crate) fn new(inner: TcpStream) -> Self {
        QuickAckStream { inner }
    }
}

impl AsyncRead for QuickAckStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        #[cfg(any(target_os = "linux", target_os = "android"))]
        if matches!(result, Poll::Ready(Ok(())))
            && buf.filled().len() > before
            && buf.remaining() > 0
        {
            // Best effort: a failure only costs latency.
            let _ = SockRef::from(&self.inner).set_tcp_quickack(true);
        }
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        let _ = before;
        result
    }
}

impl AsyncWrite for QuickAckStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
