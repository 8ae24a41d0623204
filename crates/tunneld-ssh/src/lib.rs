//! One SSH connection of tunneld and its forwards: dialling (directly or through jump hosts),
//! host key verification, authentication, the russh `Handler`, and the forwarders.
//!
//! This is the only crate that knows russh. docs/design.md lists the russh pitfalls that shaped it;
//! the modules say where each one is handled.
//!
//! The modules are layered, and imports run one way, downward (`.ci/check-structure` checks it):
//! - `private_file`: reading files that must be private; `dates`: certificate times in words;
//!   `quiet`: the log level of an attempt's steps;
//!   `descriptors`: the process's budget of file descriptors;
//! - `known_hosts`, `identity`, `certificate` (user certificates, paired with identities),
//!   `keygen` (creating identity files),
//!   `socks` (the protocol and its users file), `algorithms`: each with its own error type;
//! - `error`: why a tunnel failed, wrapping the errors above;
//! - `tcp`, `proxy` (the first hop through an HTTP or SOCKS5 proxy), `routes`, `handler`, then
//!   `auth`: the parts of one SSH session;
//! - `connection`: a tunnel's connection through its jump chain;
//! - `forward`: what carries clients through a connection.

mod algorithms;
mod auth;
pub mod certificate;
mod connection;
mod dates;
pub mod descriptors;
mod error;
pub mod forward;
mod handler;
pub mod identity;
mod in_order;
pub mod keygen;
pub mod known_hosts;
pub mod private_file;
mod proxy;
mod quiet;
mod routes;
pub mod socks;
mod tcp;

pub use algorithms::Negotiated;
pub use connection::{Connection, Progress, ProgressFn};
pub use error::{
    ChannelOpenError, FailureKind, Lookup, Peer, Reach, RemoteForwardError, Stage, TunnelError,
};
pub use quiet::quietly;
