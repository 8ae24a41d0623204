//! known_hosts against the real OpenSSH tools: names hashed by `ssh-keygen -H`, lookups compared
//! with `ssh-keygen -F`, host certificates signed by `ssh-keygen -s`, and accept-new learning
//! from several processes at once.

// A failed unwrap is a failed test; `allow-unwrap-in-tests` does not reach the helper functions
// of an integration test crate.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use russh::keys::ssh_key::Certificate;
use russh::keys::{PublicKey, PublicKeyOrCertificate};
use tunneld_ssh::known_hosts::{
    CertificateProblem, HostKeyError, HostsFile, KnownHosts, Verdict, learn, lookup_name,
};

fn ssh_keygen(args: &[&str]) -> String {
    let output = Command::new("ssh-keygen").args(args).output().unwrap();
    String::from_utf8(output.stdout).unwrap()
}

fn ssh_keygen_ok(args: &[&str]) {
    let status = Command::new("ssh-keygen")
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "ssh-keygen {args:?}");
}

/// A new key pair in `dir`; returns the public key's text (`type base64`).
fn new_key(dir: &Path, name: &str, kind: &str) -> String {
    let path = dir.join(name);
    ssh_keygen_ok(&[
        "-q",
        "-t",
        kind,
        "-N",
        "",
        "-C",
        "",
        "-f",
        path.to_str().unwrap(),
    ]);
    pub_text(&dir.join(format!("{name}.pub")))
}

fn pub_text(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap().trim().to_owned()
}

fn offered(text: &str) -> PublicKeyOrCertificate {
    PublicKey::from_openssh(text).unwrap().into()
}

#[test]
fn names_hashed_by_ssh_keygen_match() {
    let dir = tempfile::tempdir().unwrap();
    let a = new_key(dir.path(), "a", "ed25519");
    let b = new_key(dir.path(), "b", "ed25519");
    let c = new_key(dir.path(), "c", "ecdsa");
    let file = dir.path().join("known_hosts");
    std::fs::write(
        &file,
        format!("[127.0.0.1]:2222 {a}\nhost {b}\ndb.example.com {c}\n"),
    )
    .unwrap();
    ssh_keygen_ok(&["-H", "-f", file.to_str().unwrap()]);
    let hashed = std::fs::read_to_string(&file).unwrap();
    assert_eq!(
        hashed.lines().filter(|l| l.starts_with("|1|")).count(),
        3,
        "{hashed}"
    );

    let known = KnownHosts::load(&file).unwrap();
    assert_eq!(
        known.check("127.0.0.1", 2222, &offered(&a)).unwrap(),
        Verdict::Known {
            file: HostsFile::Learned,
            line: 1
        }
    );
    assert_eq!(
        known.check("host", 22, &offered(&b)).unwrap(),
        Verdict::Known {
            file: HostsFile::Learned,
            line: 2
        }
    );
    // ssh lowercases before hashing; so does the lookup.
    assert_eq!(
        known.check("DB.example.com", 22, &offered(&c)).unwrap(),
        Verdict::Known {
            file: HostsFile::Learned,
            line: 3
        }
    );
    assert_eq!(
        known.check("127.0.0.1", 22, &offered(&a)).unwrap(),
        Verdict::Unknown
    );
    assert_eq!(
        known.check("host", 2222, &offered(&b)).unwrap(),
        Verdict::Unknown
    );
    assert!(matches!(
        known.check("host", 22, &offered(&a)),
        Err(HostKeyError::Changed { line: 2, .. })
    ));
}

