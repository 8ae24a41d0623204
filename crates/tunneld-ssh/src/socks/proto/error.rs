//! What goes wrong in a SOCKS exchange, and what to answer before closing.

use std::fmt;

use super::{
    Method, NO_BOUND_ADDRESS, Reply, encode_method_choice, encode_socks4_reply,
    encode_socks5_reply, encode_userpass_status,
};

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
