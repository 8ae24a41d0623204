//! The SOCKS handshake as a proxy serves it, over whatever carries the client's bytes: a TCP
//! connection (`dynamic`) or a channel the server opened (remote dynamic forwarding). The
//! protocol itself is in `socks::proto` (pure, fuzzed); this file does the I/O around it.

use std::io;
use std::path::Path;
use std::time::Duration;

use russh::ChannelMsg;
use russh::client::Msg;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::warn;

use crate::socks::proto::{
    self, Command, ErrorReply, Greeting, Method, NO_BOUND_ADDRESS, Parsed, ProtocolError, Reply,
    Target,
};
use crate::socks::users::Credentials;

/// How long a client may take to finish the SOCKS handshake: a slow-loris client that never
/// does is closed after this, holding nothing else up.
pub(super) const HANDSHAKE_LIMIT: Duration = Duration::from_secs(10);

/// What carries the handshake.
pub(super) trait SocksIo {
    /// Appends the next bytes from the client to `buf`, at most `room` where the transport lets
    /// us choose; 0 at the client's end.
    async fn read_into(&mut self, buf: &mut Vec<u8>, room: usize) -> io::Result<usize>;
    /// Sends `bytes` to the client.
    async fn send(&mut self, bytes: &[u8]) -> io::Result<()>;
}

impl SocksIo for TcpStream {
    async fn read_into(&mut self, buf: &mut Vec<u8>, room: usize) -> io::Result<usize> {
        let mut chunk = vec![0u8; room];
        let n = self.read(&mut chunk).await?;
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
        Ok(n)
    }

    async fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.write_all(bytes).await
    }
}

/// A channel the server opened. A data message is taken whole: the server's packet size bounds
/// it, as `room` bounds a TCP read.
impl SocksIo for russh::Channel<Msg> {
    async fn read_into(&mut self, buf: &mut Vec<u8>, _room: usize) -> io::Result<usize> {
        loop {
            match self.wait().await {
                Some(ChannelMsg::Data { data }) if !data.is_empty() => {
                    buf.extend_from_slice(&data);
                    return Ok(data.len());
                }
                Some(ChannelMsg::Eof | ChannelMsg::Close) | None => return Ok(0),
                Some(_) => {}
            }
        }
    }

    async fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.data(bytes).await.map_err(io::Error::other)
    }
}

/// What the handshake asked for.
pub(super) struct Request {
    pub(super) socks4: bool,
    pub(super) command: Command,
    pub(super) target: Target,
    pub(super) port: u16,
    /// Bytes the client sent after its request, before our reply: data for the target.
    pub(super) early: Vec<u8>,
}

/// A handshake that ends the connection, with what to send before closing.
pub(super) struct Refusal {
    pub(super) reply: Option<Vec<u8>>,
    pub(super) why: String,
}

/// Reads and answers the SOCKS handshake up to (not including) the reply to the request.
pub(super) async fn handshake<S: SocksIo>(
    stream: &mut S,
    auth_file: Option<&Path>,
) -> Result<Request, Refusal> {
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
async fn read_message<S: SocksIo, T>(
    stream: &mut S,
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
        let n = stream.read_into(buf, room).await.map_err(|err| Refusal {
            reply: None,
            why: format!("reading the handshake: {err}"),
        })?;
        if n == 0 {
            return Err(Refusal {
                reply: None,
                why: "the client closed the connection during the handshake".to_string(),
            });
        }
    }
}

async fn write<S: SocksIo>(stream: &mut S, bytes: &[u8]) -> Result<(), Refusal> {
    stream.send(bytes).await.map_err(|err| Refusal {
        reply: None,
        why: format!("writing the handshake: {err}"),
    })
}

/// The reply to a request in the client's own SOCKS version.
pub(super) fn reply_bytes(socks4: bool, reply: Reply) -> Vec<u8> {
    if socks4 {
        proto::encode_socks4_reply(reply == Reply::Succeeded).to_vec()
    } else {
        proto::encode_socks5_reply(reply, NO_BOUND_ADDRESS)
    }
}
