//! Private keys made by the real `ssh-keygen`: every format tunneld should read, and every way a
//! key file can be unusable.

// A failed unwrap is a failed test; `allow-unwrap-in-tests` does not reach the helper functions
// of an integration test crate.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use russh::keys::Algorithm;
use tunneld_config::IdentityFile;
use tunneld_ssh::identity::{CheckOutcome, KeyError, check, load};
use tunneld_ssh::private_file::{PrivateFileError, PrivateFileProblem};

/// `ssh-keygen -q -N PASSPHRASE -C '' -f DIR/NAME ARGS...`; returns the private key's path.
fn keygen(dir: &Path, name: &str, passphrase: &str, args: &[&str]) -> PathBuf {
    let path = dir.join(name);
    let status = Command::new("ssh-keygen")
        .args(["-q", "-N", passphrase, "-C", "", "-f"])
        .arg(&path)
        .args(args)
        .status()
        .unwrap();
    assert!(status.success(), "ssh-keygen {args:?}");
    path
}

/// The SHA256 fingerprint as `ssh-keygen -l` prints it.
fn fingerprint(public: &Path) -> String {
    let output = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(public)
        .output()
        .unwrap();
    let text = String::from_utf8(output.stdout).unwrap();
    text.split_whitespace().nth(1).unwrap().to_owned()
}

fn file(path: &Path) -> IdentityFile {
    IdentityFile::Path(path.to_owned())
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn every_key_type_and_format_loads() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    for (name, args, algorithm) in [
        ("ed25519", &["-t", "ed25519"][..], "ssh-ed25519"),
        ("rsa", &["-t", "rsa", "-b", "2048"][..], "ssh-rsa"),
        ("ecdsa", &["-t", "ecdsa"][..], "ecdsa-sha2-nistp256"),
        (
            "ecdsa384",
            &["-t", "ecdsa", "-b", "384"][..],
            "ecdsa-sha2-nistp384",
        ),
        (
            "ecdsa521",
            &["-t", "ecdsa", "-b", "521"][..],
            "ecdsa-sha2-nistp521",
        ),
        // PEM: PKCS#1 for RSA, SEC1 for ECDSA; and PKCS#8.
        (
            "rsa_pem",
            &["-t", "rsa", "-b", "2048", "-m", "PEM"][..],
            "ssh-rsa",
        ),
        (
            "ecdsa_pem",
            &["-t", "ecdsa", "-m", "PEM"][..],
            "ecdsa-sha2-nistp256",
        ),
        (
            "rsa_pkcs8",
            &["-t", "rsa", "-b", "2048", "-m", "PKCS8"][..],
            "ssh-rsa",
        ),
        (
            "ecdsa_pkcs8",
            &["-t", "ecdsa", "-m", "PKCS8"][..],
            "ecdsa-sha2-nistp256",
        ),
    ] {
        let path = keygen(dir, name, "", args);
        let loaded = load(&file(&path), None).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(loaded.key.algorithm().as_str(), algorithm, "{name}");
        let expected = fingerprint(&dir.join(format!("{name}.pub")));
        assert_eq!(
            loaded
                .key
                .public_key()
                .fingerprint(Default::default())
                .to_string(),
            expected,
            "{name}"
        );
        assert_eq!(loaded.path, path);

        // Debug names the key without its material.
        let debug = format!("{loaded:?}");
        assert!(debug.contains(&expected), "{debug}");
        let text = std::fs::read_to_string(&path).unwrap();
        for line in text
            .lines()
            .filter(|l| !l.starts_with("-----") && l.len() > 16)
        {
            assert!(
                !debug.contains(&line[..16]),
                "{name}: Debug shows key material: {debug}"
            );
        }
        assert!(!debug.to_lowercase().contains("private"), "{debug}");
    }
}

