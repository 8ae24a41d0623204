use std::path::{Path, PathBuf};

use russh::keys::ssh_key::Certificate;
use russh::keys::{Algorithm, HashAlg, PublicKey, PublicKeyOrCertificate};
use tunneld_config::HostKeyPolicy;

use super::*;

const ED_A: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKgj+qW5RR2k/5eW5IrUc7JVII/K3bPaU6wvl2VbEPTp";
const ED_B: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFEgeWSWIzVVStG+3XsXbe/9F79VsDI6NxXYegWBMa/x";
/// The CA of the certificates below.
const ED_CA: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFbQyM2EOuEWAagupcTWY3ClKmi20GboSbwPdGSJqBTo";
const EC_A: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBKrnVACPuW0pBH3JapK9vI0b4+yd00G1Azj3MZWBDjpiuvQbJJV/3hZfjkNc7tAXBVTrNQriG4JnZvRydSCOU1Q=";
const RSA_A: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQDCg2ZGdy/85kkn7m15Ykwjr9sO5qzZUE4pkqOC5/qkjbGAt1o1gveH/Wra6TbCdLyyjeZlTAZliQse/xcnWTvoynw3PAbaCvZGxnUoyjV+zqlUEgq+7zUeihnX0vomeBuS/e5AfRvr37X+C+0BWcQ6cWAeG48r/XtS6ObO+wKbNQ==";

// Made with `ssh-keygen -s ca -h -I hostid -n 127.0.0.1,db.example.com -V 20200101:20400101`
// (valid 1577836800 <= t < 2208988800) for the key ED_A, signed by ED_CA.
const CERT_HOST: &str = "ssh-ed25519-cert-v01@openssh.com AAAAIHNzaC1lZDI1NTE5LWNlcnQtdjAxQG9wZW5zc2guY29tAAAAIJ/zFk8/GCfd3F2qMrwdlLe2IXtbhPrcStAOmL61W7zGAAAAIKgj+qW5RR2k/5eW5IrUc7JVII/K3bPaU6wvl2VbEPTpAAAAAAAAAAAAAAACAAAABmhvc3RpZAAAAB8AAAAJMTI3LjAuMC4xAAAADmRiLmV4YW1wbGUuY29tAAAAAF4L4QAAAAAAg6p+gAAAAAAAAAAAAAAAAAAAADMAAAALc3NoLWVkMjU1MTkAAAAgVtDIzYQ64RYBqC6lxNZjcKUqaLbQZuhJvA90ZImoFOgAAABTAAAAC3NzaC1lZDI1NTE5AAAAQFFjMv88Oc/x8Ccu3y8TaQc3hP5BotrTEo54bXBmBJ31cZ99oEJhItjHBaWG+GvZSuks3LFoZMmfrbyjGEofGgY=";
// The same without -h: a user certificate.
const CERT_USER: &str = "ssh-ed25519-cert-v01@openssh.com AAAAIHNzaC1lZDI1NTE5LWNlcnQtdjAxQG9wZW5zc2guY29tAAAAIFOoke4d6XcjuHLcNEp+kISAB/5BE1/E4X0ZbaRTONVlAAAAIKgj+qW5RR2k/5eW5IrUc7JVII/K3bPaU6wvl2VbEPTpAAAAAAAAAAAAAAABAAAABnVzZXJpZAAAAA0AAAAJMTI3LjAuMC4xAAAAAF4L4QAAAAAAg6p+gAAAAAAAAACCAAAAFXBlcm1pdC1YMTEtZm9yd2FyZGluZwAAAAAAAAAXcGVybWl0LWFnZW50LWZvcndhcmRpbmcAAAAAAAAAFnBlcm1pdC1wb3J0LWZvcndhcmRpbmcAAAAAAAAACnBlcm1pdC1wdHkAAAAAAAAADnBlcm1pdC11c2VyLXJjAAAAAAAAAAAAAAAzAAAAC3NzaC1lZDI1NTE5AAAAIFbQyM2EOuEWAagupcTWY3ClKmi20GboSbwPdGSJqBToAAAAUwAAAAtzc2gtZWQyNTUxOQAAAEAnIVOR3rrbag7bkq24+Uht2B63dy6y0uw+5528YBN+V7Opf0BD6kgJyaShSi44YHs2QM0qoVrm8LkfgYxot3UC";
// A host certificate with `-O force-command=true` and no principals.
const CERT_CRITICAL: &str = "ssh-ed25519-cert-v01@openssh.com AAAAIHNzaC1lZDI1NTE5LWNlcnQtdjAxQG9wZW5zc2guY29tAAAAIMOxevytcVUfEJgaAIcThZkg78zsDRyZhaZXG/6AL/gKAAAAIKgj+qW5RR2k/5eW5IrUc7JVII/K3bPaU6wvl2VbEPTpAAAAAAAAAAAAAAACAAAAAWMAAAAAAAAAAF4L4QAAAAAAg6p+gAAAAB0AAAANZm9yY2UtY29tbWFuZAAAAAgAAAAEdHJ1ZQAAAAAAAAAAAAAAMwAAAAtzc2gtZWQyNTUxOQAAACBW0MjNhDrhFgGoLqXE1mNwpSpottBm6Em8D3RkiagU6AAAAFMAAAALc3NoLWVkMjU1MTkAAABApBnrAoYRKL/WhkqLqgl04jFsrJELreEiFp/n/jghM+UY8tuApyTseC1xho/Vqoa/P+rN9z5dr3q2wc24kMnIAQ==";
// A host certificate with no principals (valid for any host).
const CERT_ANY: &str = "ssh-ed25519-cert-v01@openssh.com AAAAIHNzaC1lZDI1NTE5LWNlcnQtdjAxQG9wZW5zc2guY29tAAAAIAh4RJkg/YHHmx7uK/W/fM5PZrcBhhg31YS0CT3L/4AiAAAAIKgj+qW5RR2k/5eW5IrUc7JVII/K3bPaU6wvl2VbEPTpAAAAAAAAAAAAAAACAAAAA2FueQAAAAAAAAAAXgvhAAAAAACDqn6AAAAAAAAAAAAAAAAAAAAAMwAAAAtzc2gtZWQyNTUxOQAAACBW0MjNhDrhFgGoLqXE1mNwpSpottBm6Em8D3RkiagU6AAAAFMAAAALc3NoLWVkMjU1MTkAAABAQImN+qV3e1uiNlyLSjK1TBr81NUgNWh+8R0mQhbBlkH4FepVhsegxRW/O0kBqeZHPj5dgRM40Z41bFE8x4BKDw==";

