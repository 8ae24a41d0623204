//! `dynamic` forwards (like `ssh -D`): a SOCKS5 / SOCKS4 / SOCKS4a proxy whose connections go
//! out from the server. The protocol itself is in `socks::proto` (pure, fuzzed); this file does
//! the I/O around it.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use russh::ChannelOpenFailure;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tracing::{Instrument, debug, info_span, warn};
use tunneld_config::DynamicForward;

use super::context::{ForwardContext, accept_loop, waited};
use super::counters::{ForwardCounters, Tally};
use super::pipe::pipe;
use crate::error::ChannelOpenError;
use crate::socks::proto::{
    self, Command, ErrorReply, Greeting, Method, NO_BOUND_ADDRESS, Parsed, ProtocolError, Reply,
    Target,
};
use crate::socks::users::Credentials;

/// How long a client may take to finish the SOCKS handshake: a slow-loris client that never
/// does is closed after this, holding nothing else up.
const HANDSHAKE_LIMIT: Duration = Duration::from_secs(10);

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

/// What the handshake asked for.
struct Request {
    socks4: bool,
    command: Command,
    target: Target,
    port: u16,
    /// Bytes the client sent after its request, before our reply: data for the target.
    early: Vec<u8>,
}

/// A handshake that ends the connection, with what to send before closing.
struct Refusal {
    reply: Option<Vec<u8>>,
    why: String,
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
    let report = pipe(
        stream,
        channel,
        ctx.limits,
        &ctx.cancel,
        Tally::tcp_client(&counters),
    )
    .await;
    debug!(sent = report.sent, received = report.received, end = ?report.end, "forwarded connection ended");
}

/// Reads and answers the SOCKS handshake up to (not including) the reply to the request.
async fn handshake(stream: &mut TcpStream, auth_file: Option<&Path>) -> Result<Request, Refusal> {
    let mut buf: Vec<u8> = Vec::with_capacity(64);
    let greeting = read_message(stream, &mut buf, proto::parse_greeting).await?;
    let methods = match greeting {
        Greeting::Socks4(_) if auth_file.is_some() => {
            // SOCKS4's user id is whatever the client says: no authentication at all.
            return Err(Refusal {
                reply: Some(proto::encode_socks4_reply(false).to_vec()),
                why: "SOCKS4 cannot authenticate, and this proxy requires a password".to_string(),
            });
        }
        Greeting::Socks4(request) => {
            return Ok(Request {
                socks4: true,
                command: request.command,
                target: request.target,
                port: request.port,
                early: buf,
            });
        }
        Greeting::Socks5 { methods } => methods,
    };

    let method = proto::choose_method(&methods, auth_file.is_some());
    write(stream, &proto::encode_method_choice(method)).await?;
    match method {
        Method::NoneAcceptable => {
            return Err(Refusal {
                reply: None,
                why: "the client offers no acceptable authentication method".to_string(),
            });
        }
        Method::UserPass => {
            let offered = read_message(stream, &mut buf, proto::parse_userpass).await?;
            let granted = match auth_file {
                Some(path) => check_password(path, &offered.user, offered.password.expose()).await,
                None => false,
            };
            write(stream, &proto::encode_userpass_status(granted)).await?;
            if !granted {
                warn!(user = %offered.user, "SOCKS authentication failed");
                return Err(Refusal {
                    reply: None,
                    why: format!("wrong username or password for {:?}", offered.user),
                });
            }
        }
        Method::NoAuth => {}
    }

    let request = read_message(stream, &mut buf, proto::parse_socks5_request).await?;
    Ok(Request {
        socks4: false,
        command: request.command,
        target: request.target,
        port: request.port,
        early: buf,
    })
}

/// The users file is read for every login, so a changed password applies at once.
async fn check_password(path: &Path, user: &str, password: &[u8]) -> bool {
    let path = path.to_path_buf();
    let user = user.to_string();
    let password = password.to_vec();
    let checked = tokio::task::spawn_blocking(move || match Credentials::load(&path) {
        Ok(credentials) => credentials.verify(&user, &password),
        Err(err) => {
            warn!(error = %err, "cannot read the SOCKS users file; refusing the login");
            false
        }
    });
    checked.await.unwrap_or(false)
}

/// Reads until `parse` has a whole message at the front of `buf`, which keeps what follows it.
async fn read_message<T>(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    parse: fn(&[u8]) -> Result<Parsed<T>, ProtocolError>,
) -> Result<T, Refusal> {
    loop {
        match parse(buf) {
            Ok(Parsed::Done { value, consumed }) => {
                buf.drain(..consumed.min(buf.len()));
                return Ok(value);
            }
            Ok(Parsed::Incomplete) => {}
            Err(err) => {
                return Err(Refusal {
                    reply: err.reply().map(ErrorReply::encode),
                    why: err.to_string(),
                });
            }
        }
        // No valid message is longer than MAX_REQUEST: more would be a client making us buffer.
        let room = proto::MAX_REQUEST.saturating_sub(buf.len()).max(1);
        let mut chunk = vec![0u8; room];
        let n = stream.read(&mut chunk).await.map_err(|err| Refusal {
            reply: None,
            why: format!("reading the handshake: {err}"),
        })?;
        if n == 0 {
            return Err(Refusal {
                reply: None,
                why: "the client closed the connection during the handshake".to_string(),
            });
        }
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
    }
}

async fn write(stream: &mut TcpStream, bytes: &[u8]) -> Result<(), Refusal> {
    stream.write_all(bytes).await.map_err(|err| Refusal {
        reply: None,
        why: format!("writing the handshake: {err}"),
    })
}

fn reply_bytes(socks4: bool, reply: Reply) -> Vec<u8> {
    if socks4 {
        proto::encode_socks4_reply(reply == Reply::Succeeded).to_vec()
    } else {
        proto::encode_socks5_reply(reply, NO_BOUND_ADDRESS)
    }
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