/// Which lines `ssh-keygen -F name` reports.
fn ssh_keygen_lines(file: &Path, name: &str) -> BTreeSet<usize> {
    ssh_keygen(&["-F", name, "-f", file.to_str().unwrap()])
        .lines()
        .filter_map(|line| {
            line.split_once("found: line ")?
                .1
                .split(' ')
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

#[test]
fn lookups_agree_with_ssh_keygen_f() {
    let dir = tempfile::tempdir().unwrap();
    let patterns = [
        "db.example.com",
        "*.example.com,!db.example.com",
        "[*.example.com]:2222",
        "[127.0.0.1]:2222",
        "127.0.0.?",
        "!10.0.0.1,10.0.0.*",
        "*",
        "[db.example.com]:*,!web.example.com",
        "DB.EXAMPLE.ORG",
        "HASHED",
    ];
    let mut content = String::new();
    let mut keys = Vec::new();
    for (index, pattern) in patterns.iter().enumerate() {
        // A key per line, so that a check tells which line matched.
        let key = new_key(dir.path(), &format!("k{index}"), "ed25519");
        if *pattern == "HASHED" {
            let plain = dir.path().join("plain");
            std::fs::write(&plain, format!("[hashed.example.net]:2200 {key}\n")).unwrap();
            ssh_keygen_ok(&["-H", "-f", plain.to_str().unwrap()]);
            content.push_str(&std::fs::read_to_string(&plain).unwrap());
        } else {
            content.push_str(&format!("{pattern}\t {key}\n"));
        }
        keys.push(key);
    }
    let file = dir.path().join("known_hosts");
    std::fs::write(&file, &content).unwrap();
    let known = KnownHosts::load(&file).unwrap();

    for (host, port) in [
        ("db.example.com", 22),
        ("web.example.com", 22),
        ("db.example.com", 2222),
        ("web.example.com", 2222),
        ("127.0.0.1", 2222),
        ("127.0.0.1", 22),
        ("127.0.0.12", 22),
        ("10.0.0.1", 22),
        ("10.0.0.2", 22),
        ("db.example.org", 22),
        ("hashed.example.net", 2200),
        ("hashed.example.net", 22),
        ("nothing.invalid", 22),
    ] {
        let name = lookup_name(host, port);
        let ours: BTreeSet<usize> = keys
            .iter()
            .enumerate()
            .filter(|(index, key)| {
                known.check(host, port, &offered(key)).ok()
                    == Some(Verdict::Known {
                        file: HostsFile::Learned,
                        line: index + 1,
                    })
            })
            .map(|(index, _)| index + 1)
            .collect();
        assert_eq!(ours, ssh_keygen_lines(&file, &name), "lines for {name}");
    }
}

/// Signs `host.pub` in `dir` with `ca` and returns the certificate.
fn certify(dir: &Path, ca: &str, extra: &[&str]) -> Certificate {
    let _ = std::fs::remove_file(dir.join("host-cert.pub"));
    let ca = dir.join(ca);
    let host = dir.join("host.pub");
    let mut args = vec!["-q", "-s", ca.to_str().unwrap(), "-h", "-I", "host"];
    args.extend_from_slice(extra);
    args.push(host.to_str().unwrap());
    ssh_keygen_ok(&args);
    Certificate::read_file(&dir.join("host-cert.pub")).unwrap()
}

fn known_hosts_with(dir: &Path, lines: &[String]) -> KnownHosts {
    let file = dir.join("known_hosts");
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    KnownHosts::load(&file).unwrap()
}

fn certificate_problem(result: Result<Verdict, HostKeyError>) -> CertificateProblem {
    match result {
        Err(HostKeyError::InvalidCertificate { problem, .. }) => problem,
        other => panic!("expected an invalid certificate, got {other:?}"),
    }
}

#[test]
fn host_certificates_signed_by_ssh_keygen() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    new_key(dir, "host", "ed25519");
    let ca_ed = new_key(dir, "ca_ed", "ed25519");
    let ca_rsa = new_key(dir, "ca_rsa", "rsa");
    let ca_ec = new_key(dir, "ca_ec", "ecdsa");
    let other_ca = new_key(dir, "other_ca", "ed25519");
    let known = known_hosts_with(
        dir,
        &[
            format!("@cert-authority [127.0.0.1]:2222 {ca_ed}"),
            format!("@cert-authority [127.0.0.1]:2222 {ca_rsa}"),
            format!("@cert-authority [127.0.0.1]:2222 {ca_ec}"),
        ],
    );
    let check = |cert: Certificate| {
        known.check(
            "127.0.0.1",
            2222,
            &PublicKeyOrCertificate::Certificate(cert),
        )
    };

    // Valid forever, signed by each kind of CA (RSA signs with rsa-sha2-512).
    for (line, ca) in [(1, "ca_ed"), (2, "ca_rsa"), (3, "ca_ec")] {
        let cert = certify(dir, ca, &["-n", "127.0.0.1"]);
        assert_eq!(
            check(cert).unwrap(),
            Verdict::CertificateTrusted {
                file: HostsFile::Learned,
                ca_line: line
            }
        );
    }
    // No principals: any host.
    assert_eq!(
        check(certify(dir, "ca_ed", &[])).unwrap(),
        Verdict::CertificateTrusted {
            file: HostsFile::Learned,
            ca_line: 1
        }
    );
    // Valid for a window that is over.
    assert_eq!(
        certificate_problem(check(certify(
            dir,
            "ca_ed",
            &["-n", "127.0.0.1", "-V", "20200101:20200102"]
        ))),
        CertificateProblem::Expired {
            valid_before: certify(dir, "ca_ed", &["-V", "20200101:20200102"]).valid_before()
        }
    );
    // Valid from next year.
    assert!(matches!(
        certificate_problem(check(certify(
            dir,
            "ca_ed",
            &["-n", "127.0.0.1", "-V", "+52w:+104w"]
        ))),
        CertificateProblem::NotYetValid { .. }
    ));
    // For another host.
    let error = check(certify(dir, "ca_ed", &["-n", "db.example.com"])).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "host certificate of [127.0.0.1]:2222 (CA at {} line 1) is not valid: its principals \
             (db.example.com) do not include 127.0.0.1; refusing",
            dir.join("known_hosts").display()
        )
    );
    // Signed by a CA that known_hosts does not name.
    let error = check(certify(dir, "other_ca", &["-n", "127.0.0.1"])).unwrap_err();
    assert!(
        matches!(error, HostKeyError::NoCertificateAuthority { .. }),
        "{error}"
    );
    assert!(error.is_permanent());
    // A CA line for another port does not vouch for this one.
    let elsewhere = known_hosts_with(dir, &[format!("@cert-authority 127.0.0.1 {ca_ed}")]);
    assert!(!elsewhere.has_cert_authority_for("127.0.0.1", 2222));
    assert!(matches!(
        elsewhere.check(
            "127.0.0.1",
            2222,
            &PublicKeyOrCertificate::Certificate(certify(dir, "ca_ed", &["-n", "127.0.0.1"]))
        ),
        Err(HostKeyError::NoCertificateAuthority { .. })
    ));
    // A revoked CA.
    let revoked = known_hosts_with(
        dir,
        &[
            format!("@cert-authority * {ca_ed}"),
            format!("@revoked * {ca_ed}"),
        ],
    );
    assert!(matches!(
        revoked.check(
            "127.0.0.1",
            2222,
            &PublicKeyOrCertificate::Certificate(certify(dir, "ca_ed", &["-n", "127.0.0.1"]))
        ),
        Err(HostKeyError::CertificateAuthorityRevoked { line: 2, .. })
    ));
    let _ = other_ca;
}