const IN_2030: u64 = 1_893_456_000;
const PATH: &str = "/var/lib/tunneld/known_hosts";

fn key(text: &str) -> PublicKey {
    PublicKey::from_openssh(text).unwrap()
}

fn offered(text: &str) -> PublicKeyOrCertificate {
    key(text).into()
}

fn cert(text: &str) -> Certificate {
    Certificate::from_openssh(text).unwrap()
}

fn file(content: &str) -> KnownHosts {
    KnownHosts::parse(Path::new(PATH), content.as_bytes())
}

fn fp(text: &str) -> String {
    key(text).fingerprint(HashAlg::Sha256).to_string()
}

#[test]
fn tabs_spaces_comments_crlf_and_line_numbers() {
    let known = file(&format!(
        "# a comment\n\
         \n\
         db.example.com\t{ED_A}\r\n\
         \t  [127.0.0.1]:2222 \t  {ED_B}   comment with  spaces\n\
         @revoked\t*\t{EC_A}\n"
    ));
    assert_eq!(
        known.check("db.example.com", 22, &offered(ED_A)).unwrap(),
        Verdict::Known {
            file: HostsFile::Learned,
            line: 3
        }
    );
    assert_eq!(
        known.check("127.0.0.1", 2222, &offered(ED_B)).unwrap(),
        Verdict::Known {
            file: HostsFile::Learned,
            line: 4
        }
    );
    assert!(matches!(
        known.check("anything", 22, &offered(EC_A)),
        Err(HostKeyError::Revoked { line: 5, .. })
    ));
}