#[test]
fn encrypted_keys_are_refused_with_advice() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    for (name, args) in [
        ("openssh", &["-t", "ed25519"][..]),
        ("rsa_pem", &["-t", "rsa", "-b", "2048", "-m", "PEM"][..]),
        ("ecdsa_pem", &["-t", "ecdsa", "-m", "PEM"][..]),
        ("pkcs8", &["-t", "ecdsa", "-m", "PKCS8"][..]),
    ] {
        let path = keygen(dir, name, "correct horse", args);
        let error = load(&file(&path), None).unwrap_err();
        assert!(
            matches!(error, KeyError::Encrypted { .. }),
            "{name}: {error}"
        );
        assert!(error.is_permanent());
        assert_eq!(
            error.to_string(),
            format!(
                "{} is encrypted with a passphrase; tunneld cannot prompt for it: use a key \
                 without a passphrase (readable only by the service user), or load it into an \
                 ssh-agent and set use_agent = true",
                path.display()
            )
        );
    }
}

#[test]
fn keys_others_can_read_or_write_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = keygen(dir.path(), "db", "", &["-t", "ed25519"]);
    for mode in [0o600, 0o400, 0o700] {
        chmod(&path, mode);
        assert!(load(&file(&path), None).is_ok(), "{mode:o}");
    }
    for (mode, word) in [
        (0o644, "readable"),
        (0o640, "readable"),
        (0o604, "readable"),
        (0o620, "writable"),
        (0o602, "writable"),
    ] {
        chmod(&path, mode);
        let error = load(&file(&path), None).unwrap_err();
        assert!(
            matches!(error, KeyError::File(PrivateFileError { problem: PrivateFileProblem::TooOpen(m), .. }) if m == mode),
            "{mode:o}"
        );
        assert_eq!(
            error.to_string(),
            format!(
                "{} is {word} by group/others; refusing to use it",
                path.display()
            )
        );
        assert!(error.is_permanent());
        assert!(check(&file(&path), None).is_err());
    }

    // Symlinks are followed: the target's mode is what counts.
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&path, &link).unwrap();
    chmod(&path, 0o644);
    assert!(matches!(
        load(&file(&link), None),
        Err(KeyError::File(PrivateFileError {
            problem: PrivateFileProblem::TooOpen(_),
            ..
        }))
    ));
    chmod(&path, 0o600);
    assert!(load(&file(&link), None).is_ok());
}

