//! Copying between a client's socket (TCP or Unix) and an SSH channel, closing the way russh needs.
//!
//! Three russh behaviours shape this file (the pitfalls of docs/design.md):
//! - Pitfall 2: russh as released grants the server more window as data arrives, not as it is
//!   consumed, and pushes it into each channel's queue with a blocking send: a client that stops
//!   reading stalls the whole SSH session. tunneld's russh (vendor/russh/PATCHES.md) grants
//!   window as the application takes data, so this pipe simply stops taking data from the
//!   channel while its own buffer toward the client is full: the server's window for this
//!   channel closes, the server stops sending on it, and every other channel flows on. A slow
//!   or stopped client is flow-controlled, as OpenSSH does, never dropped. Memory per
//!   connection is bounded by the window plus `PipeLimits::buffer`.
//! - Pitfall 1: a channel closed by us first leaks its entry inside russh. We only ever send EOF
//!   and then read until the server's close.
//! - Pitfall 11: that wait is bounded: a target that never closes its half must not keep a
//!   channel forever.
//!
//! A connection that ends because the tunnel died (the session is gone, or tunneld stops) is
//! reset (RST), not closed: a client that sees FIN takes a cut transfer for a complete one.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::time::Duration;

use bytes::{Buf, Bytes};
use russh::client::Msg;
use russh::{ChannelMsg, ChannelReadHalf, ChannelWriteHalf};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::client::ClientStream;
use super::counters::Tally;
use super::read_buffer::ReadBuffer;

/// Bounds for one forwarded connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PipeLimits {
    /// Bytes from the server held for a client that is slower than the server. Beyond it the
    /// channel is not read, and its window does the rest.
    pub buffer: usize,
    /// Once either side has finished, how long the server may stay silent before the channel is
    /// given up; also how long the last bytes may take to reach a client once the server closed.
    pub close_limit: Duration,
}

impl Default for PipeLimits {
    fn default() -> Self {
        PipeLimits {
            buffer: 256 << 10,
            close_limit: Duration::from_secs(30),
        }
    }
}

/// How a forwarded connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PipeEnd {
    /// The server closed the channel after the exchange (the graceful end).
    Closed,
    /// The SSH session went away under the connection; the client was reset.
    Lost,
    /// The client went away (a write to it failed) while the server was still sending: the
    /// channel is closed, since nothing more can be delivered and the server would otherwise
    /// stream into it for as long as its source does.
    ClientGone,
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

/// Copies in both directions until the server closes the channel (or a limit runs out),
/// counting the connection and its bytes as they go, and logs how it ended.
pub async fn pipe<S: ClientStream>(
    tcp: S,
    channel: russh::Channel<Msg>,
    limits: PipeLimits,
    cancel: &CancellationToken,
    tally: Tally<'_>,
) -> PipeReport {
    let report = copy(tcp, channel, limits, cancel, tally).await;
    debug!(sent = report.sent, received = report.received, end = ?report.end, "forwarded connection ended");
    report
}

