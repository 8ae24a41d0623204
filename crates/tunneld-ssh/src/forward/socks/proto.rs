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

pub use super::auth::Secret;

mod parse;

pub use parse::{parse_greeting, parse_socks5_request, parse_userpass};

/// The longest name SOCKS can carry: SOCKS5 and RFC 1929 have a one-byte length, and the
/// NUL-terminated SOCKS4 user id and SOCKS4a domain are held to the same (the SOCKS4 documents
/// set no limit, and an unbounded field is how a client makes a server buffer forever).
pub const MAX_NAME: usize = 255;

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

/// What to send to a client whose message was malformed, before closing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorReply {
    /// A SOCKS5 method selection of 0xFF ("no acceptable methods").
    NoAcceptableMethod,
    /// A SOCKS5 reply with this code.
    Socks5(Reply),
    /// A SOCKS4 reply "request rejected or failed" (0x5B).
    Socks4Rejected,
    /// An RFC 1929 status "failure".
    AuthFailure,
}

impl ErrorReply {
    /// The bytes to send.
    pub fn encode(self) -> Vec<u8> {
        match self {
            ErrorReply::NoAcceptableMethod => encode_method_choice(Method::NoneAcceptable).to_vec(),
            ErrorReply::Socks5(reply) => encode_socks5_reply(reply, NO_BOUND_ADDRESS),
            ErrorReply::Socks4Rejected => encode_socks4_reply(false).to_vec(),
            ErrorReply::AuthFailure => encode_userpass_status(false).to_vec(),
        }
    }
}

/// The message whose domain name was bad.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// A SOCKS4a request.
    Socks4a,
    /// A SOCKS5 request.
    Socks5,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Socks4a => "SOCKS4a",
            Protocol::Socks5 => "SOCKS5",
        })
    }
}

/// What is wrong with a domain name.
#[derive(thiserror::Error, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DomainError {
    /// It has no bytes.
    #[error("is empty")]
    Empty,
    /// It has a byte below 0x20 or 0x7F: no host name has one, and it would garble logs.
    #[error("contains a control character")]
    ControlCharacter,
    /// It is not UTF-8, so it cannot be resolved as a name.
    #[error("is not UTF-8")]
    NotUtf8,
}

/// A NUL-terminated field of a SOCKS4 request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Socks4Field {
    /// The user id.
    UserId,
    /// The SOCKS4a domain name.
    Domain,
}

impl fmt::Display for Socks4Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Socks4Field::UserId => "user id",
            Socks4Field::Domain => "domain name",
        })
    }
}

/// A message that breaks the protocol: the connection cannot go on. [`ProtocolError::reply`]
/// says what to send before closing. Messages never include a password.
#[derive(thiserror::Error, Clone, Debug, PartialEq, Eq)]
pub enum ProtocolError {
    /// The first byte is neither 4 nor 5.
    #[error("not SOCKS: the first byte is {0:#04x} (expected 0x04 or 0x05){hint}", hint = text_hint(*.0))]
    UnknownVersion(u8),
    /// A SOCKS5 greeting with no methods (RFC 1928 requires 1 to 255).
    #[error("SOCKS5 greeting offers no authentication methods")]
    NoMethods,
    /// A SOCKS5 request whose version byte is not 5.
    #[error("SOCKS5 request has version {0:#04x} (expected 0x05)")]
    RequestVersion(u8),
    /// A SOCKS5 request whose reserved byte is not 0.
    #[error("SOCKS5 request has reserved byte {0:#04x} (expected 0x00)")]
    ReservedNotZero(u8),
    /// A SOCKS5 address type other than IPv4, domain name or IPv6.
    #[error("SOCKS5 address type {0:#04x} is not supported (expected 0x01, 0x03 or 0x04)")]
    AddressType(u8),
    /// A domain name that cannot be a host name.
    #[error("{protocol} request: domain name {problem}")]
    BadDomain {
        /// Where it came in.
        protocol: Protocol,
        /// What is wrong with it.
        problem: DomainError,
    },
    /// A SOCKS4 user id or SOCKS4a domain with no NUL within [`MAX_NAME`] bytes.
    #[error("SOCKS4 {0} is longer than 255 bytes")]
    Socks4TooLong(Socks4Field),
    /// An RFC 1929 message whose version byte is not 1.
    #[error("username/password authentication has version {0:#04x} (expected 0x01)")]
    UserPassVersion(u8),
    /// An RFC 1929 message with an empty username (RFC 1929 requires 1 to 255 bytes).
    #[error("username/password authentication with an empty username")]
    EmptyUser,
    /// An RFC 1929 message with an empty password (RFC 1929 requires 1 to 255 bytes).
    #[error("username/password authentication with an empty password")]
    EmptyPassword,
    /// An RFC 1929 username that is not UTF-8 (no configured user can match it).
    #[error("username/password authentication with a username that is not UTF-8")]
    UserNotUtf8,
}

