//! A warning, at most once a day per certificate, while a certificate in use nears its end.
//!
//! sshd checks a certificate only when a session logs in: a session that came up with it stays
//! up after it expires, and only the next connection is refused. A tunnel may stay connected for
//! weeks, so the reminder runs for as long as the session does, not only when it logs in.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use russh::keys::HashAlg;
use russh::keys::ssh_key::Certificate;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::certificate::EXPIRY_WARNING;
use crate::dates::{self, FOREVER};
use crate::error::Peer;

const DAY: Duration = Duration::from_secs(86_400);

/// A certificate, told apart from its renewals: the key it certifies and when it ends.
type Key = (String, u64);

/// When each certificate was last warned about; shared by every tunnel of the process, so a
/// certificate that several tunnels (or several reconnects) use is named once a day.
#[derive(Debug, Default)]
struct Reminders {
    last: HashMap<Key, Instant>,
}

impl Reminders {
    /// Whether a warning about `key` is due at `now`, and if so, notes that it is given.
    fn due(&mut self, key: &Key, now: Instant) -> bool {
        if let Some(last) = self.last.get(key)
            && now.saturating_duration_since(*last) < DAY
        {
            return false;
        }
        self.last.insert(key.clone(), now);
        true
    }
}

fn reminders() -> &'static Mutex<Reminders> {
    static REMINDERS: OnceLock<Mutex<Reminders>> = OnceLock::new();
    REMINDERS.get_or_init(Mutex::default)
}

/// Watches `certificate`, which `name` (its file, or the agent) logged in with to `peer`, until
/// `ended` is cancelled: once within [`EXPIRY_WARNING`] of its end (by this machine's clock),
/// it warns, at most once a day.
pub(super) fn watch(name: String, peer: Peer, certificate: &Certificate, ended: CancellationToken) {
    let valid_before = certificate.valid_before();
    if valid_before == FOREVER {
        return;
    }
    let key: Key = (
        certificate
            .public_key()
            .fingerprint(HashAlg::Sha256)
            .to_string(),
        valid_before,
    );
    tokio::spawn(async move {
        loop {
            let now = dates::now();
            let near = valid_before.saturating_sub(now) <= EXPIRY_WARNING;
            let due = near
                && reminders()
                    .lock()
                    .is_ok_and(|mut reminders| reminders.due(&key, Instant::now()));
            if due {
                remind(&name, &peer, valid_before, now);
            }
            tokio::select! {
                () = ended.cancelled() => return,
                () = tokio::time::sleep(DAY) => {}
            }
        }
    });
}

fn remind(name: &str, peer: &Peer, valid_before: u64, now: u64) {
    let ends = dates::utc(valid_before);
    if now >= valid_before {
        warn!(
            peer = %peer,
            certificate = %name,
            expired = %ends,
            "the certificate this session logged in with has expired; the next connection will \
             be refused until it is renewed"
        );
    } else {
        warn!(
            peer = %peer,
            certificate = %name,
            expires = %ends,
            left = %dates::span(valid_before - now),
            "the certificate this session logged in with expires soon; renew it"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn once_a_day_per_certificate() {
        let mut reminders = Reminders::default();
        let start = Instant::now();
        let cert = ("SHA256:a".to_owned(), 1_000);
        let renewed = ("SHA256:a".to_owned(), 2_000);
        assert!(reminders.due(&cert, start));
        assert!(!reminders.due(&cert, start + Duration::from_secs(3_600)));
        assert!(!reminders.due(&cert, start + DAY - Duration::from_secs(1)));
        // A renewed certificate is another certificate.
        assert!(reminders.due(&renewed, start + Duration::from_secs(60)));
        assert!(reminders.due(&cert, start + DAY));
        assert!(!reminders.due(&cert, start + DAY + Duration::from_secs(1)));
    }
}