#[test]
fn malformed_lines_are_skipped_not_fatal() {
    let mut content = Vec::new();
    for line in [
        "just-a-host".as_bytes(),
        b"host ssh-ed25519",
        b"host ssh-ed25519 not-base64!!!",
        b"host ssh-ed25519 AAAAB3NzaC1yc2EAAAADAQABAAAAgQDCg2ZGdy", // truncated, wrong type
        b"@bogus host ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKgj+qW5RR2k/5eW5IrUc7JVII/K3bPaU6wvl2VbEPTp",
        b"|1|notbase64|x ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKgj+qW5RR2k/5eW5IrUc7JVII/K3bPaU6wvl2VbEPTp",
        b"\xff\xfe binary \x00 junk",
        b"@revoked",
        b"db.example.com ssh-ed25519-cert-v01@openssh.com AAAA",
    ] {
        content.extend_from_slice(line);
        content.push(b'\n');
    }
    content.extend_from_slice(format!("db.example.com {ED_A}\n").as_bytes());
    let known = KnownHosts::parse(Path::new(PATH), &content);
    assert_eq!(known.lines.len(), 1);
    assert_eq!(
        known.check("db.example.com", 22, &offered(ED_A)).unwrap(),
        Verdict::Known {
            file: HostsFile::Learned,
            line: 10
        }
    );
}

#[test]
fn port_22_is_the_bare_name_other_ports_are_bracketed() {
    let known = file(&format!(
        "db.example.com {ED_A}\n[db.example.com]:2222 {ED_B}\n"
    ));
    assert_eq!(
        known.check("db.example.com", 22, &offered(ED_A)).unwrap(),
        Verdict::Known {
            file: HostsFile::Learned,
            line: 1
        }
    );
    assert_eq!(
        known.check("DB.Example.COM", 2222, &offered(ED_B)).unwrap(),
        Verdict::Known {
            file: HostsFile::Learned,
            line: 2
        }
    );
    // The bare name does not cover another port.
    assert_eq!(
        known.check("db.example.com", 2200, &offered(ED_A)).unwrap(),
        Verdict::Unknown
    );
}

#[test]
fn wildcards_and_negation() {
    let known = file(&format!(
        "*.example.com,!db.example.com {ED_A}\n[*.example.com]:2222 {ED_B}\n"
    ));
    assert_eq!(
        known.check("web.example.com", 22, &offered(ED_A)).unwrap(),
        Verdict::Known {
            file: HostsFile::Learned,
            line: 1
        }
    );
    // Negated: line 1 does not apply to db at all, so db is unknown rather than changed.
    assert_eq!(
        known.check("db.example.com", 22, &offered(ED_B)).unwrap(),
        Verdict::Unknown
    );
    assert_eq!(
        known.check("db.example.com", 2222, &offered(ED_B)).unwrap(),
        Verdict::Known {
            file: HostsFile::Learned,
            line: 2
        }
    );
}

#[test]
fn changed_key_names_file_line_and_fingerprints() {
    let known = file(&format!("# header\n\n\n\n\n\ndb.example.com {ED_A}\n"));
    let error = known
        .check("db.example.com", 22, &offered(ED_B))
        .unwrap_err();
    assert!(matches!(error, HostKeyError::Changed { line: 7, .. }));
    assert!(error.is_permanent());
    assert_eq!(
        error.to_string(),
        format!(
            "HOST KEY CHANGED for db.example.com: /var/lib/tunneld/known_hosts line 7 has \
             ssh-ed25519 {}, server offered {}; refusing",
            fp(ED_A),
            fp(ED_B)
        )
    );
}

#[test]
fn another_known_key_of_the_same_type_still_counts_as_known() {
    let known = file(&format!("h {ED_A}\nh {ED_B}\n"));
    assert_eq!(
        known.check("h", 22, &offered(ED_B)).unwrap(),
        Verdict::Known {
            file: HostsFile::Learned,
            line: 2
        }
    );
}

#[test]
fn other_key_type_is_refused_not_learned() {
    let known = file(&format!("[127.0.0.1]:2222 {RSA_A}\n"));
    let error = known.check("127.0.0.1", 2222, &offered(ED_A)).unwrap_err();
    assert!(error.is_permanent());
    assert_eq!(
        error.to_string(),
        "/var/lib/tunneld/known_hosts has ssh-rsa for [127.0.0.1]:2222 at line 1 but the \
         server offered ssh-ed25519; refusing"
    );
}

