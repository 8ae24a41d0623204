//! `remote` forwards (like `ssh -R`): the server listens and opens a forwarded-tcpip channel per
//! connection; tunneld connects it to a target on this side.
//!
//! The session's `Routes` (routes.rs) decide which forward a channel belongs to; this file
//! connects it to its target.

use russh::ChannelOpenFailure;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tracing::{Instrument, debug, info_span, warn};

use super::context::ForwardContext;
use super::pipe::pipe;
use crate::descriptors;
use crate::routes::IncomingForward;

/// Connects each forwarded connection to its target and pipes it, until cancelled.
pub async fn serve_remote(
    mut incoming: mpsc::UnboundedReceiver<IncomingForward>,
    ctx: ForwardContext,
) {
    loop {
        let next = tokio::select! {
            () = ctx.cancel.cancelled() => return,
            next = incoming.recv() => next,
        };
        let Some(next) = next else { return };
        let span = info_span!("forward", forward = %next.forward.spec, client = %next.originator);
        ctx.tracker
            .spawn(forward_one(next, ctx.clone()).instrument(span));
    }
}

/// The target is connected before the channel is accepted: a target that is down makes the
/// server's client see a closed connection at once, and the forward keeps serving the others.
async fn forward_one(incoming: IncomingForward, ctx: ForwardContext) {
    let IncomingForward {
        channel,
        reply,
        forward,
        ..
    } = incoming;
    let target = format!("{}:{}", forward.host, forward.host_port);
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
    let connect = TcpStream::connect((forward.host.as_str(), forward.host_port));
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
    let _ = stream.set_nodelay(true);
    reply.accept().await;
    debug!(target = %target, "forwarding");
    let report = pipe(stream, channel, ctx.limits, &ctx.cancel).await;
    drop(slot);
    debug!(sent = report.sent, received = report.received, end = ?report.end, "forwarded connection ended");
}