// ---- accept-new from several processes ----

const LEARN_FILE: &str = "TUNNELD_TEST_LEARN_FILE";
const LEARN_ROTATION: &str = "TUNNELD_TEST_LEARN_ROTATION";
const HOSTS: u16 = 24;
const KEYS: [&str; 3] = [
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKgj+qW5RR2k/5eW5IrUc7JVII/K3bPaU6wvl2VbEPTp",
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFEgeWSWIzVVStG+3XsXbe/9F79VsDI6NxXYegWBMa/x",
    "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBKrnVACPuW0pBH3JapK9vI0b4+yd00G1Azj3MZWBDjpiuvQbJJV/3hZfjkNc7tAXBVTrNQriG4JnZvRydSCOU1Q=",
];

fn key_for(port: u16) -> PublicKey {
    PublicKey::from_openssh(KEYS[usize::from(port % 3)]).unwrap()
}

/// Not a test on its own: the body of each child process of `processes_learning_concurrently`
/// (it does nothing unless that test set the environment).
#[test]
fn learn_child() {
    let (Some(file), Some(rotation)) = (
        std::env::var_os(LEARN_FILE),
        std::env::var_os(LEARN_ROTATION),
    ) else {
        return;
    };
    let rotation: u16 = rotation.to_str().unwrap().parse().unwrap();
    // Every child learns every host, each starting somewhere else, so they collide all the time.
    for index in 0..HOSTS {
        let port = 3000 + (index + rotation) % HOSTS;
        learn(Path::new(&file), "127.0.0.1", port, &key_for(port)).unwrap();
    }
}

#[test]
fn processes_learning_concurrently() {
    let dir = tempfile::tempdir().unwrap();
    let file: PathBuf = dir.path().join("shared/known_hosts");
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..4u16)
        .map(|child| {
            Command::new(&exe)
                .args(["learn_child", "--exact", "--test-threads=1", "--quiet"])
                .env(LEARN_FILE, &file)
                .env(LEARN_ROTATION, (child * 7).to_string())
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut child in children {
        assert!(child.wait().unwrap().success());
    }
    let content = std::fs::read_to_string(&file).unwrap();
    assert_eq!(content.lines().count(), usize::from(HOSTS), "{content}");
    let names: BTreeSet<&str> = content
        .lines()
        .filter_map(|l| l.split(' ').next())
        .collect();
    assert_eq!(
        names.len(),
        usize::from(HOSTS),
        "every host exactly once:\n{content}"
    );
    let known = KnownHosts::load(&file).unwrap();
    for port in 3000..3000 + HOSTS {
        assert!(matches!(
            known
                .check("127.0.0.1", port, &key_for(port).into())
                .unwrap(),
            Verdict::Known { .. }
        ));
    }
    // And OpenSSH reads the file the same way.
    assert_eq!(ssh_keygen_lines(&file, "[127.0.0.1]:3005").len(), 1);
}