#[test]
fn revoked_wins_over_a_known_line() {
    let known = file(&format!(
        "h {ED_A}\n@revoked h,other {ED_A}\n@revoked elsewhere {ED_B}\n"
    ));
    let error = known.check("h", 22, &offered(ED_A)).unwrap_err();
    assert_eq!(
        error.to_string(),
        "host key of h is marked @revoked in /var/lib/tunneld/known_hosts line 2; refusing"
    );
    // A revocation whose host field does not name the host does not apply (as in OpenSSH).
    let known = file(&format!("h {ED_B}\n@revoked elsewhere {ED_B}\n"));
    assert_eq!(
        known.check("h", 22, &offered(ED_B)).unwrap(),
        Verdict::Known {
            file: HostsFile::Learned,
            line: 1
        }
    );
}

#[test]
fn plain_lines_and_ca_lines_do_not_cross() {
    // A CA line never trusts a plain key, even the CA key itself.
    let known = file(&format!("@cert-authority * {ED_CA}\n"));
    assert_eq!(
        known.check("h", 22, &offered(ED_CA)).unwrap(),
        Verdict::Unknown
    );
    // A plain line never trusts a certificate, even one of the key it has.
    let known = file(&format!("127.0.0.1 {ED_A}\n127.0.0.1 {ED_CA}\n"));
    let error = known
        .check_certificate("127.0.0.1", "127.0.0.1", &cert(CERT_HOST), IN_2030)
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "127.0.0.1 presented a host certificate (signed by {}) but no @cert-authority line \
             in /var/lib/tunneld/known_hosts matches it; refusing",
            fp(ED_CA)
        )
    );
}

#[test]
fn certificates() {
    let known = file(&format!(
        "@cert-authority *.example.com,127.0.0.1,[127.0.0.1]:2222 {ED_CA}\n"
    ));
    let check = |host: &str, port: u16, text: &str, now: u64| {
        known
            .check_certificate(&lookup_name(host, port), host, &cert(text), now)
            .map(|line| line.number)
    };
    assert_eq!(check("127.0.0.1", 22, CERT_HOST, IN_2030).unwrap(), 1);
    // Principals are matched against the host name without the port, as OpenSSH does.
    assert_eq!(check("127.0.0.1", 2222, CERT_HOST, IN_2030).unwrap(), 1);
    assert_eq!(check("db.example.com", 22, CERT_HOST, IN_2030).unwrap(), 1);
    assert_eq!(check("web.example.com", 22, CERT_ANY, IN_2030).unwrap(), 1);

    let problem = |result: Result<usize, HostKeyError>| match result {
        Err(HostKeyError::InvalidCertificate { problem, .. }) => problem,
        other => panic!("expected an invalid certificate, got {other:?}"),
    };
    assert_eq!(
        problem(check("web.example.com", 22, CERT_HOST, IN_2030)),
        CertificateProblem::WrongPrincipal {
            host: "web.example.com".to_owned(),
            principals: vec!["127.0.0.1".to_owned(), "db.example.com".to_owned()],
        }
    );
    assert_eq!(
        problem(check("127.0.0.1", 22, CERT_HOST, 2_208_988_800)),
        CertificateProblem::Expired {
            valid_before: 2_208_988_800
        }
    );
    assert_eq!(
        problem(check("127.0.0.1", 22, CERT_HOST, 1_577_836_799)),
        CertificateProblem::NotYetValid {
            valid_after: 1_577_836_800
        }
    );
    assert_eq!(
        problem(check("127.0.0.1", 22, CERT_USER, IN_2030)),
        CertificateProblem::NotHostCertificate
    );
    assert_eq!(
        problem(check("127.0.0.1", 22, CERT_CRITICAL, IN_2030)),
        CertificateProblem::CriticalOptions {
            names: vec!["force-command".to_owned()]
        }
    );

    // Flip one bit of the CA's signature (the last bytes of the blob).
    let mut bytes = cert(CERT_HOST).to_bytes().unwrap();
    if let Some(last) = bytes.last_mut() {
        *last ^= 1;
    }
    let forged = Certificate::from_bytes(&bytes).unwrap();
    let error = known
        .check_certificate("127.0.0.1", "127.0.0.1", &forged, IN_2030)
        .unwrap_err();
    assert!(matches!(
        &error,
        HostKeyError::InvalidCertificate {
            problem: CertificateProblem::BadSignature,
            ..
        }
    ));

    let expired = problem(check("127.0.0.1", 22, CERT_HOST, 2_300_000_000));
    assert_eq!(
        HostKeyError::InvalidCertificate {
            name: "127.0.0.1".to_owned(),
            path: PATH.into(),
            ca_line: 1,
            problem: expired,
        }
        .to_string(),
        "host certificate of 127.0.0.1 (CA at /var/lib/tunneld/known_hosts line 1) is not \
         valid: expired at 2040-01-01 00:00:00 UTC; refusing"
    );
}

