//! Which certificates a hop offers with which key, as `tunneld check` reports them: files made
//! by the real `ssh-keygen`, beside keys, named, in the credentials directory, and broken.

// A failed unwrap is a failed test; `allow-unwrap-in-tests` does not reach the helper functions
// of an integration test crate.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use tunneld_config::{Environment, Hop};
use tunneld_ssh::certificate::{CertificateReport, ReportLevel, check_hop};

/// An unencrypted ed25519 key at `dir/name`, mode 0600; returns its path.
fn key(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "", "-f"])
        .arg(&path)
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

/// Signs `key.pub` with the CA `ca` for the principal `tunnel`, valid for 30 days: writes and
/// returns `key-cert.pub`.
fn sign(ca: &Path, key: &Path, id: &str) -> PathBuf {
    let status = Command::new("ssh-keygen")
        .args(["-q", "-s"])
        .arg(ca)
        .args(["-I", id, "-n", "tunnel", "-V", "-5m:+30d"])
        .arg(key.with_file_name(format!(
            "{}.pub",
            key.file_name().unwrap().to_string_lossy()
        )))
        .status()
        .unwrap();
    assert!(status.success());
    cert_of(key)
}

fn cert_of(key: &Path) -> PathBuf {
    key.with_file_name(format!(
        "{}-cert.pub",
        key.file_name().unwrap().to_string_lossy()
    ))
}

/// The target hop of a one-tunnel file whose tunnel has `auth`.
fn hop(auth: &str) -> Hop {
    let text = format!(
        "[tunnels.t]\nhost = \"tunnel@db.example.com\"\n{auth}\nlocal = [\"5432:localhost:5432\"]\n"
    );
    let env = Environment {
        user: "runner".to_owned(),
    };
    let config = tunneld_config::parse(Path::new("/etc/tunneld/t.toml"), &text, &env).unwrap();
    config.tunnels.into_iter().next().unwrap().target
}

fn list(paths: &[&Path]) -> String {
    let quoted: Vec<String> = paths
        .iter()
        .map(|path| format!("\"{}\"", path.display()))
        .collect();
    format!("[{}]", quoted.join(", "))
}

fn levels(reports: &[CertificateReport]) -> Vec<ReportLevel> {
    reports.iter().map(|report| report.level).collect()
}

#[test]
fn beside_named_and_the_same_certificate_twice() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let ca = key(dir, "ca");
    let a = key(dir, "a");
    let b = key(dir, "b");
    let a_cert = sign(&ca, &a, "a-beside");
    // b's certificate, moved away from b: only certificate_files names it.
    let b_cert = dir.join("b.cert");
    std::fs::rename(sign(&ca, &b, "b-named"), &b_cert).unwrap();

    let hop = hop(&format!(
        "identity_files = {}\ncertificate_files = {}",
        list(&[&a, &b]),
        list(&[&b_cert, &a_cert])
    ));
    let reports = check_hop(&hop, None);
    // One note per certificate, in offering order; a-cert.pub, found and named, once.
    assert_eq!(levels(&reports), [ReportLevel::Note, ReportLevel::Note]);
    assert!(
        reports[0].message.starts_with(&format!(
            "{}: certificate \"a-beside\" serial 0, valid from ",
            a_cert.display()
        )),
        "{reports:?}"
    );
    assert!(
        reports[0].message.ends_with(&format!(
            ", principals: tunnel; offered with the key {}",
            a.display()
        )),
        "{reports:?}"
    );
    assert!(
        reports[1]
            .message
            .starts_with(&format!("{}: certificate \"b-named\"", b_cert.display())),
        "{reports:?}"
    );
    assert!(
        reports[1]
            .message
            .ends_with(&format!("offered with the key {}", b.display())),
        "{reports:?}"
    );
}

