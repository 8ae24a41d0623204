//! Reaching the first hop through a proxy (`proxy`): an HTTP proxy's `CONNECT`, or a SOCKS5
//! proxy's CONNECT without authentication, with the host name (the proxy resolves it). What
//! follows the proxy's answer is the SSH server's, so the answer is read to its very end and
//! not a byte further.

use std::net::IpAddr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tunneld_config::{Proxy, ProxyKind};

use crate::error::{Peer, Stage, TunnelError};
use crate::socks::MAX_NAME;
use crate::socks::proto::Method;
use crate::tcp;

/// The most an HTTP proxy's answer to CONNECT (status line and headers) may take.
const MAX_HTTP_ANSWER: usize = 8 * 1024;

/// Connects to `host:port` (the first hop, `peer`) through `proxy`, within `deadline`.
pub(crate) async fn connect(
    proxy: &Proxy,
    host: &str,
    port: u16,
    peer: &Peer,
    deadline: Instant,
    budget: Duration,
) -> Result<TcpStream, TunnelError> {
    let failed = |reason: String| TunnelError::Proxy {
        peer: peer.clone(),
        proxy: proxy.to_string(),
        reason,
    };
    let mut stream = match tcp::connect_tcp(&proxy.host, proxy.port, peer, deadline, budget).await {
        Ok(stream) => stream,
        Err(TunnelError::Connect { attempts, .. }) => {
            let why: Vec<String> = attempts
                .iter()
                .map(|(addr, err)| format!("{addr}: {err}"))
                .collect();
            return Err(failed(format!("cannot be reached: {}", why.join("; "))));
        }
        Err(err @ TunnelError::Resolve { .. }) => {
            return Err(failed(format!("cannot be reached: {err}")));
        }
        Err(err) => return Err(err),
    };
    let target = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let asked = async {
        match proxy.kind {
            ProxyKind::Http => http_connect(&mut stream, &target).await,
            ProxyKind::Socks5 => socks5_connect(&mut stream, host, port, &target).await,
        }
    };
    match tokio::time::timeout_at(deadline, asked).await {
        Ok(Ok(())) => Ok(stream),
        Ok(Err(reason)) => Err(failed(reason)),
        Err(_) => Err(TunnelError::Timeout {
            peer: peer.clone(),
            stage: Stage::Connect,
            after: budget,
        }),
    }
}

/// `CONNECT target HTTP/1.1`; a 2xx answer opens the tunnel. Returns why not otherwise.
async fn http_connect<S>(stream: &mut S, target: &str) -> Result<(), String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|err| format!("failed while asked to CONNECT {target}: {err}"))?;
    // One byte at a time: whatever follows the blank line belongs to the SSH server.
    let mut answer = Vec::with_capacity(256);
    while !answer.ends_with(b"\r\n\r\n") && !answer.ends_with(b"\n\n") {
        if answer.len() >= MAX_HTTP_ANSWER {
            return Err(format!(
                "answered CONNECT {target} with more than {MAX_HTTP_ANSWER} bytes of headers"
            ));
        }
        match stream.read_u8().await {
            Ok(byte) => answer.push(byte),
            Err(err) if err.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err(format!(
                    "closed the connection before answering CONNECT {target}"
                ));
            }
            Err(err) => return Err(format!("failed while asked to CONNECT {target}: {err}")),
        }
    }
    let text = String::from_utf8_lossy(&answer);
    let status = text.lines().next().unwrap_or_default().trim_end();
    let mut fields = status.split_whitespace();
    let (version, code) = (fields.next().unwrap_or_default(), fields.next());
    if !version.starts_with("HTTP/") {
        return Err(format!(
            "answered CONNECT {target} with something other than HTTP: {status:?}"
        ));
    }
    match code.and_then(|c| c.parse::<u16>().ok()) {
        Some(200..=299) => Ok(()),
        _ => Err(format!("refused CONNECT {target}: {status}")),
    }
}

/// SOCKS5 (RFC 1928), no authentication, CONNECT with the host name (or the address, for an
/// address literal). Returns why not otherwise.
async fn socks5_connect<S>(
    stream: &mut S,
    host: &str,
    port: u16,
    target: &str,
) -> Result<(), String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let io = |err: std::io::Error| format!("failed during the SOCKS5 exchange for {target}: {err}");
    stream
        .write_all(&[5, 1, Method::NoAuth.code()])
        .await
        .map_err(io)?;
    let mut choice = [0u8; 2];
    stream.read_exact(&mut choice).await.map_err(io)?;
    if choice[0] != 5 {
        return Err(format!(
            "is not a SOCKS5 proxy (it answered version {})",
            choice[0]
        ));
    }
    if choice[1] != Method::NoAuth.code() {
        return Err("requires authentication (tunneld asks SOCKS5 proxies without any)".to_owned());
    }
    let mut request = vec![5, 1, 0];
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => {
            request.push(1);
            request.extend_from_slice(&ip.octets());
        }
        Ok(IpAddr::V6(ip)) => {
            request.push(4);
            request.extend_from_slice(&ip.octets());
        }
        Err(_) => {
            let name = host.as_bytes();
            let len = u8::try_from(name.len())
                .ok()
                .filter(|len| usize::from(*len) <= MAX_NAME)
                .ok_or_else(|| format!("cannot be asked for {host:?}: the name is too long"))?;
            request.push(3);
            request.push(len);
            request.extend_from_slice(name);
        }
    }
    request.extend_from_slice(&port.to_be_bytes());
    stream.write_all(&request).await.map_err(io)?;
    let mut head = [0u8; 4];
    stream.read_exact(&mut head).await.map_err(io)?;
    if head[1] != 0 {
        return Err(format!(
            "refused CONNECT {target}: {} (SOCKS5 reply {})",
            reply_words(head[1]),
            head[1]
        ));
    }
    // The bound address, read so that nothing of it is left for the SSH handshake.
    let rest = match head[3] {
        1 => 4 + 2,
        4 => 16 + 2,
        3 => usize::from(stream.read_u8().await.map_err(io)?) + 2,
        other => return Err(format!("answered with an address of unknown type {other}")),
    };
    let mut bound = vec![0u8; rest];
    stream.read_exact(&mut bound).await.map_err(io)?;
    Ok(())
}

/// RFC 1928's words for a reply code.
fn reply_words(code: u8) -> &'static str {
    match code {
        1 => "general failure",
        2 => "connection not allowed by ruleset",
        3 => "network unreachable",
        4 => "host unreachable",
        5 => "connection refused",
        6 => "TTL expired",
        7 => "command not supported",
        8 => "address type not supported",
        _ => "unknown reply",
    }
}

#[cfg(test)]
mod tests;
