//! Fuzzes known_hosts parsing and lookups: `KnownHosts::parse`, then `known_algorithms`,
//! `has_cert_authority_for` and `check` for a host name and port.
//!
//! The input's first line is `HOST` or `HOST PORT` (port 22 when there is none or it does not
//! parse); the rest is the file. `check` is offered every key and certificate written in the
//! file, and one fixed key. Checked, besides "never panics":
//!
//! - lookups ignore case: the host name in upper or lower case, and the file with its host
//!   patterns in upper case, give the same answers;
//! - negation excludes: with `,!NAME` appended to every pattern list (NAME the lookup name, which
//!   a pattern matches literally) and hashed lines blanked, no line names the host, and every
//!   plain key is unknown;
//! - a line hashed as `ssh-keygen -H` hashes the lookup name (salted from the input) names that
//!   host in any case and no other port: its key is known (or revoked by the file).

#![no_main]

use std::path::Path;
use std::str::FromStr;

use libfuzzer_sys::fuzz_target;
use ring::hmac;
use russh::keys::ssh_key::Certificate;
use russh::keys::{Algorithm, PublicKey, PublicKeyOrCertificate};
use tunneld_ssh::known_hosts::{HostKeyError, KnownHosts, Verdict, lookup_name};

const PATH: &str = "/var/lib/tunneld/known_hosts";
const FIXED_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKgj+qW5RR2k/5eW5IrUc7JVII/K3bPaU6wvl2VbEPTp";
/// Keys offered at most, so that a file of many lines costs lines x keys, not lines squared.
const MAX_KEYS: usize = 8;

fuzz_target!(|data: &[u8]| {
    let (head, file) = match data.iter().position(|&b| b == b'\n') {
        Some(nl) => (&data[..nl], &data[nl + 1..]),
        None => (data, &[][..]),
    };
    let head = String::from_utf8_lossy(head);
    let (host, port) = match head.rsplit_once(' ') {
        Some((host, port)) => match port.parse::<u16>() {
            Ok(port) => (host, port),
            Err(_) => (&*head, 22),
        },
        None => (&*head, 22),
    };
    let path = Path::new(PATH);
    let known = KnownHosts::parse(path, file);
    let mut keys = offered_keys(file);
    keys.push(
        PublicKey::from_openssh(FIXED_KEY)
            .expect("a valid key")
            .into(),
    );

    let answers = answers(&known, host, port, &keys);
    assert_eq!(
        answers,
        self::answers(&known, &host.to_ascii_uppercase(), port, &keys),
        "the host name's case matters"
    );
    assert_eq!(
        answers,
        self::answers(&known, &host.to_ascii_lowercase(), port, &keys),
        "the host name's case matters"
    );
    // Hashed names are base64, where case matters: they stay as they are.
    let upper = rewrite(file, false, |hosts| {
        Some(match hosts.starts_with('|') {
            true => hosts.to_owned(),
            false => hosts.to_ascii_uppercase(),
        })
    });
    let upper = KnownHosts::parse(path, &upper);
    assert_eq!(
        answers,
        self::answers(&upper, host, port, &keys),
        "the patterns' case matters"
    );

    let name = lookup_name(host, port);
    // A name with a comma or whitespace cannot be written as one pattern.
    if !name.contains(',') && !name.chars().any(char::is_whitespace) {
        let negated = rewrite(file, true, |hosts| {
            (!hosts.starts_with('|')).then(|| format!("{hosts},!{name}"))
        });
        let negated = KnownHosts::parse(path, &negated);
        assert!(negated.known_algorithms(host, port).is_empty());
        assert!(!negated.has_cert_authority_for(host, port));
        for key in &keys {
            if let PublicKeyOrCertificate::PublicKey { .. } = key {
                assert_eq!(
                    negated.check(host, port, key).map_err(|e| e.to_string()),
                    Ok(Verdict::Unknown),
                    "a negated pattern did not exclude its line"
                );
            }
        }
    }

    check_hashed(file, host, port);
});

/// What the files say about `host:port`: its known algorithms, whether a CA vouches for it, and
/// the verdict on each key (errors as their messages, which name the file and line).
fn answers(
    known: &KnownHosts,
    host: &str,
    port: u16,
    keys: &[PublicKeyOrCertificate],
) -> (Vec<Algorithm>, bool, Vec<Result<Verdict, String>>) {
    let verdicts = keys
        .iter()
        .map(|key| {
            known
                .check(host, port, key)
                .map_err(|e: HostKeyError| e.to_string())
        })
        .collect();
    (
        known.known_algorithms(host, port),
        known.has_cert_authority_for(host, port),
        verdicts,
    )
}

