//! Forwarders: what carries client connections through a tunnel's SSH connection.

pub mod client;
pub mod context;
pub mod counters;
pub mod dynamic;
mod handshake;
pub mod listen;
pub mod local;
pub mod pipe;
mod read_buffer;
pub mod remote;
mod remote_socks;
pub mod socket_file;

pub use client::ClientStream;
pub use context::{ConnectionWatch, ForwardContext};
pub use counters::{Active, CountersRead, ForwardCounters, RemoteCounters, Tally};
pub use dynamic::serve_dynamic;
pub use local::serve_local;
pub use pipe::{PipeEnd, PipeLimits, PipeReport, pipe};
pub use remote::serve_remote;

pub use crate::routes::IncomingForward;
