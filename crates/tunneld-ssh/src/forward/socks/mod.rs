//! The SOCKS side of `dynamic` forwards: the wire protocol (pure, without I/O) and the users
//! file of username/password authentication.

pub mod auth;
pub mod proto;