#[test]
fn revoked_ca_or_revoked_certified_key() {
    let known = file(&format!("@cert-authority * {ED_CA}\n@revoked * {ED_CA}\n"));
    let error = known
        .check_certificate("h", "h", &cert(CERT_ANY), IN_2030)
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "the certificate authority {} that signed the host certificate of h is marked \
             @revoked in /var/lib/tunneld/known_hosts line 2; refusing",
            fp(ED_CA)
        )
    );
    let known = file(&format!("@cert-authority * {ED_CA}\n@revoked * {ED_A}\n"));
    assert!(matches!(
        known.check_certificate("h", "h", &cert(CERT_ANY), IN_2030),
        Err(HostKeyError::Revoked { line: 2, .. })
    ));
}

#[test]
fn known_algorithms_in_file_order() {
    let known = file(&format!(
        "h {EC_A}\n@revoked h {ED_B}\nh {ED_B}\nh,other {RSA_A}\n@cert-authority h {ED_CA}\nh {ED_A}\n"
    ));
    assert_eq!(
        known.known_algorithms("h", 22),
        vec![
            Algorithm::Ecdsa {
                curve: russh::keys::EcdsaCurve::NistP256
            },
            Algorithm::Rsa {
                hash: Some(HashAlg::Sha512)
            },
            Algorithm::Rsa {
                hash: Some(HashAlg::Sha256)
            },
            Algorithm::Rsa { hash: None },
            Algorithm::Ed25519,
        ]
    );
    assert!(known.known_algorithms("h", 2222).is_empty());
    assert!(known.has_cert_authority_for("h", 22));
    assert!(!known.has_cert_authority_for("other", 22));
}

#[test]
fn missing_file_is_empty_unreadable_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let known = KnownHosts::load(&dir.path().join("absent")).unwrap();
    assert_eq!(
        known.check("h", 22, &offered(ED_A)).unwrap(),
        Verdict::Unknown
    );
    let error = KnownHosts::load(dir.path()).unwrap_err();
    assert!(matches!(error, HostKeyError::Read { .. }));
    assert!(!error.is_permanent());
}

#[test]
fn strict_refuses_unknown_hosts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("known_hosts");
    let error = verify(
        &path,
        HostKeyPolicy::Strict,
        "127.0.0.1",
        2222,
        &offered(ED_A),
    )
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "host key of [127.0.0.1]:2222 is not in {} (policy strict)",
            path.display()
        )
    );
    assert!(error.is_permanent());
    assert!(!path.exists());
}

#[test]
fn accept_new_learns_once_then_knows() {
    use std::os::unix::fs::PermissionsExt;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state/tunneld/known_hosts");
    let policy = HostKeyPolicy::AcceptNew;
    assert_eq!(
        verify(&path, policy, "127.0.0.1", 2222, &offered(ED_A)).unwrap(),
        VerifiedBy::Learned { line: 1 }
    );
    assert_eq!(
        verify(&path, policy, "DB.example.com", 22, &offered(RSA_A)).unwrap(),
        VerifiedBy::Learned { line: 2 }
    );
    assert_eq!(
        verify(&path, policy, "127.0.0.1", 2222, &offered(ED_A)).unwrap(),
        VerifiedBy::KnownHost {
            file: HostsFile::Learned,
            line: 1
        }
    );
    // Learned keys are refused like any other when they change.
    assert!(matches!(
        verify(&path, policy, "127.0.0.1", 2222, &offered(ED_B)),
        Err(HostKeyError::Changed { line: 1, .. })
    ));
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        format!("[127.0.0.1]:2222 {ED_A}\ndb.example.com {RSA_A}\n")
    );
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(path.parent().unwrap()), 0o700);
    assert_eq!(mode(&path) & !0o022, 0o644 & !0o022); // whatever the umask removed
}

