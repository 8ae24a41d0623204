//! Copying between a TCP socket and an SSH channel, closing the way russh needs.
//!
//! Three russh behaviours shape this file (the pitfalls of docs/design.md):
//! - Pitfall 2: russh pushes incoming data into each channel's bounded queue with a blocking
//!   send, and grants the server more window on receipt, not on consumption. A client that stops
//!   reading would therefore stall the whole SSH session, keepalives included. So the channel is
//!   drained into a buffer of our own; when that buffer is full and the client has not taken a
//!   byte for `stall_limit`, the connection is dropped instead of the session stalling.
//!   While the buffer is full we stop draining (backpressure on the whole session), except when
//!   our own upstream is waiting for window: the server's window adjustments reach us only
//!   through that same session loop, so stopping then would deadlock a full-duplex exchange
//!   (an echo) with itself. A hard cap bounds the buffer either way.
//! - Pitfall 1: a channel closed by us first leaks its entry inside russh. We only ever send EOF
//!   and then read until the server's close.
//! - Pitfall 11: that wait is bounded: a target that never closes its half must not keep a
//!   channel forever.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::{Buf, Bytes};
use russh::client::Msg;
use russh::{ChannelMsg, ChannelReadHalf, ChannelWriteHalf};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// Bounds for one forwarded connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PipeLimits {
    /// Bytes from the server held for a client that is slower than the server.
    pub buffer: usize,
    /// How long a full buffer may wait for the client to take a byte before the connection is
    /// dropped. Keep it well inside the keepalive budget: meanwhile the session may be stalled.
    pub stall_limit: Duration,
    /// Once either side has finished, how long the server may stay silent before the channel is
    /// given up.
    pub close_limit: Duration,
}

/// The buffer may grow past `PipeLimits::buffer` (while our upstream waits for window) up to
/// this many times it; beyond, the connection is dropped.
const HARD_CAP_FACTOR: usize = 64;

impl Default for PipeLimits {
    fn default() -> Self {
        PipeLimits {
            buffer: 1 << 20,
            stall_limit: Duration::from_secs(10),
            close_limit: Duration::from_secs(30),
        }
    }
}

/// How a forwarded connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PipeEnd {
    /// The server closed the channel after the exchange (the graceful end).
    Closed,
    /// The client stopped reading while the server kept sending; dropped to protect the session.
    ClientStalled,
    /// The server did not close the channel within `close_limit` of the last sign of life.
    CloseTimedOut,
    /// Shutdown interrupted it.
    Cancelled,
}

/// What happened on one forwarded connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PipeReport {
    /// How it ended.
    pub end: PipeEnd,
    /// Bytes sent from the client to the server.
    pub sent: u64,
    /// Bytes received from the server.
    pub received: u64,
}

/// Copies in both directions until the server closes the channel (or a limit runs out).
pub async fn pipe(
    tcp: TcpStream,
    channel: russh::Channel<Msg>,
    limits: PipeLimits,
    cancel: &CancellationToken,
) -> PipeReport {
    let (tcp_read, mut tcp_write) = tcp.into_split();
    let (from_server, to_server) = channel.split();
    let mut from_server = Some(from_server);
    // Whether the upstream half is inside a channel write (waiting for window). A watch, not a
    // flag: the upstream runs inside this task's select, so when it starts waiting while the
    // draining branch is switched off, the loop must wake up to switch it back on.
    let (upstream_writing, mut writing) = watch::channel(false);
    let upstream = upstream(tcp_read, &to_server, &upstream_writing);
    tokio::pin!(upstream);

    let mut report = PipeReport {
        end: PipeEnd::Closed,
        sent: 0,
        received: 0,
    };
    let mut up_done = false;
    let mut server_eof = false;
    let mut client_gone = false;
    let mut pending: VecDeque<Bytes> = VecDeque::new();
    let mut pending_bytes = 0usize;
    let mut stalled_since: Option<Instant> = None;
    // The last sign of life once one side has finished; the close limit counts from it.
    let mut quiet_since: Option<Instant> = None;

    loop {
        let over = pending_bytes >= limits.buffer;
        if pending_bytes >= limits.buffer.saturating_mul(HARD_CAP_FACTOR) {
            warn!(
                buffered = pending_bytes,
                "the client is too far behind the server; closing it so the tunnel's other connections keep flowing"
            );
            report.end = PipeEnd::ClientStalled;
            give_up(from_server.take(), &to_server).await;
            return report;
        }
        let buffer_full = over && !*writing.borrow_and_update();
        if !over {
            stalled_since = None;
        } else if stalled_since.is_none() {
            stalled_since = Some(Instant::now());
        }
        let stall_deadline = stalled_since.map(|t| t + limits.stall_limit);
        let close_deadline = quiet_since.map(|t| t + limits.close_limit);

        tokio::select! {
            biased;
            () = cancel.cancelled() => {
                report.end = PipeEnd::Cancelled;
                return report;
            }

            // Our upstream started waiting for window: drain again (see the module comment).
            _ = writing.changed(), if buffer_full => {}

            // Server -> us: drained whenever our own buffer has room.
            msg = wait(&mut from_server), if !buffer_full => match msg {
                Some(ChannelMsg::Data { data }) => {
                    report.received += data.len() as u64;
                    if quiet_since.is_some() {
                        quiet_since = Some(Instant::now());
                    }
                    if !client_gone && !data.is_empty() {
                        pending_bytes += data.len();
                        pending.push_back(data);
                    }
                }
                Some(ChannelMsg::Eof) => {
                    server_eof = true;
                    quiet_since = Some(Instant::now());
                    if pending.is_empty() && !client_gone {
                        let _ = tcp_write.shutdown().await;
                    }
                }
                Some(ChannelMsg::Close) | None => {
                    if !client_gone {
                        flush_all(&mut tcp_write, &mut pending, limits.stall_limit).await;
                        let _ = tcp_write.shutdown().await;
                    }
                    return report;
                }
                Some(_) => {}
            },

            // Us -> client.
            written = write_front(&mut tcp_write, &mut pending), if !pending.is_empty() => match written {
                Ok(n) => {
                    pending_bytes -= n;
                    stalled_since = None;
                    if pending.is_empty() && server_eof {
                        let _ = tcp_write.shutdown().await;
                    }
                }
                Err(err) => {
                    debug!(error = %err, "writing to the client failed");
                    client_gone = true;
                    pending.clear();
                    pending_bytes = 0;
                }
            },

            // Client -> server, until the client's EOF (then our EOF is sent).
            sent = &mut upstream, if !up_done => {
                report.sent = sent;
                up_done = true;
                quiet_since = Some(Instant::now());
            }

            () = sleep_until_opt(stall_deadline), if stall_deadline.is_some() => {
                warn!(
                    buffered = pending_bytes,
                    stall_secs = limits.stall_limit.as_secs(),
                    "client stopped reading while the server kept sending; closing it so the tunnel's other connections keep flowing"
                );
                report.end = PipeEnd::ClientStalled;
                give_up(from_server.take(), &to_server).await;
                return report;
            }

            () = sleep_until_opt(close_deadline), if close_deadline.is_some() => {
                debug!("the server did not close the channel in time; closing it");
                report.end = PipeEnd::CloseTimedOut;
                give_up(from_server.take(), &to_server).await;
                return report;
            }
        }
    }
}