#[test]
fn missing_garbage_public_and_directories() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();

    let missing = dir.join("nope");
    let error = load(&file(&missing), None).unwrap_err();
    assert!(matches!(
        error,
        KeyError::File(PrivateFileError {
            problem: PrivateFileProblem::Missing,
            ..
        })
    ));
    assert_eq!(
        error.to_string(),
        format!("{} does not exist", missing.display())
    );
    let dangling = dir.join("dangling");
    std::os::unix::fs::symlink(&missing, &dangling).unwrap();
    assert!(matches!(
        load(&file(&dangling), None),
        Err(KeyError::File(PrivateFileError {
            problem: PrivateFileProblem::Missing,
            ..
        }))
    ));

    let write_private = |name: &str, content: &[u8]| {
        let path = dir.join(name);
        std::fs::write(&path, content).unwrap();
        chmod(&path, 0o600);
        path
    };
    let invalid_reason = |path: &Path| match load(&file(path), None) {
        Err(KeyError::Invalid { reason, .. }) => reason,
        other => panic!("{}: expected Invalid, got {other:?}", path.display()),
    };

    let garbage = write_private("garbage", b"hello, this is not a key\n");
    assert!(invalid_reason(&garbage).contains("no private key"));
    let binary = write_private("binary", &[0xff, 0x00, 0x13, 0x37]);
    assert!(invalid_reason(&binary).contains("not text"));
    let empty = write_private("empty", b"");
    assert!(invalid_reason(&empty).contains("no private key"));
    let truncated = {
        let key = keygen(dir, "whole", "", &["-t", "ed25519"]);
        let text = std::fs::read_to_string(key).unwrap();
        let cut: String = text.lines().take(3).collect::<Vec<_>>().join("\n");
        write_private(
            "truncated",
            format!("{cut}\n-----END OPENSSH PRIVATE KEY-----\n").as_bytes(),
        )
    };
    invalid_reason(&truncated);
    let corrupt = write_private(
        "corrupt",
        b"-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA!!!!\n-----END OPENSSH PRIVATE KEY-----\n",
    );
    invalid_reason(&corrupt);

    // The public half named by mistake is said to be that, whatever its mode: ssh-keygen writes
    // it 0644, and "readable by group/others" would be the wrong lead.
    let public = keygen(dir, "pub", "", &["-t", "ed25519"]).with_extension("pub");
    let expected = format!(
        "{} is not a usable private key: this is a public key; name the private key file (the \
         one without .pub)",
        public.display()
    );
    for mode in [0o644, 0o600, 0o664] {
        chmod(&public, mode);
        let error = load(&file(&public), None).unwrap_err();
        assert_eq!(error.to_string(), expected, "{mode:o}");
        assert!(error.is_permanent());
        assert_eq!(
            check(&file(&public), None).unwrap_err().to_string(),
            expected
        );
    }
    // A certificate is a public key too.
    let cert = dir.join("cert-cert.pub");
    std::fs::write(
        &cert,
        "ssh-ed25519-cert-v01@openssh.com AAAAIHNzaC1lZDI1NTE5 x\n",
    )
    .unwrap();
    chmod(&cert, 0o644);
    assert!(invalid_reason(&cert).contains("this is a public key"));
    // A private key that others can read is still refused for its mode, not read as public.
    let loose = keygen(dir, "loose", "", &["-t", "ed25519"]);
    chmod(&loose, 0o644);
    assert!(matches!(
        load(&file(&loose), None),
        Err(KeyError::File(PrivateFileError {
            problem: PrivateFileProblem::TooOpen(0o644),
            ..
        }))
    ));

    let subdir = dir.join("subdir");
    std::fs::create_dir(&subdir).unwrap();
    chmod(&subdir, 0o700);
    let error = load(&file(&subdir), None).unwrap_err();
    assert!(matches!(
        error,
        KeyError::File(PrivateFileError {
            problem: PrivateFileProblem::NotRegular,
            ..
        })
    ));
    assert!(error.to_string().contains("not a regular file"), "{error}");
}

#[test]
fn credentials_resolve_in_the_credentials_directory() {
    let dir = tempfile::tempdir().unwrap();
    let credentials = dir.path().join("credentials");
    std::fs::create_dir(&credentials).unwrap();
    keygen(&credentials, "office", "", &["-t", "ed25519"]);
    // systemd hands credentials over as 0400 files.
    chmod(&credentials.join("office"), 0o400);
    let id = IdentityFile::Credential("office".to_owned());

    let loaded = load(&id, Some(&credentials)).unwrap();
    assert_eq!(loaded.path, credentials.join("office"));
    assert_eq!(loaded.source, id);
    assert_eq!(loaded.key.algorithm(), Algorithm::Ed25519);
    assert!(matches!(
        check(&id, Some(&credentials)),
        Ok(CheckOutcome::Usable { .. })
    ));

    // Outside systemd: an error for run, a note for check.
    let error = load(&id, None).unwrap_err();
    assert_eq!(
        error.to_string(),
        "credential:office needs $CREDENTIALS_DIRECTORY (set by systemd for a unit with \
         LoadCredential=), which is not set"
    );
    assert!(
        matches!(check(&id, None), Ok(CheckOutcome::Unverifiable(reason)) if reason.contains("credential:office"))
    );

    // A credential that is not there.
    let absent = IdentityFile::Credential("absent".to_owned());
    assert!(matches!(
        load(&absent, Some(&credentials)),
        Err(KeyError::File(PrivateFileError {
            problem: PrivateFileProblem::Missing,
            ..
        }))
    ));
    assert!(check(&absent, Some(&credentials)).is_err());
}
