//! Whether a host certificate signed by a trusted CA is valid for this host now.

use russh::keys::ssh_key::{Certificate, HashAlg};

use super::CertificateProblem;

/// The checks of OpenSSH's `sshkey_cert_check_host`, for a certificate whose signing key is
/// already known to be a trusted CA of this host. `host` is the host name without the port:
/// OpenSSH matches principals against it exactly (no wildcards on the client side), here
/// regardless of ASCII case because ssh lowercases the host name it is given.
pub(super) fn validate(
    certificate: &Certificate,
    host: &str,
    now: u64,
) -> Result<(), CertificateProblem> {
    if !certificate.cert_type().is_host() {
        return Err(CertificateProblem::NotHostCertificate);
    }
    // `valid after <= now < valid before` (PROTOCOL.certkeys). Checked here, before
    // `validate_at` does it again, to say which end failed.
    if now < certificate.valid_after() {
        return Err(CertificateProblem::NotYetValid {
            valid_after: certificate.valid_after(),
        });
    }
    if now >= certificate.valid_before() {
        return Err(CertificateProblem::Expired {
            valid_before: certificate.valid_before(),
        });
    }
    // With the CA (matched by the caller) and the time window already known good, the signature
    // is the only thing left that `validate_at` can refuse.
    let ca = certificate.signature_key().fingerprint(HashAlg::Sha256);
    if certificate.validate_at(now, [&ca]).is_err() {
        return Err(CertificateProblem::BadSignature);
    }
    let principals = certificate.valid_principals();
    // An empty list means "any host" for host certificates (OpenSSH does not require one).
    if !principals.is_empty()
        && !principals
            .iter()
            .any(|principal| principal.eq_ignore_ascii_case(host))
    {
        return Err(CertificateProblem::WrongPrincipal {
            host: host.to_owned(),
            principals: principals.to_vec(),
        });
    }
    // No critical options are defined for host certificates; OpenSSH refuses any.
    if !certificate.critical_options().is_empty() {
        return Err(CertificateProblem::CriticalOptions {
            names: certificate.critical_options().keys().cloned().collect(),
        });
    }
    Ok(())
}