/// Reads the client until EOF (or an error), writing to the channel, then sends EOF. A channel
/// write waits for the server's window, which is why this runs beside the draining loop rather
/// than inside it.
async fn upstream(
    mut tcp_read: OwnedReadHalf,
    to_server: &ChannelWriteHalf<Msg>,
    writing: &watch::Sender<bool>,
) -> u64 {
    let mut writer = to_server.make_writer();
    let mut buf = vec![0u8; 32 * 1024];
    let mut sent = 0u64;
    loop {
        let n = match tcp_read.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => n,
            Err(err) => {
                debug!(error = %err, "reading from the client failed");
                break;
            }
        };
        let Some(chunk) = buf.get(..n) else { break };
        writing.send_replace(true);
        let written = writer.write_all(chunk).await;
        writing.send_replace(false);
        if written.is_err() {
            break;
        }
        sent += n as u64;
    }
    let _ = to_server.eof().await;
    sent
}

/// Closes the channel ourselves. This costs russh a small leak (pitfall 1), which is why it is
/// only the last resort.
///
/// The read half goes first: russh's session loop may be blocked pushing into its full queue,
/// and our EOF and close travel through that same loop. Dropping the receiver makes that push
/// fail, so the loop moves on and the messages below get through.
async fn give_up(from_server: Option<ChannelReadHalf>, to_server: &ChannelWriteHalf<Msg>) {
    drop(from_server);
    let bye = async {
        let _ = to_server.eof().await;
        let _ = to_server.close().await;
    };
    // Bounded all the same: a session that is gone must not hold this task.
    let _ = tokio::time::timeout(Duration::from_secs(5), bye).await;
}

/// The next message from the server; after `give_up` took the read half, never.
async fn wait(from_server: &mut Option<ChannelReadHalf>) -> Option<ChannelMsg> {
    match from_server {
        Some(read) => read.wait().await,
        None => std::future::pending().await,
    }
}

/// Writes (part of) the oldest pending chunk; returns how many bytes the client took.
async fn write_front(
    tcp_write: &mut OwnedWriteHalf,
    pending: &mut VecDeque<Bytes>,
) -> std::io::Result<usize> {
    let Some(front) = pending.front_mut() else {
        return Ok(0);
    };
    let n = tcp_write.write(front).await?;
    if n == 0 {
        return Err(std::io::ErrorKind::WriteZero.into());
    }
    front.advance(n);
    if front.is_empty() {
        pending.pop_front();
    }
    Ok(n)
}

async fn flush_all(tcp_write: &mut OwnedWriteHalf, pending: &mut VecDeque<Bytes>, limit: Duration) {
    let flush = async {
        while !pending.is_empty() {
            if write_front(tcp_write, pending).await.is_err() {
                return;
            }
        }
    };
    let _ = tokio::time::timeout(limit, flush).await;
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
