//! What `tunneld check` says about a hop's certificates, judged by this machine's clock.

use std::path::Path;

use tunneld_config::Hop;

use super::{CertificateError, Finding, Origin, UserCertificate, describe, gather, judge};
use crate::dates;
use crate::identity::KeyError;

/// How much a line about a certificate matters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReportLevel {
    /// For information: a certificate that will be offered, and what it is.
    Note,
    /// Worth a look, but it may be fine: it expires soon, its principals do not name the user
    /// (the server's `AuthorizedPrincipalsFile` may map them), or it will be skipped.
    Warning,
    /// `check` fails: the certificate cannot work as configured, or this machine's clock says it
    /// is expired or not yet valid.
    Problem,
}

/// One line of `tunneld check` about one certificate file; the message names the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateReport {
    /// How much it matters.
    pub level: ReportLevel,
    /// What to say.
    pub message: String,
}

/// Reads the hop's certificates (those beside its identity files and those it names) and says
/// what this machine's clock and the hop's user make of each. Blocking file I/O. Problems with
/// the key files themselves are not repeated here: `identity::check` reports them.
pub fn check_hop(hop: &Hop, credentials_dir: Option<&Path>) -> Vec<CertificateReport> {
    let found = gather(hop, credentials_dir);
    let now = dates::now();
    let mut reports = Vec::new();
    for identity in &found.identities {
        for certificate in &identity.certificates {
            let offered = format!("offered with the key {}", identity.key.path.display());
            reports.push(judged(certificate, &hop.user, now, &offered));
        }
    }
    for certificate in &found.unpaired {
        let fingerprint = certificate.key_fingerprint();
        reports.push(match (certificate.origin, hop.use_agent) {
            // Its key file could not be used, and identity::check says why; without the agent
            // it is not offered at all, and there is no more to say.
            (Origin::Beside, false) => continue,
            (Origin::Beside, true) => judged(
                certificate,
                &hop.user,
                now,
                &format!("offered only if the agent holds its key {fingerprint}"),
            ),
            (Origin::Named, true) => judged(
                certificate,
                &hop.user,
                now,
                &format!(
                    "no identity file holds its key {fingerprint}; offered only if the agent \
                     does"
                ),
            ),
            (Origin::Named, false) => CertificateReport {
                level: ReportLevel::Problem,
                message: format!(
                    "{} ({})",
                    CertificateError::NoKey {
                        path: certificate.path.clone(),
                        fingerprint,
                        asked_agent: false,
                    },
                    describe(&certificate.certificate)
                ),
            },
        });
    }
    for (origin, problem) in &found.certificate_problems {
        reports.push(match (origin, problem) {
            (_, CertificateError::Credential(KeyError::NoCredentialsDirectory { name })) => {
                CertificateReport {
                    level: ReportLevel::Note,
                    message: format!(
                        "credential:{name} is read from $CREDENTIALS_DIRECTORY, which systemd \
                         sets only for the service; not checked here"
                    ),
                }
            }
            // tunneld skips it and offers the key alone, as ssh does.
            (Origin::Beside, problem) => CertificateReport {
                level: ReportLevel::Warning,
                message: problem.to_string(),
            },
            (Origin::Named, problem) => CertificateReport {
                level: ReportLevel::Problem,
                message: problem.to_string(),
            },
        });
    }
    reports
}

/// `PATH: FINDING; FINDING (certificate ...)`, or `PATH: certificate ..., CONTEXT` when there is
/// nothing to say against it.
fn judged(certificate: &UserCertificate, user: &str, now: u64, context: &str) -> CertificateReport {
    let findings = judge(&certificate.certificate, user, now);
    let path = certificate.path.display();
    let description = describe(&certificate.certificate);
    if findings.is_empty() {
        return CertificateReport {
            level: ReportLevel::Note,
            message: format!("{path}: {description}; {context}"),
        };
    }
    let level = if findings.iter().any(Finding::is_failure) {
        ReportLevel::Problem
    } else {
        ReportLevel::Warning
    };
    let said: Vec<String> = findings.iter().map(ToString::to_string).collect();
    CertificateReport {
        level,
        message: format!("{path}: {} ({description}; {context})", said.join("; ")),
    }
}
