//! The control socket's protocol (docs/control.md): one request per connection, one line of
//! JSON each way, versioned. This crate holds the types, the bounded parser of requests (which
//! the daemon runs on whatever a local client sends, and which is fuzzed), and the encoding;
//! the socket itself is the binary's.
#![forbid(unsafe_code)]

mod reply;
mod request;

pub use reply::{
    ErrorKind, ErrorReply, ForwardStatus, LastError, Metrics, ReconnectReply, ReloadReply,
    ReplyError, StatusReply, TunnelStatus, decode_reply, encode_error, encode_reply,
};
pub use request::{MAX_NAMES, MAX_REQUEST, Request, RequestError, parse_request};

/// The protocol's version, in every request and reply.
pub const VERSION: u32 = 1;
