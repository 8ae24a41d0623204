//! `remote` forwards (like `ssh -R`): the server listens (on a port or a Unix socket) and opens
//! a forwarded-tcpip or forwarded-streamlocal channel per connection; tunneld connects it to a
//! target on this side: a host and port, a Unix socket, or (remote dynamic forwarding) wherever
//! the connection asks in SOCKS (remote_socks.rs).
//!
//! The session's `Routes` (routes.rs) decide which forward a channel belongs to; this file
//! connects it to its target.

use std::sync::Arc;

use russh::ChannelOpenFailure;
use tokio::net::{TcpStream, UnixStream};
use tokio::sync::mpsc;
use tracing::{Instrument, debug, info_span, warn};
use tunneld_config::{RemoteTarget, Target};

use super::client::ClientStream;
use super::context::ForwardContext;
use super::counters::{ForwardCounters, RemoteCounters, Tally};
use super::pipe::pipe;
use super::remote_socks;
use crate::descriptors;
use crate::in_order;
use crate::routes::IncomingForward;

/// Connects each forwarded connection to its target and pipes it, until cancelled, counting
/// each in its forward's counters. The client of a remote forward is whoever connected to the
/// server's port: what it sends is counted as in, what the target answers as out.
pub async fn serve_remote(
    mut incoming: mpsc::UnboundedReceiver<IncomingForward>,
    counters: RemoteCounters,
    ctx: ForwardContext,
) {
    loop {
        let next = tokio::select! {
            () = ctx.cancel.cancelled() => return,
            next = incoming.recv() => next,
        };
        let Some(next) = next else { return };
        let span = info_span!("forward", forward = %next.forward.spec, client = %next.originator);
        let counters = counters.of(&next.forward);
        // Its first step (the connect to an address target) is taken here, so that the target
        // sees connections in the order the server's clients made them (`in_order`). A target
        // named by a host name is looked up first, in no particular order.
        let forwarded = Box::pin(forward_one(next, counters, ctx.clone()).instrument(span));
        if let Some(rest) = in_order::first_step(forwarded).await {
            ctx.tracker.spawn(rest);
        }
    }
}

/// The target is connected before the channel is accepted: a target that is down makes the
/// server's client see a closed connection at once, and the forward keeps serving the others.
async fn forward_one(
    incoming: IncomingForward,
    counters: Arc<ForwardCounters>,
    ctx: ForwardContext,
) {
    let IncomingForward {
        channel,
        reply,
        forward,
        ..
    } = incoming;
    let to = match &forward.target {
        RemoteTarget::Connect(to) => to,
        RemoteTarget::Socks => {
            return remote_socks::forward_socks(channel, reply, counters, ctx).await;
        }
    };
    let target = to.to_string();
    // A server's client cannot be made to wait as a listener's can: at the limit it is refused,
    // as ssh refuses a channel whose socket it cannot open.
    let slot = match descriptors::try_take() {
        Ok(slot) => slot,
        Err(exhausted) => {
            descriptors::report_exhausted(&target, exhausted, None);
            reply.reject(ChannelOpenFailure::ResourceShortage).await;
            return;
        }
    };
    let connect = async {
        match to {
            Target::Port { host, port } => TcpStream::connect((host.as_str(), *port))
                .await
                .map(Connected::Tcp),
            Target::Socket(path) => UnixStream::connect(path).await.map(Connected::Unix),
        }
    };
    let stream = tokio::select! {
        () = ctx.cancel.cancelled() => return,
        // The tunnel's connect_timeout bounds the connect to the target too.
        connected = tokio::time::timeout(ctx.wait_for_connection, connect) => connected,
    };
    let stream = match stream {
        Ok(Ok(stream)) => stream,
        Ok(Err(err)) => {
            warn!(target = %target, error = %err, "forwarded connection failed: cannot connect to the target");
            reply.reject(ChannelOpenFailure::ConnectFailed).await;
            return;
        }
        Err(_) => {
            warn!(target = %target, "forwarded connection failed: the target did not answer in time");
            reply.reject(ChannelOpenFailure::ConnectFailed).await;
            return;
        }
    };
    reply.accept().await;
    debug!(target = %target, "forwarding");
    let tally = Tally::channel_client(&counters);
    match stream {
        Connected::Tcp(stream) => {
            stream.no_delay();
            pipe(stream, channel, ctx.limits, &ctx.cancel, tally).await
        }
        Connected::Unix(stream) => pipe(stream, channel, ctx.limits, &ctx.cancel, tally).await,
    };
    drop(slot);
}

/// A target connected on this side.
enum Connected {
    Tcp(TcpStream),
    Unix(UnixStream),
}