#[test]
fn learn_keeps_an_existing_files_mode_and_fixes_a_missing_newline() {
    use std::os::unix::fs::PermissionsExt;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("known_hosts");
    std::fs::write(&path, format!("# mine\nother {ED_B}")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(learn(&path, "h", 2200, &key(ED_A)).unwrap(), 3);
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        format!("# mine\nother {ED_B}\n[h]:2200 {ED_A}\n")
    );
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // Learning a key that is there already writes nothing and says where it is.
    assert_eq!(learn(&path, "h", 2200, &key(ED_A)).unwrap(), 3);
    // A different key that appeared meanwhile is refused, not appended.
    assert!(matches!(
        learn(&path, "h", 2200, &key(ED_B)),
        Err(HostKeyError::Changed { line: 3, .. })
    ));
    assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 3);
}

#[test]
fn certificates_are_never_learned() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("known_hosts");
    let presented = PublicKeyOrCertificate::Certificate(cert(CERT_HOST));
    assert!(matches!(
        verify(&path, HostKeyPolicy::AcceptNew, "127.0.0.1", 22, &presented),
        Err(HostKeyError::NoCertificateAuthority { .. })
    ));
    assert!(!path.exists());
}

#[test]
fn threads_learning_concurrently_write_each_host_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("known_hosts");
    let keys = [ED_A, ED_B, EC_A, RSA_A];
    std::thread::scope(|scope| {
        for thread in 0..16u16 {
            let path = &path;
            scope.spawn(move || {
                // Every host is learned by 4 threads at once; each thread learns 8 hosts.
                for host in 0..8u16 {
                    let port = 2000 + (thread % 4) * 8 + host;
                    let text = keys[usize::from(port % 4)];
                    learn(path, "127.0.0.1", port, &key(text)).unwrap();
                }
            });
        }
    });
    let content = std::fs::read_to_string(&path).unwrap();
    assert_eq!(content.lines().count(), 32, "{content}");
    let known = KnownHosts::load(&path).unwrap();
    assert_eq!(known.lines.len(), 32);
    for port in 2000..2032u16 {
        let text = keys[usize::from(port % 4)];
        assert!(matches!(
            known.check("127.0.0.1", port, &offered(text)).unwrap(),
            Verdict::Known { .. }
        ));
    }
}

/// A learned file and a global file with these contents (`None`: the file does not exist), in a
/// fresh directory.
struct Pair {
    dir: tempfile::TempDir,
    learned: PathBuf,
    global: PathBuf,
}

impl Pair {
    fn new(learned: Option<&str>, global: Option<&str>) -> Pair {
        let dir = tempfile::tempdir().unwrap();
        let pair = Pair {
            learned: dir.path().join("var/known_hosts"),
            global: dir.path().join("etc/known_hosts"),
            dir,
        };
        for (path, content) in [(&pair.learned, learned), (&pair.global, global)] {
            if let Some(content) = content {
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(path, content).unwrap();
            }
        }
        pair
    }

    fn load(&self) -> Result<KnownHosts, HostKeyError> {
        KnownHosts::load_with_global(&self.learned, &self.global)
    }
}

#[test]
fn a_key_pinned_only_in_the_global_file_is_known() {
    let pair = Pair::new(
        Some(&format!("other {ED_B}\n")),
        Some(&format!("# pinned\n[127.0.0.1]:2222 {ED_A}\n")),
    );
    let known = pair.load().unwrap();
    assert_eq!(
        known.check("127.0.0.1", 2222, &offered(ED_A)).unwrap(),
        Verdict::Known {
            file: HostsFile::Global,
            line: 2
        }
    );
    assert_eq!(known.path(), pair.learned);
    assert_eq!(known.global_path(), Some(pair.global.as_path()));
    assert_eq!(known.path_of(HostsFile::Global), pair.global);
    // Under strict too: nothing to learn, nothing written.
    assert_eq!(
        known
            .verify(HostKeyPolicy::Strict, "127.0.0.1", 2222, &offered(ED_A))
            .unwrap(),
        VerifiedBy::KnownHost {
            file: HostsFile::Global,
            line: 2
        }
    );
}

