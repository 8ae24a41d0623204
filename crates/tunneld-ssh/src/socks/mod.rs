//! The SOCKS side of `dynamic` forwards: the wire protocol (pure, without I/O) and the users
//! file of username/password authentication.

pub mod proto;
pub mod users;

/// The longest name SOCKS can carry: SOCKS5 and RFC 1929 have a one-byte length, and the
/// NUL-terminated SOCKS4 user id and SOCKS4a domain are held to the same (the SOCKS4 documents
/// set no limit, and an unbounded field is how a client makes a server buffer forever). The
/// users file holds its names and passwords to it too.
pub const MAX_NAME: usize = 255;
