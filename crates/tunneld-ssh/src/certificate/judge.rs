//! What this machine's clock and the login user make of a certificate. Pure: the time is passed
//! in, so the rules are tested at chosen moments.

use std::fmt;

use russh::keys::ssh_key::Certificate;

use crate::dates::{self, FOREVER};

/// How long before its end a certificate is worth a warning: the time a person needs to notice
/// and renew it.
pub const EXPIRY_WARNING: u64 = 7 * 86_400;

/// Something worth saying about a certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Finding {
    /// Its validity has not started by this machine's clock.
    NotYetValid {
        /// `valid after`, in unix seconds.
        valid_after: u64,
    },
    /// Its validity has ended by this machine's clock.
    Expired {
        /// `valid before`, in unix seconds.
        valid_before: u64,
    },
    /// It ends within [`EXPIRY_WARNING`].
    ExpiresSoon {
        /// `valid before`, in unix seconds.
        valid_before: u64,
        /// Seconds left.
        left: u64,
    },
    /// Its principals do not name the user. Not necessarily wrong: the server's
    /// `AuthorizedPrincipalsFile` may map other principals to the user.
    NotForUser {
        /// The user that logs in.
        user: String,
        /// The principals it names.
        principals: Vec<String>,
    },
}

impl Finding {
    /// Whether no server that checks the time can accept it now (by this machine's clock).
    pub fn is_failure(&self) -> bool {
        matches!(self, Finding::NotYetValid { .. } | Finding::Expired { .. })
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Finding::NotYetValid { valid_after } => write!(
                f,
                "not valid until {} by this machine's clock",
                dates::utc(*valid_after)
            ),
            Finding::Expired { valid_before } => write!(
                f,
                "expired at {} by this machine's clock",
                dates::utc(*valid_before)
            ),
            Finding::ExpiresSoon { valid_before, left } => write!(
                f,
                "expires at {}, in {}",
                dates::utc(*valid_before),
                dates::span(*left)
            ),
            Finding::NotForUser { user, principals } if principals.is_empty() => write!(
                f,
                "it names no principals, so it is not valid for {user} under sshd's \
                 TrustedUserCAKeys (only a cert-authority line in authorized_keys accepts it)"
            ),
            Finding::NotForUser { user, principals } => write!(
                f,
                "its principals ({}) do not include the user {user}; the server accepts it \
                 only if its AuthorizedPrincipalsFile or AuthorizedPrincipalsCommand lists one \
                 of them for {user}",
                principals.join(", ")
            ),
        }
    }
}

/// What there is to say about `certificate` for logging in as `user` at `now` (unix seconds):
/// nothing when it is valid, for the user, and far from its end. The validity window is
/// `valid after <= now < valid before` (PROTOCOL.certkeys).
pub fn judge(certificate: &Certificate, user: &str, now: u64) -> Vec<Finding> {
    let mut findings = Vec::new();
    let (valid_after, valid_before) = (certificate.valid_after(), certificate.valid_before());
    if now < valid_after {
        findings.push(Finding::NotYetValid { valid_after });
    } else if now >= valid_before {
        findings.push(Finding::Expired { valid_before });
    } else if valid_before != FOREVER && valid_before - now <= EXPIRY_WARNING {
        findings.push(Finding::ExpiresSoon {
            valid_before,
            left: valid_before - now,
        });
    }
    let principals = certificate.valid_principals();
    if !principals.iter().any(|principal| principal == user) {
        findings.push(Finding::NotForUser {
            user: user.to_owned(),
            principals: principals.to_vec(),
        });
    }
    findings
}

/// What `ssh-keygen -L` would show of a certificate to recognise it: its key ID, serial,
/// validity window and principals, as in
/// `certificate "deploy" serial 7, valid from 2026-01-01 00:00:00 UTC to ..., principals: tunnel`.
pub fn describe(certificate: &Certificate) -> String {
    let principals = certificate.valid_principals();
    format!(
        "certificate {:?} serial {}, valid {}, principals: {}",
        certificate.key_id(),
        certificate.serial(),
        dates::window(certificate.valid_after(), certificate.valid_before()),
        if principals.is_empty() {
            "(none)".to_owned()
        } else {
            principals.join(", ")
        }
    )
}
