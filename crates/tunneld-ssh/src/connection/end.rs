//! How a connection ends, and why: the supervisor waits here.

use std::time::Duration;

use russh::Disconnect;

use super::{Connection, Session};
use crate::error::TunnelError;
use crate::handler::EndReason;

impl Connection {
    /// Whether the connection has ended (the target's session, or a jump host's under it).
    pub fn is_closed(&self) -> bool {
        self.chain_ended.is_cancelled() || self.target.handle.is_closed()
    }

    /// Waits until the connection ends, without consuming its reason (see
    /// [`Connection::closed`]).
    pub async fn ended(&self) {
        self.chain_ended.cancelled().await;
    }

    /// Waits until the connection ends and says why. The reason is handed out once: the
    /// tunnel's supervisor asks; anything else that needs to know uses [`Connection::ended`].
    ///
    /// In a jump chain the outermost session that ended is the cause: when a jump host goes,
    /// every session inside it goes too, and blaming the target would send the operator to the
    /// wrong server.
    pub async fn closed(&self) -> TunnelError {
        self.chain_ended.cancelled().await;
        let session = self
            .jumps
            .iter()
            .find(|s| s.ended.is_cancelled())
            .unwrap_or(&self.target);
        let err = self.end_error(session);
        match session.hop {
            Some(index) => TunnelError::at_hop(index, &session.peer.label, err),
            None => err,
        }
    }

    fn end_error(&self, session: &Session) -> TunnelError {
        let reason = session
            .shared
            .end_reason
            .lock()
            .ok()
            .and_then(|mut r| r.take());
        let peer = session.peer.clone();
        match reason {
            Some(EndReason::ServerDisconnect(message)) => {
                TunnelError::ServerDisconnect { peer, message }
            }
            Some(EndReason::Error(russh::Error::KeepaliveTimeout)) => {
                TunnelError::KeepaliveTimeout {
                    peer,
                    count: self.keepalive.max,
                    budget: self.keepalive.dead_peer_budget().unwrap_or_default(),
                }
            }
            Some(EndReason::Error(russh::Error::InactivityTimeout)) => TunnelError::StuckLink {
                peer,
                budget: self.keepalive.stuck_link_budget().unwrap_or_default(),
            },
            Some(EndReason::Error(source)) => TunnelError::Transport { peer, source },
            None => TunnelError::Dropped { peer },
        }
    }

    /// Says goodbye to the server (best effort, bounded: used on shutdown).
    pub async fn disconnect(&self, why: &str) {
        let bye = self
            .target
            .handle
            .disconnect(Disconnect::ByApplication, why, "en");
        let _ = tokio::time::timeout(Duration::from_millis(500), bye).await;
    }
}
