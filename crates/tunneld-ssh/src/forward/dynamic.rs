//! `dynamic` forwards (like `ssh -D`): a SOCKS5 / SOCKS4 / SOCKS4a proxy whose connections go
//! out from the server. The handshake is in `handshake.rs`, shared with remote dynamic forwards;
//! this file listens and opens the channels.

use std::net::SocketAddr;
use std::sync::Arc;

use russh::ChannelOpenFailure;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tracing::{Instrument, debug, info_span, warn};
use tunneld_config::DynamicForward;

use super::context::{ForwardContext, accept_loop, waited};
use super::counters::{ForwardCounters, Tally};
use super::handshake::{HANDSHAKE_LIMIT, handshake, reply_bytes};
use super::pipe::pipe;
use crate::error::ChannelOpenError;
use crate::socks::proto::{Command, Reply};

/// Accepts SOCKS clients on `listener` until cancelled, counting what they forward in
/// `counters` (the SOCKS handshake itself is not counted).
pub async fn serve_dynamic(
    listener: TcpListener,
    forward: Arc<DynamicForward>,
    counters: Arc<ForwardCounters>,
    ctx: ForwardContext,
) {
    let spec = forward.spec.clone();
    accept_loop(listener, &spec, ctx, |stream, client, ctx| {
        let span = info_span!("socks", forward = %forward.spec, client = %client);
        serve_client(stream, client, forward.clone(), counters.clone(), ctx).instrument(span)
    })
    .await;
}

async fn serve_client(
    mut stream: TcpStream,
    client: SocketAddr,
    forward: Arc<DynamicForward>,
    counters: Arc<ForwardCounters>,
    ctx: ForwardContext,
) {
    let _ = stream.set_nodelay(true);
    let handshake = tokio::select! {
        () = ctx.cancel.cancelled() => return,
        done = tokio::time::timeout(HANDSHAKE_LIMIT, handshake(&mut stream, forward.auth_file.as_deref())) => done,
    };
    let request = match handshake {
        Ok(Ok(request)) => request,
        Ok(Err(refusal)) => {
            debug!(reason = %refusal.why, "SOCKS handshake refused");
            if let Some(reply) = refusal.reply {
                let _ = stream.write_all(&reply).await;
            }
            return;
        }
        Err(_) => {
            debug!(
                limit_secs = HANDSHAKE_LIMIT.as_secs(),
                "SOCKS client did not finish its handshake in time"
            );
            return;
        }
    };
    if request.command != Command::Connect {
        debug!(command = ?request.command, "unsupported SOCKS command");
        let _ = stream
            .write_all(&reply_bytes(request.socks4, Reply::CommandNotSupported))
            .await;
        return;
    }

    let asked = Instant::now();
    let Some(connection) = ctx.connection().await else {
        warn!(waited_secs = %waited(asked), "tunnel is not up; refusing the SOCKS client");
        let _ = stream
            .write_all(&reply_bytes(request.socks4, Reply::GeneralFailure))
            .await;
        return;
    };
    let host = request.target.to_string();
    // The reply waits for the server's answer: a client never sees success for a connection
    // that then fails.
    let channel = match connection
        .open_direct_tcpip(&host, request.port, client)
        .await
    {
        Ok(channel) => channel,
        Err(err) => {
            warn!(error = %err, "forwarded connection failed");
            let _ = stream
                .write_all(&reply_bytes(request.socks4, reply_for(&err)))
                .await;
            return;
        }
    };
    if stream
        .write_all(&reply_bytes(request.socks4, Reply::Succeeded))
        .await
        .is_err()
    {
        return;
    }
    if !request.early.is_empty() {
        if channel.data(&request.early[..]).await.is_err() {
            return;
        }
        counters.count_in(request.early.len());
    }
    debug!(target = %host, port = request.port, "forwarding");
    pipe(
        stream,
        channel,
        ctx.limits,
        &ctx.cancel,
        Tally::tcp_client(&counters),
    )
    .await;
}

/// The SOCKS reply for a channel the server did not open: what really happened.
fn reply_for(err: &ChannelOpenError) -> Reply {
    match err {
        ChannelOpenError::Refused {
            reason,
            description,
            ..
        } => Reply::for_open_failure(open_failure_code(reason), description.as_deref()),
        ChannelOpenError::Timeout { .. } => Reply::HostUnreachable,
        ChannelOpenError::Closed { .. } => Reply::GeneralFailure,
    }
}

/// RFC 4254's reason codes.
fn open_failure_code(reason: &ChannelOpenFailure) -> u32 {
    match reason {
        ChannelOpenFailure::AdministrativelyProhibited => 1,
        ChannelOpenFailure::ConnectFailed => 2,
        ChannelOpenFailure::UnknownChannelType => 3,
        ChannelOpenFailure::ResourceShortage => 4,
        ChannelOpenFailure::Other { code, .. } => *code,
    }
}