/// The key (or certificate) field of each line that has one, as `KnownHosts` splits lines.
fn offered_keys(file: &[u8]) -> Vec<PublicKeyOrCertificate> {
    let mut keys = Vec::new();
    for line in file.split(|&b| b == b'\n') {
        let Some(fields) = fields(line) else { continue };
        let key_at = if fields[0].starts_with('@') { 2 } else { 1 };
        let Some(key) = fields.get(key_at..).map(|rest| rest.join(" ")) else {
            continue;
        };
        if let Ok(key) = PublicKey::from_openssh(&key) {
            keys.push(key.into());
        } else if let Ok(certificate) = Certificate::from_str(&key) {
            keys.push(PublicKeyOrCertificate::Certificate(certificate));
        }
        if keys.len() == MAX_KEYS {
            break;
        }
    }
    keys
}

/// A line's fields as `KnownHosts` reads them (trimmed, split on spaces and tabs); `None` for a
/// line it skips before looking at fields (not UTF-8, blank, a comment).
fn fields(line: &[u8]) -> Option<Vec<&str>> {
    let text = std::str::from_utf8(line).ok()?.trim();
    if text.is_empty() || text.starts_with('#') {
        return None;
    }
    Some(text.split_ascii_whitespace().collect())
}

/// The file with each line's host field replaced by `change(field)`, or the line blanked when
/// that is `None`. A line whose marker is not one OpenSSH has (where its host field is is then
/// unsure) is blanked when `blank_unsure`, else left as it is, as are blank lines and comments.
/// Line numbers stay as they were.
fn rewrite(file: &[u8], blank_unsure: bool, change: impl Fn(&str) -> Option<String>) -> Vec<u8> {
    let mut out = Vec::with_capacity(file.len() + 64);
    for (i, line) in file.split(|&b| b == b'\n').enumerate() {
        if i > 0 {
            out.push(b'\n');
        }
        let Some(fields) = fields(line) else {
            out.extend_from_slice(line);
            continue;
        };
        let at = match fields[0] {
            "@cert-authority" | "@revoked" => 1,
            marker if marker.starts_with('@') => {
                if !blank_unsure {
                    out.extend_from_slice(line);
                }
                continue;
            }
            _ => 0,
        };
        let Some(hosts) = fields.get(at).and_then(|hosts| change(hosts)) else {
            continue;
        };
        let fields: Vec<&str> = fields
            .iter()
            .enumerate()
            .map(|(i, field)| if i == at { hosts.as_str() } else { field })
            .collect();
        out.extend_from_slice(fields.join(" ").as_bytes());
    }
    out
}

/// A hashed line for `host:port`, after the file and alone.
fn check_hashed(file: &[u8], host: &str, port: u16) {
    let salt = match file.get(..20) {
        Some(salt) => salt,
        None => b"a salt of twenty b..",
    };
    let name = lookup_name(host, port);
    let tag = hmac::sign(
        &hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, salt),
        name.as_bytes(),
    );
    let line = format!("|1|{}|{} {FIXED_KEY}", base64(salt), base64(tag.as_ref()));
    let key: PublicKeyOrCertificate = PublicKey::from_openssh(FIXED_KEY).expect("valid").into();

    let mut with_file = file.to_vec();
    with_file.extend_from_slice(format!("\n{line}\n").as_bytes());
    let known = KnownHosts::parse(Path::new(PATH), &with_file);
    for host in [host.to_owned(), host.to_ascii_uppercase()] {
        match known.check(&host, port, &key) {
            Ok(Verdict::Known { .. }) | Err(HostKeyError::Revoked { .. }) => {}
            other => panic!("the hashed line for {name} did not name {host}: {other:?}"),
        }
    }

    let alone = KnownHosts::parse(Path::new(PATH), line.as_bytes());
    assert!(matches!(
        alone.check(host, port, &key),
        Ok(Verdict::Known { line: 1, .. })
    ));
    let other_port = if port == 22 { 2222 } else { 22 };
    assert_eq!(
        alone
            .check(host, other_port, &key)
            .map_err(|e| e.to_string()),
        Ok(Verdict::Unknown),
        "a hashed name matched another port"
    );
}

/// Standard base64 with padding, as known_hosts writes salts and hashes.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}