async fn copy<S: ClientStream>(
    tcp: S,
    channel: russh::Channel<Msg>,
    limits: PipeLimits,
    cancel: &CancellationToken,
    tally: Tally<'_>,
) -> PipeReport {
    let _active = tally.opened();
    let (tcp_read, mut tcp_write) = tcp.into_halves();
    let (from_server, to_server) = channel.split();
    let mut from_server = Some(from_server);
    let upstream = upstream(tcp_read, &to_server, tally);
    tokio::pin!(upstream);

    let mut report = PipeReport {
        end: PipeEnd::Closed,
        sent: 0,
        received: 0,
    };
    let mut up_done = false;
    let mut server_eof = false;
    let mut pending: VecDeque<Bytes> = VecDeque::new();
    let mut pending_bytes = 0usize;
    // The last sign of life once one side has finished; the close limit counts from it.
    let mut quiet_since: Option<Instant> = None;

    loop {
        let close_deadline = quiet_since.map(|t| t + limits.close_limit);
        tokio::select! {
            biased;
            () = cancel.cancelled() => {
                report.end = PipeEnd::Cancelled;
                S::reset(tcp_write);
                return report;
            }

            // Server -> us, while our buffer toward the client has room: beyond it, not taking
            // data is what stops the server (its window for this channel runs out).
            msg = wait(&mut from_server), if pending_bytes < limits.buffer => match msg {
                Some(ChannelMsg::Data { data }) => {
                    report.received += data.len() as u64;
                    if quiet_since.is_some() {
                        quiet_since = Some(Instant::now());
                    }
                    if !data.is_empty() {
                        pending_bytes += data.len();
                        pending.push_back(data);
                    }
                }
                Some(ChannelMsg::Eof) => {
                    server_eof = true;
                    quiet_since = Some(Instant::now());
                    if pending.is_empty() {
                        let _ = tcp_write.shutdown().await;
                    }
                }
                Some(ChannelMsg::Close) => {
                    flush_all(&mut tcp_write, &mut pending, limits.close_limit, tally).await;
                    let _ = tcp_write.shutdown().await;
                    return report;
                }
                None => {
                    // The session is gone: whatever the server had not sent yet is lost.
                    debug!("the SSH connection ended under this forwarded connection; resetting the client");
                    report.end = PipeEnd::Lost;
                    S::reset(tcp_write);
                    return report;
                }
                Some(_) => {}
            },

            // Us -> client.
            written = write_front(&mut tcp_write, &mut pending, tally), if !pending.is_empty() => match written {
                Ok(n) => {
                    pending_bytes -= n;
                    if pending.is_empty() && server_eof {
                        let _ = tcp_write.shutdown().await;
                    }
                }
                Err(err) => {
                    debug!(error = %err, "writing to the client failed; closing the channel");
                    report.end = PipeEnd::ClientGone;
                    give_up(from_server.take(), &to_server).await;
                    return report;
                }
            },

            // Client -> server, until the client's EOF (then our EOF is sent).
            sent = &mut upstream, if !up_done => {
                report.sent = sent;
                up_done = true;
                quiet_since = Some(Instant::now());
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
///
/// What is read goes to russh as it is (`data_bytes`), not copied into a buffer of its own per
/// packet: see `ReadBuffer`.
async fn upstream(
    mut tcp_read: impl AsyncRead + Unpin,
    to_server: &ChannelWriteHalf<Msg>,
    tally: Tally<'_>,
) -> u64 {
    let mut buffer = ReadBuffer::default();
    let mut sent = 0u64;
    loop {
        let chunk = match buffer.read(&mut tcp_read).await {
            Ok(chunk) if chunk.is_empty() => break,
            Ok(chunk) => chunk,
            Err(err) => {
                debug!(error = %err, "reading from the client failed");
                break;
            }
        };
        let n = chunk.len();
        tally.read_from_tcp(n);
        if to_server.data_bytes(chunk).await.is_err() {
            break;
        }
        sent += n as u64;
    }
    let _ = to_server.eof().await;
    sent
}

/// Closes the channel ourselves. This costs russh a small leak (pitfall 1), which is why it is
/// only the last resort. The read half goes first: nothing will read it any more.
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

/// The most pending chunks handed to one write: 16 channel packets of 32 KiB.
const WRITE_BATCH: usize = 16;

/// Writes as much of the pending chunks as the client takes in one call (one `writev`, not one
/// `write` per packet); returns how many bytes it took.
async fn write_front(
    tcp_write: &mut (impl AsyncWrite + Unpin),
    pending: &mut VecDeque<Bytes>,
    tally: Tally<'_>,
) -> std::io::Result<usize> {
    let n = {
        let mut slices = [IoSlice::new(&[]); WRITE_BATCH];
        let mut count = 0;
        for (slot, chunk) in slices.iter_mut().zip(pending.iter()) {
            *slot = IoSlice::new(chunk);
            count += 1;
        }
        let Some(slices) = slices.get(..count).filter(|s| !s.is_empty()) else {
            return Ok(0);
        };
        tcp_write.write_vectored(slices).await?
    };
    if n == 0 {
        return Err(std::io::ErrorKind::WriteZero.into());
    }
    tally.written_to_tcp(n);
    let mut left = n;
    while let Some(front) = pending.front_mut() {
        if left < front.len() {
            front.advance(left);
            break;
        }
        left -= front.len();
        pending.pop_front();
    }
    Ok(n)
}

async fn flush_all(
    tcp_write: &mut (impl AsyncWrite + Unpin),
    pending: &mut VecDeque<Bytes>,
    limit: Duration,
    tally: Tally<'_>,
) {
    let flush = async {
        while !pending.is_empty() {
            if write_front(tcp_write, pending, tally).await.is_err() {
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
