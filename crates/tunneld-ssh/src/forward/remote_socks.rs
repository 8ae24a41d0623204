//! Remote dynamic forwarding (like `ssh -R [bind:]port`, OpenSSH 7.6+): the server's port is a
//! SOCKS proxy whose connections leave from this side. Each forwarded-tcpip channel carries one
//! SOCKS conversation, served here over the channel as `dynamic` serves it over TCP; the target
//! is then connected from this machine, as a `remote` forward's fixed target is.
//!
//! Whoever can reach the server's port reaches this side's network: the bind defaults to the
//! server's loopback, as ssh's does.

use std::io;
use std::sync::Arc;

use russh::client::{ChannelOpenHandle, Msg};
use russh::{Channel, ChannelMsg, ChannelOpenFailure};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tracing::{debug, warn};

use super::context::ForwardContext;
use super::counters::{ForwardCounters, Tally};
use super::handshake::{HANDSHAKE_LIMIT, SocksIo, handshake, reply_bytes};
use super::pipe::pipe;
use crate::descriptors;
use crate::socks::proto::{Command, Reply};

/// Serves one channel: accepts it, reads the SOCKS request from it, connects the target and
/// pipes. A request that cannot be served gets its SOCKS error reply, and only this channel
/// ends.
pub(super) async fn forward_socks(
    mut channel: Channel<Msg>,
    reply: ChannelOpenHandle,
    counters: Arc<ForwardCounters>,
    ctx: ForwardContext,
) {
    let slot = match descriptors::try_take() {
        Ok(slot) => slot,
        Err(exhausted) => {
            descriptors::report_exhausted("a SOCKS target", exhausted, None);
            reply.reject(ChannelOpenFailure::ResourceShortage).await;
            return;
        }
    };
    // The SOCKS request travels inside the channel, so the channel is accepted first; a target
    // that is down is told in the SOCKS reply.
    reply.accept().await;
    let handshake = tokio::select! {
        () = ctx.cancel.cancelled() => return,
        done = tokio::time::timeout(HANDSHAKE_LIMIT, handshake(&mut channel, None)) => done,
    };
    let request = match handshake {
        Ok(Ok(request)) => request,
        Ok(Err(refusal)) => {
            debug!(reason = %refusal.why, "SOCKS handshake refused");
            return end(channel, refusal.reply, &ctx).await;
        }
        Err(_) => {
            debug!(
                limit_secs = HANDSHAKE_LIMIT.as_secs(),
                "SOCKS client did not finish its handshake in time"
            );
            return end(channel, None, &ctx).await;
        }
    };
    if request.command != Command::Connect {
        debug!(command = ?request.command, "unsupported SOCKS command");
        let refusal = reply_bytes(request.socks4, Reply::CommandNotSupported);
        return end(channel, Some(refusal), &ctx).await;
    }

    let host = request.target.to_string();
    let connect = TcpStream::connect((host.as_str(), request.port));
    let connected = tokio::select! {
        () = ctx.cancel.cancelled() => return,
        // The tunnel's connect_timeout bounds the connect to the target, as for `remote`.
        connected = tokio::time::timeout(ctx.wait_for_connection, connect) => connected,
    };
    let mut stream = match connected {
        Ok(Ok(stream)) => stream,
        Ok(Err(err)) => {
            warn!(target = %host, port = request.port, error = %err, "forwarded connection failed: cannot connect to the target");
            let refusal = reply_bytes(request.socks4, reply_for(&err));
            return end(channel, Some(refusal), &ctx).await;
        }
        Err(_) => {
            warn!(target = %host, port = request.port, "forwarded connection failed: the target did not answer in time");
            let refusal = reply_bytes(request.socks4, Reply::HostUnreachable);
            return end(channel, Some(refusal), &ctx).await;
        }
    };
    let _ = stream.set_nodelay(true);
    if channel
        .send(&reply_bytes(request.socks4, Reply::Succeeded))
        .await
        .is_err()
    {
        return;
    }
    if !request.early.is_empty() {
        if stream.write_all(&request.early).await.is_err() {
            return end(channel, None, &ctx).await;
        }
        counters.count_in(request.early.len());
    }
    debug!(target = %host, port = request.port, "forwarding");
    pipe(
        stream,
        channel,
        ctx.limits,
        &ctx.cancel,
        Tally::channel_client(&counters),
    )
    .await;
    drop(slot);
}

/// Sends `reply` if any, then ends the channel as the pipe does: our EOF, and the server's close
/// awaited (closing first leaks inside russh), for at most the close limit.
async fn end(mut channel: Channel<Msg>, reply: Option<Vec<u8>>, ctx: &ForwardContext) {
    if let Some(reply) = reply {
        let _ = channel.send(&reply).await;
    }
    let _ = channel.eof().await;
    let closed = async {
        loop {
            match channel.wait().await {
                Some(ChannelMsg::Close) | None => return,
                Some(_) => {}
            }
        }
    };
    let waited = tokio::select! {
        () = ctx.cancel.cancelled() => Err(()),
        done = tokio::time::timeout(ctx.limits.close_limit, closed) => done.map_err(|_| ()),
    };
    if waited.is_err() {
        let _ = channel.close().await;
    }
}

/// The SOCKS reply for a target this side could not connect. A name that does not resolve is
/// "host unreachable", as for `dynamic`.
fn reply_for(err: &io::Error) -> Reply {
    match err.kind() {
        io::ErrorKind::ConnectionRefused => Reply::ConnectionRefused,
        io::ErrorKind::NetworkUnreachable => Reply::NetworkUnreachable,
        _ => Reply::HostUnreachable,
    }
}
