//! The SOCKS wire protocol, without I/O: SOCKS5 (RFC 1928) with username/password
//! authentication (RFC 1929), SOCKS4 and SOCKS4a, all on one port as OpenSSH's `-D` serves them.
//!
//! Every parser takes all the bytes received so far on a connection (after those an earlier
//! parser consumed) and answers [`Parsed::Incomplete`] (read more and call again with the longer
//! buffer), [`Parsed::Done`] with the message and how many bytes it took (whatever follows
//! belongs to the next message, or is data the client sent before the reply), or a
//! [`ProtocolError`], which also says what to send before closing. A result depends only on the
//! bytes it looked at: once `Done` or an error, any longer buffer gives the same answer; no valid
//! message is longer than [`MAX_REQUEST`], and no parser says `Incomplete` on that many bytes, so
//! a buffer of that size is always enough.
//!
//! A connection goes:
//!
//! 1. [`parse_greeting`]: the first byte says which protocol. SOCKS4 has no greeting, so its
//!    whole request is the "greeting": answer it with [`encode_socks4_reply`] and stop here.
//! 2. SOCKS5: [`choose_method`], send [`encode_method_choice`]; close if none is acceptable.
//! 3. If username/password was chosen: [`parse_userpass`], check it, send
//!    [`encode_userpass_status`]; close on failure.
//! 4. [`parse_socks5_request`], open the channel, then send [`encode_socks5_reply`] with the
//!    outcome ([`Reply::for_open_failure`] maps the server's reason).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};

pub use super::MAX_NAME;
pub use super::users::Secret;

mod encode;
mod error;
mod parse;

pub use encode::{
    choose_method, encode_method_choice, encode_socks4_reply, encode_socks5_reply,
    encode_userpass_status,
};
pub use error::{DomainError, ErrorReply, Protocol, ProtocolError, Socks4Field};
pub use parse::{parse_greeting, parse_socks5_request, parse_userpass};

/// The size of the longest valid message of any kind: a SOCKS4a request with a 255-byte user id
/// and a 255-byte domain (8 + 256 + 256 bytes). A buffer this big always suffices: every parser
/// answers `Done` or an error by then.
pub const MAX_REQUEST: usize = 8 + (MAX_NAME + 1) * 2;

/// The address sent in replies: through an SSH channel there is no bound address to report,
/// and OpenSSH sends this too. Clients ignore it for CONNECT.
pub const NO_BOUND_ADDRESS: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0));

/// The answer of a parser that did not fail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parsed<T> {
    /// The bytes so far are a valid beginning: read more and call again with all of them.
    Incomplete,
    /// A whole message.
    Done {
        /// The message.
        value: T,
        /// How many bytes of the buffer it took; the rest belongs to what comes next.
        consumed: usize,
    },
}

/// The first message of a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Greeting {
    /// A SOCKS5 method selection message.
    Socks5 {
        /// The authentication methods the client offers (RFC 1928 codes, as sent; never empty).
        methods: Vec<u8>,
    },
    /// A SOCKS4 or SOCKS4a request: that protocol starts with the request itself.
    Socks4(Socks4Request),
}

/// A SOCKS4 or SOCKS4a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Socks4Request {
    /// What the client asks for (SOCKS4 knows CONNECT = 1 and BIND = 2 only; anything else is
    /// [`Command::Other`]).
    pub command: Command,
    /// The destination: an IPv4 address (SOCKS4), or a domain name (SOCKS4a, sent as the
    /// invalid address 0.0.0.x with x != 0 followed by the name).
    pub target: Target,
    /// The destination port.
    pub port: u16,
    /// The user id, as sent (without its NUL; at most [`MAX_NAME`] bytes). Identifies nobody:
    /// anyone can send any value, so it is no authentication.
    pub user_id: Vec<u8>,
}

/// A SOCKS5 request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Socks5Request {
    /// What the client asks for. Unknown codes parse (as [`Command::Other`]) so that the
    /// forwarder can answer [`Reply::CommandNotSupported`].
    pub command: Command,
    /// The destination.
    pub target: Target,
    /// The destination port.
    pub port: u16,
}

