//! The round trip to the target server, measured with a request whose answer tunneld sees.
//!
//! russh answers its own keepalives out of sight, so the latency comes from a second probe of
//! the same kind: a `keepalive@openssh.com` global request with want-reply, sent by
//! `Handle::send_ping`, whose answer (OpenSSH sends a failure, which is an answer all the same)
//! resolves a future. The probe judges nothing: an unanswered one is simply not measured, and
//! whether the server is alive stays the business of russh's keepalives and the stuck-link
//! backstop, exactly as without it.

use std::time::Duration;

use tokio::time::Instant;

use super::Connection;

impl Connection {
    /// How often keepalives probe the server; `None` when they are off.
    pub fn keepalive_interval(&self) -> Option<Duration> {
        self.keepalive.interval
    }

    /// Sends one probe and waits at most `limit` for its answer. `None` when it was not
    /// answered in time or the connection ended meanwhile.
    pub async fn round_trip(&self, limit: Duration) -> Option<Duration> {
        let sent = Instant::now();
        let answered = tokio::time::timeout(limit, self.target.handle.send_ping()).await;
        let rtt = sent.elapsed();
        // send_ping also returns when the session drops the probe unanswered, as it ends.
        match answered {
            Ok(Ok(())) if !self.is_closed() => Some(rtt),
            _ => None,
        }
    }
}
