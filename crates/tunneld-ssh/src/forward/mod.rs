//! Forwarders: what carries client connections through a tunnel's SSH connection.

pub mod dynamic;
pub mod listen;
pub mod local;
pub mod pipe;
pub mod remote;
pub mod socks;

pub use dynamic::serve_dynamic;
pub use local::{ConnectionWatch, ForwardContext, serve_local};
pub use pipe::{PipeEnd, PipeLimits, PipeReport, pipe};
pub use remote::{IncomingForward, serve_remote};