#[test]
fn certificates_that_cannot_be_used() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let ca = key(dir, "ca");
    let a = key(dir, "a");
    let b = key(dir, "b");
    // Beside a, but b's: skipped with a warning, a is offered alone.
    std::fs::rename(sign(&ca, &b, "b"), cert_of(&a)).unwrap();
    let b_fingerprint = fingerprint(&b);
    let reports = check_hop(&hop(&format!("identity_files = {}", list(&[&a]))), None);
    assert_eq!(levels(&reports), [ReportLevel::Warning]);
    assert_eq!(
        reports[0].message,
        format!(
            "{} certifies {b_fingerprint}, not the key {} beside it; it is not offered",
            cert_of(&a).display(),
            a.display()
        )
    );

    // Garbage beside a key is a warning; named, it fails the check.
    std::fs::write(cert_of(&a), "not a certificate\n").unwrap();
    let reports = check_hop(
        &hop(&format!(
            "identity_files = {}\ncertificate_files = {}",
            list(&[&a]),
            list(&[&cert_of(&a), &dir.join("missing-cert.pub")])
        )),
        None,
    );
    assert_eq!(
        levels(&reports),
        [
            ReportLevel::Warning,
            ReportLevel::Problem,
            ReportLevel::Problem
        ]
    );
    assert!(
        reports[2].message.starts_with(&format!(
            "cannot read certificate {}: No such file",
            dir.join("missing-cert.pub").display()
        )),
        "{reports:?}"
    );

    // A named certificate whose key no identity file holds: a problem without an agent, a note
    // with one (the agent may hold the key).
    let b_cert = sign(&ca, &b, "b");
    let auth = format!(
        "identity_files = {}\ncertificate_files = {}",
        list(&[&a]),
        list(&[&b_cert])
    );
    std::fs::remove_file(cert_of(&a)).unwrap();
    let reports = check_hop(&hop(&auth), None);
    assert_eq!(levels(&reports), [ReportLevel::Problem]);
    assert!(
        reports[0].message.starts_with(&format!(
            "{} certifies {b_fingerprint}, but no identity file holds that key; it is not offered (certificate \"b\"",
            b_cert.display()
        )),
        "{reports:?}"
    );
    let reports = check_hop(&hop(&format!("{auth}\nuse_agent = true")), None);
    assert_eq!(levels(&reports), [ReportLevel::Note]);
    assert!(
        reports[0].message.ends_with(&format!(
            "no identity file holds its key {b_fingerprint}; offered only if the agent does"
        )),
        "{reports:?}"
    );
}

#[test]
fn the_certificate_of_a_key_that_cannot_be_read_waits_for_the_agent() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let ca = key(dir, "ca");
    let a = key(dir, "a");
    sign(&ca, &a, "a");
    // A passphrase: tunneld cannot read the key, only an agent that holds it can sign.
    let status = Command::new("ssh-keygen")
        .args(["-q", "-p", "-N", "secret", "-P", "", "-f"])
        .arg(&a)
        .status()
        .unwrap();
    assert!(status.success());
    let auth = format!("identity_files = {}", list(&[&a]));
    // identity::check reports the key; without the agent the certificate is never offered.
    assert_eq!(check_hop(&hop(&auth), None), []);
    let reports = check_hop(&hop(&format!("{auth}\nuse_agent = true")), None);
    assert_eq!(levels(&reports), [ReportLevel::Note], "{reports:?}");
    assert!(
        reports[0].message.ends_with(&format!(
            "offered only if the agent holds its key {}",
            fingerprint(&a)
        )),
        "{reports:?}"
    );
}

#[test]
fn credentials_have_their_certificate_beside_them_in_the_credentials_directory() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let ca = key(dir, "ca");
    let office = key(dir, "office");
    let cert = sign(&ca, &office, "office");
    let hop = hop("identity_files = [\"credential:office\"]");
    let reports = check_hop(&hop, Some(dir));
    assert_eq!(levels(&reports), [ReportLevel::Note], "{reports:?}");
    assert!(
        reports[0]
            .message
            .starts_with(&format!("{}: certificate \"office\"", cert.display())),
        "{reports:?}"
    );
    // Outside the service there is no credentials directory: nothing to find, nothing to say
    // (identity::check notes the key).
    assert_eq!(check_hop(&hop, None), []);
    // A named credential outside the service is noted, not checked.
    let named = check_hop(
        &self::hop(&format!(
            "identity_files = {}\ncertificate_files = [\"credential:office-cert.pub\"]",
            list(&[&office])
        )),
        None,
    );
    assert_eq!(levels(&named), [ReportLevel::Note, ReportLevel::Note]);
    assert_eq!(
        named[1].message,
        "credential:office-cert.pub is read from $CREDENTIALS_DIRECTORY, which systemd sets \
         only for the service; not checked here"
    );
}

fn fingerprint(key: &Path) -> String {
    let output = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(key)
        .output()
        .unwrap();
    let text = String::from_utf8(output.stdout).unwrap();
    text.split_whitespace().nth(1).unwrap().to_owned()
}
