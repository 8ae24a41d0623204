//! One SSH connection of tunneld and its forwards: dialling (directly or through jump hosts),
//! host key verification, authentication, the russh `Handler`, and the forwarders.
//!
//! This is the only crate that knows russh. docs/design.md lists the russh pitfalls that shaped it;
//! the modules say where each one is handled.

mod algorithms;
mod auth;
mod connection;
mod dial;
mod error;
pub mod forward;
mod handler;
pub mod identity;
pub mod known_hosts;
mod private_file;

pub use algorithms::Negotiated;
pub use connection::{ChannelOpenError, Connection, Progress, ProgressFn, RemoteForwardError};
pub use error::{FailureKind, SshError, Stage};
