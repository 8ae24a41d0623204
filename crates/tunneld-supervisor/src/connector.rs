//! How a tunnel gets its SSH connection: a seam, so that tests can put in a connector that
//! hangs (the watchdog must notice) without a misbehaving server.

use std::future::Future;
use std::pin::Pin;

use tunneld_config::Tunnel;
use tunneld_ssh::{Connection, ProgressFn, TunnelError};

/// A boxed connection attempt.
pub type Attempt<'a> = Pin<Box<dyn Future<Output = Result<Connection, TunnelError>> + Send + 'a>>;

/// Establishes a tunnel's connection.
pub trait Connector: Send + Sync + 'static {
    /// One attempt: dial (through the jump hosts), verify, authenticate.
    fn connect<'a>(&'a self, tunnel: &'a Tunnel, progress: &'a ProgressFn) -> Attempt<'a>;
}

/// The real thing: SSH with russh.
#[derive(Clone, Copy, Debug, Default)]
pub struct SshConnector;

impl Connector for SshConnector {
    fn connect<'a>(&'a self, tunnel: &'a Tunnel, progress: &'a ProgressFn) -> Attempt<'a> {
        Box::pin(Connection::establish(
            &tunnel.target,
            &tunnel.jump,
            &tunnel.keepalive,
            progress,
        ))
    }
}