#[test]
fn a_changed_key_in_the_global_file_names_the_global_file_and_line() {
    let pair = Pair::new(Some(""), Some(&format!("# pinned\n\nh {ED_A}\n")));
    let error = pair
        .load()
        .unwrap()
        .check("h", 22, &offered(ED_B))
        .unwrap_err();
    assert!(error.is_permanent());
    assert_eq!(
        error.to_string(),
        format!(
            "HOST KEY CHANGED for h: {} line 3 has ssh-ed25519 {}, server offered {}; refusing",
            pair.global.display(),
            fp(ED_A),
            fp(ED_B)
        )
    );
    // A key of another type pinned in the global file: refused, naming it too.
    let pair = Pair::new(None, Some(&format!("h {RSA_A}\n")));
    let error = pair
        .load()
        .unwrap()
        .check("h", 22, &offered(ED_A))
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "{} has ssh-rsa for h at line 1 but the server offered ssh-ed25519; refusing",
            pair.global.display()
        )
    );
}

#[test]
fn a_match_in_either_file_wins_over_a_different_key_in_the_other() {
    // As OpenSSH's check_key_in_hostkeys over both files, and as within one file.
    let pair = Pair::new(Some(&format!("h {ED_A}\n")), Some(&format!("h {ED_B}\n")));
    let known = pair.load().unwrap();
    assert_eq!(
        known.check("h", 22, &offered(ED_A)).unwrap(),
        Verdict::Known {
            file: HostsFile::Learned,
            line: 1
        }
    );
    assert_eq!(
        known.check("h", 22, &offered(ED_B)).unwrap(),
        Verdict::Known {
            file: HostsFile::Global,
            line: 1
        }
    );
    // Neither: the learned file's line is named first, as it is read first.
    assert!(matches!(
        known.check("h", 22, &offered(EC_A)),
        Err(HostKeyError::OtherKeyType { path, line: 1, .. }) if path == pair.learned
    ));
}

#[test]
fn revoked_in_the_global_file_refuses_a_key_known_in_the_learned_file() {
    let pair = Pair::new(
        Some(&format!("h {ED_A}\n")),
        Some(&format!("# bad key\n@revoked * {ED_A}\n")),
    );
    let known = pair.load().unwrap();
    let error = known.check("h", 22, &offered(ED_A)).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "host key of h is marked @revoked in {} line 2; refusing",
            pair.global.display()
        )
    );
    // Not learned either.
    assert!(
        known
            .verify(HostKeyPolicy::AcceptNew, "h", 22, &offered(ED_A))
            .is_err()
    );
    assert!(known.known_algorithms("h", 22).is_empty());
    assert_eq!(
        std::fs::read_to_string(&pair.learned).unwrap(),
        format!("h {ED_A}\n")
    );
}

#[test]
fn accept_new_writes_nothing_for_a_host_pinned_in_the_global_file() {
    let pair = Pair::new(None, Some(&format!("[127.0.0.1]:2222 {ED_A}\n")));
    let verified = pair
        .load()
        .unwrap()
        .verify(HostKeyPolicy::AcceptNew, "127.0.0.1", 2222, &offered(ED_A))
        .unwrap();
    assert_eq!(
        verified,
        VerifiedBy::KnownHost {
            file: HostsFile::Global,
            line: 1
        }
    );
    assert!(!pair.learned.exists());
    // A different key for the pinned host is refused, not learned.
    assert!(matches!(
        pair.load().unwrap().verify(
            HostKeyPolicy::AcceptNew,
            "127.0.0.1",
            2222,
            &offered(ED_B)
        ),
        Err(HostKeyError::Changed { path, line: 1, .. }) if path == pair.global
    ));
    assert!(!pair.learned.exists());
}