impl ProtocolError {
    /// What to send before closing; `None` when the client does not speak SOCKS at all.
    pub fn reply(&self) -> Option<ErrorReply> {
        Some(match self {
            ProtocolError::UnknownVersion(_) => return None,
            ProtocolError::NoMethods => ErrorReply::NoAcceptableMethod,
            ProtocolError::RequestVersion(_) | ProtocolError::ReservedNotZero(_) => {
                ErrorReply::Socks5(Reply::GeneralFailure)
            }
            ProtocolError::AddressType(_) => ErrorReply::Socks5(Reply::AddressTypeNotSupported),
            ProtocolError::BadDomain {
                protocol: Protocol::Socks5,
                ..
            } => ErrorReply::Socks5(Reply::HostUnreachable),
            ProtocolError::BadDomain {
                protocol: Protocol::Socks4a,
                ..
            }
            | ProtocolError::Socks4TooLong(_) => ErrorReply::Socks4Rejected,
            ProtocolError::UserPassVersion(_)
            | ProtocolError::EmptyUser
            | ProtocolError::EmptyPassword
            | ProtocolError::UserNotUtf8 => ErrorReply::AuthFailure,
        })
    }
}

/// Most non-SOCKS clients of a SOCKS port are HTTP clients pointed at the wrong proxy type.
fn text_hint(first: u8) -> &'static str {
    if first.is_ascii_uppercase() {
        " (text, perhaps an HTTP proxy request; this port speaks SOCKS)"
    } else {
        ""
    }
}

/// The method to answer a SOCKS5 greeting with: username/password when the forward requires
/// it, otherwise no authentication; [`Method::NoneAcceptable`] when the client did not offer it.
pub fn choose_method(offered: &[u8], auth_required: bool) -> Method {
    let wanted = if auth_required {
        Method::UserPass
    } else {
        Method::NoAuth
    };
    if offered.contains(&wanted.code()) {
        wanted
    } else {
        Method::NoneAcceptable
    }
}

/// The SOCKS5 method selection message.
pub fn encode_method_choice(method: Method) -> [u8; 2] {
    [0x05, method.code()]
}

/// The RFC 1929 status message: version 1, then 0 for success and 1 for failure (any non-zero
/// value is failure; close the connection after it).
pub fn encode_userpass_status(ok: bool) -> [u8; 2] {
    [0x01, if ok { 0x00 } else { 0x01 }]
}

/// A SOCKS5 reply. `bound` is the address the server bound; pass [`NO_BOUND_ADDRESS`], as
/// OpenSSH does, since an SSH channel has none to report.
pub fn encode_socks5_reply(reply: Reply, bound: SocketAddr) -> Vec<u8> {
    let mut bytes = vec![0x05, reply.code(), 0x00];
    match bound.ip() {
        IpAddr::V4(ip) => {
            bytes.push(0x01);
            bytes.extend_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            bytes.push(0x04);
            bytes.extend_from_slice(&ip.octets());
        }
    }
    bytes.extend_from_slice(&bound.port().to_be_bytes());
    bytes
}

/// A SOCKS4 reply: 0x5A "request granted" or 0x5B "request rejected or failed". The reply's
/// version byte is 0, not 4; the port and address are zero (clients ignore them for CONNECT,
/// and OpenSSH sends zeros too).
pub fn encode_socks4_reply(granted: bool) -> [u8; 8] {
    [0x00, if granted { 0x5A } else { 0x5B }, 0, 0, 0, 0, 0, 0]
}

#[cfg(test)]
mod tests;
