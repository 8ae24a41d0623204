//! `local` forwards (like `ssh -L`): accept here (a TCP port or a Unix socket), open a
//! direct-tcpip channel to the target, or a direct-streamlocal one to a socket on the server.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::time::Instant;
use tracing::{Instrument, debug, info_span, warn};
use tunneld_config::LocalForward;

use super::client::ClientStream;
use super::context::{Accept, ForwardContext, accept_loop, waited};
use super::counters::{ForwardCounters, Tally};
use super::pipe::{PipeEnd, pipe};

/// Accepts clients on `listener` until cancelled, forwarding each through the tunnel and
/// counting them in `counters`.
pub async fn serve_local<L: Accept>(
    listener: L,
    forward: Arc<LocalForward>,
    counters: Arc<ForwardCounters>,
    ctx: ForwardContext,
) {
    let spec = forward.spec.clone();
    accept_loop(listener, &spec, ctx, |stream, client, ctx| {
        let span = info_span!("forward", forward = %forward.spec, client = %client);
        forward_one(stream, client, forward.clone(), counters.clone(), ctx).instrument(span)
    })
    .await;
}

async fn forward_one<S: ClientStream>(
    stream: S,
    client: SocketAddr,
    forward: Arc<LocalForward>,
    counters: Arc<ForwardCounters>,
    ctx: ForwardContext,
) {
    stream.no_delay();
    let arrived = Instant::now();
    let Some(connection) = ctx.connection().await else {
        // What the client really waited: shutdown, or a tunnel task that ended, cuts the wait
        // short of `wait_for_connection`.
        warn!(
            waited_secs = %waited(arrived),
            "tunnel is not up; closing the client"
        );
        return;
    };
    let channel = match connection
        .open_channel(forward.target.clone(), client)
        .await
    {
        Ok(channel) => channel,
        Err(err) => {
            warn!(error = %err, "forwarded connection failed");
            return;
        }
    };
    debug!("forwarding");
    let report = pipe(
        stream,
        channel,
        ctx.limits,
        &ctx.cancel,
        Tally::tcp_client(&counters),
    )
    .await;
    if report.end == PipeEnd::CloseTimedOut {
        debug!("the server kept the channel open after the exchange ended");
    }
}