#[test]
fn accept_new_learns_into_the_learned_file_and_never_touches_the_global_one() {
    let global_content = format!("# pinned by hand\nother.example.com {ED_B}\n");
    let pair = Pair::new(None, Some(&global_content));
    let before = std::fs::metadata(&pair.global).unwrap();
    let policy = HostKeyPolicy::AcceptNew;
    let verify = |key: &str| {
        pair.load()
            .unwrap()
            .verify(policy, "127.0.0.1", 2222, &offered(key))
    };
    assert_eq!(verify(ED_A).unwrap(), VerifiedBy::Learned { line: 1 });
    assert_eq!(
        verify(ED_A).unwrap(),
        VerifiedBy::KnownHost {
            file: HostsFile::Learned,
            line: 1
        }
    );
    assert_eq!(
        std::fs::read_to_string(&pair.learned).unwrap(),
        format!("[127.0.0.1]:2222 {ED_A}\n")
    );
    let after = std::fs::metadata(&pair.global).unwrap();
    assert_eq!(
        std::fs::read_to_string(&pair.global).unwrap(),
        global_content
    );
    assert_eq!(after.modified().unwrap(), before.modified().unwrap());
    assert_eq!(after.len(), before.len());
}

#[test]
fn strict_names_both_files_and_where_to_pin() {
    let pair = Pair::new(None, None);
    let known = pair.load().unwrap();
    let error = known
        .verify(HostKeyPolicy::Strict, "127.0.0.1", 2222, &offered(ED_A))
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "host key of [127.0.0.1]:2222 is not in {learned} or {global} (policy strict); pin \
             it in {global}",
            learned = pair.learned.display(),
            global = pair.global.display()
        )
    );
    assert!(!pair.learned.exists() && !pair.global.exists());
}

#[test]
fn a_missing_global_file_is_empty() {
    let pair = Pair::new(Some(&format!("h {ED_A}\n")), None);
    let known = pair.load().unwrap();
    assert_eq!(
        known.check("h", 22, &offered(ED_A)).unwrap(),
        Verdict::Known {
            file: HostsFile::Learned,
            line: 1
        }
    );
    assert_eq!(
        known.check("x", 22, &offered(ED_A)).unwrap(),
        Verdict::Unknown
    );
}

#[test]
fn an_unreadable_global_file_is_an_error_naming_it() {
    // A directory where the file should be: a read error even for root, which permissions are
    // not.
    let pair = Pair::new(Some(&format!("h {ED_A}\n")), None);
    std::fs::create_dir_all(&pair.global).unwrap();
    let error = pair.load().unwrap_err();
    assert!(
        matches!(&error, HostKeyError::Read { path, .. } if *path == pair.global),
        "{error:?}"
    );
    assert!(!error.is_permanent());
    assert!(
        error.to_string().starts_with(&format!(
            "cannot read known_hosts {}: ",
            pair.global.display()
        )),
        "{error}"
    );
    assert!(pair.dir.path().exists());
}

#[test]
fn both_files_order_algorithms_and_vouch_for_certificates() {
    let pair = Pair::new(
        Some(&format!("h {EC_A}\n")),
        Some(&format!("h {ED_A}\n@cert-authority 127.0.0.1 {ED_CA}\n")),
    );
    let known = pair.load().unwrap();
    assert_eq!(
        known.known_algorithms("h", 22),
        vec![
            Algorithm::Ecdsa {
                curve: russh::keys::EcdsaCurve::NistP256
            },
            Algorithm::Ed25519,
        ]
    );
    assert!(known.has_cert_authority_for("127.0.0.1", 22));
    assert!(!known.has_cert_authority_for("h", 22));
    let ca = known
        .check_certificate("127.0.0.1", "127.0.0.1", &cert(CERT_HOST), IN_2030)
        .unwrap();
    assert_eq!((ca.file, ca.number), (HostsFile::Global, 2));
    // Signed by a CA that neither file names: both are named.
    let pair = Pair::new(Some(""), Some(""));
    let error = pair
        .load()
        .unwrap()
        .check_certificate("127.0.0.1", "127.0.0.1", &cert(CERT_HOST), IN_2030)
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "127.0.0.1 presented a host certificate (signed by {}) but no @cert-authority line \
             in {} or {} matches it; refusing",
            fp(ED_CA),
            pair.learned.display(),
            pair.global.display()
        )
    );
}

#[test]
fn the_same_file_named_twice_is_read_once() {
    let pair = Pair::new(Some(&format!("h {ED_A}\n")), None);
    let known = KnownHosts::load_with_global(&pair.learned, &pair.learned).unwrap();
    assert_eq!(known.lines.len(), 1);
    assert_eq!(known.global_path(), None);
}