/// A SOCKS command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// Open a TCP connection to the target: the only command an SSH channel can carry.
    Connect,
    /// Accept one incoming connection.
    Bind,
    /// Relay UDP (SOCKS5 only).
    UdpAssociate,
    /// A code no SOCKS version defines.
    Other(u8),
}

/// Where the client wants to go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// An IP address.
    Ip(IpAddr),
    /// A domain name, resolved by the SSH server (as with curl's `socks5h://`). Never empty,
    /// at most [`MAX_NAME`] bytes, valid UTF-8 and free of control characters, so it is safe to
    /// log and to send as an SSH string.
    Domain(String),
}

impl fmt::Display for Target {
    /// The host as an SSH `direct-tcpip` request names it: an IPv6 address without brackets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Ip(ip) => ip.fmt(f),
            Target::Domain(name) => f.write_str(name),
        }
    }
}

/// RFC 1929 username/password sub-negotiation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserPass {
    /// The username (1 to 255 bytes of UTF-8).
    pub user: String,
    /// The password (1 to 255 bytes, any values).
    pub password: Secret,
}

/// A SOCKS5 authentication method, as the server chooses it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// No authentication (0x00).
    NoAuth,
    /// Username/password, RFC 1929 (0x02).
    UserPass,
    /// None of the offered methods is acceptable (0xFF): send it, then close.
    NoneAcceptable,
}

impl Method {
    /// The RFC 1928 code.
    pub fn code(self) -> u8 {
        match self {
            Method::NoAuth => 0x00,
            Method::UserPass => 0x02,
            Method::NoneAcceptable => 0xFF,
        }
    }
}

/// The reply field of a SOCKS5 reply (RFC 1928 section 6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply {
    /// The connection is open (0x00).
    Succeeded,
    /// Some other failure (0x01).
    GeneralFailure,
    /// Connection not allowed by ruleset (0x02): the server prohibits this channel.
    NotAllowed,
    /// Network unreachable (0x03).
    NetworkUnreachable,
    /// Host unreachable (0x04), also for a name that does not resolve.
    HostUnreachable,
    /// Connection refused (0x05).
    ConnectionRefused,
    /// TTL expired (0x06).
    TtlExpired,
    /// Command not supported (0x07): anything but CONNECT.
    CommandNotSupported,
    /// Address type not supported (0x08).
    AddressTypeNotSupported,
}

impl Reply {
    /// The RFC 1928 code.
    pub fn code(self) -> u8 {
        match self {
            Reply::Succeeded => 0x00,
            Reply::GeneralFailure => 0x01,
            Reply::NotAllowed => 0x02,
            Reply::NetworkUnreachable => 0x03,
            Reply::HostUnreachable => 0x04,
            Reply::ConnectionRefused => 0x05,
            Reply::TtlExpired => 0x06,
            Reply::CommandNotSupported => 0x07,
            Reply::AddressTypeNotSupported => 0x08,
        }
    }

    /// The reply for a channel the server would not open: `reason_code` is the SSH
    /// `SSH_MSG_CHANNEL_OPEN_FAILURE` reason (RFC 4254 section 5.1), `description` the text that
    /// came with it, if known.
    ///
    /// OpenSSH's sshd sends reason 2 (connect failed) for a refused, an unreachable and an
    /// unresolvable target alike, with `strerror()` or `gai_strerror()` as the description
    /// ("Connection refused", "No route to host", "Name or service not known"): that text is
    /// the only thing that tells them apart, so it is consulted for reason 2 only. Without it,
    /// a failed connect is "host unreachable".
    pub fn for_open_failure(reason_code: u32, description: Option<&str>) -> Reply {
        const ADMINISTRATIVELY_PROHIBITED: u32 = 1;
        const CONNECT_FAILED: u32 = 2;
        match reason_code {
            ADMINISTRATIVELY_PROHIBITED => Reply::NotAllowed,
            CONNECT_FAILED => {
                let description = description.unwrap_or_default().to_ascii_lowercase();
                if description.contains("refused") {
                    Reply::ConnectionRefused
                } else if description.contains("network is unreachable") {
                    Reply::NetworkUnreachable
                } else {
                    Reply::HostUnreachable
                }
            }
            _ => Reply::GeneralFailure,
        }
    }
}

#[cfg(test)]
mod tests;
