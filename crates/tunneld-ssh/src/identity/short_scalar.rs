//! ECDSA keys whose private scalar OpenSSH wrote short.
//!
//! OpenSSH stores an ECDSA private scalar as an `mpint`, without leading zero bytes. So about
//! one `ssh-keygen -t ecdsa` key in 256 has a 31-byte scalar for P-256: 2 of 400 keys
//! generated here. ssh-key 0.7.0-rc.11, which russh uses to read keys, refuses any scalar
//! shorter than 32 bytes with "length invalid", although OpenSSH reads such a key. This module
//! rewrites the scalar of such a key to the curve's full width, which ssh-key accepts. It does
//! nothing to any other key.
//!
//! It reads only unencrypted keys in OpenSSH's own format (`openssh-key-v1`, as PROTOCOL.key
//! describes it); tunneld refuses encrypted keys before this point anyway. Remove this module
//! once ssh-key accepts short scalars.

use russh::keys::ssh_encoding::base64::{Base64, Encoding};
use russh::keys::ssh_encoding::{Decode, Encode};
use zeroize::Zeroizing;

const BEGIN: &str = "-----BEGIN OPENSSH PRIVATE KEY-----";
const END: &str = "-----END OPENSSH PRIVATE KEY-----";
const MAGIC: &[u8] = b"openssh-key-v1\0";

/// The key in `text` with its ECDSA scalar padded to full width, when it is an unencrypted
/// OpenSSH ECDSA key whose scalar is short; otherwise `None`.
pub(super) fn padded(text: &str) -> Option<Zeroizing<String>> {
    let body: Zeroizing<String> = Zeroizing::new(
        text.lines()
            .map(str::trim)
            .skip_while(|line| *line != BEGIN)
            .skip(1)
            .take_while(|line| *line != END)
            .collect(),
    );
    let blob = Zeroizing::new(Base64::decode_vec(&body).ok()?);
    let fixed = Zeroizing::new(rewrite(&blob)?);
    let encoded = Zeroizing::new(Base64::encode_string(&fixed));
    let mut out = Zeroizing::new(String::with_capacity(encoded.len() + 100));
    out.push_str(BEGIN);
    out.push('\n');
    // OpenSSH wraps at 70 columns; base64 is ASCII, so the chunks are whole characters.
    for line in encoded.as_bytes().chunks(70) {
        out.push_str(std::str::from_utf8(line).ok()?);
        out.push('\n');
    }
    out.push_str(END);
    out.push('\n');
    Some(out)
}

/// The `openssh-key-v1` blob with the scalar widened, or `None` when there is nothing to do.
fn rewrite(blob: &[u8]) -> Option<Vec<u8>> {
    let mut r = blob.strip_prefix(MAGIC)?;
    let cipher = String::decode(&mut r).ok()?;
    let kdf = String::decode(&mut r).ok()?;
    let kdf_options = Vec::<u8>::decode(&mut r).ok()?;
    let count = u32::decode(&mut r).ok()?;
    if cipher != "none" || kdf != "none" || count != 1 {
        return None;
    }
    let public = Vec::<u8>::decode(&mut r).ok()?;
    let private = Zeroizing::new(Vec::<u8>::decode(&mut r).ok()?);
    if !r.is_empty() {
        return None;
    }

    let mut p = private.as_slice();
    let check1 = u32::decode(&mut p).ok()?;
    let check2 = u32::decode(&mut p).ok()?;
    let algorithm = String::decode(&mut p).ok()?;
    let width = match algorithm.as_str() {
        "ecdsa-sha2-nistp256" => 32,
        "ecdsa-sha2-nistp384" => 48,
        "ecdsa-sha2-nistp521" => 66,
        _ => return None,
    };
    let curve = String::decode(&mut p).ok()?;
    let point = Vec::<u8>::decode(&mut p).ok()?;
    let scalar = Zeroizing::new(Vec::<u8>::decode(&mut p).ok()?);
    let comment = String::decode(&mut p).ok()?;
    // What is left is padding, which the rewritten section gets afresh.
    if scalar.is_empty() || scalar.len() >= width {
        return None;
    }
    let mut wide = Zeroizing::new(vec![0u8; width - scalar.len()]);
    wide.extend_from_slice(&scalar);

    let mut section = Zeroizing::new(Vec::new());
    check1.encode(&mut *section).ok()?;
    check2.encode(&mut *section).ok()?;
    algorithm.encode(&mut *section).ok()?;
    curve.encode(&mut *section).ok()?;
    point.encode(&mut *section).ok()?;
    wide.encode(&mut *section).ok()?;
    comment.encode(&mut *section).ok()?;
    // Padded with 1, 2, 3... to the cipher's block size, 8 for "none".
    let mut pad = 1u8;
    while section.len() % 8 != 0 {
        section.push(pad);
        pad += 1;
    }

    let mut out = MAGIC.to_vec();
    cipher.encode(&mut out).ok()?;
    kdf.encode(&mut out).ok()?;
    kdf_options.encode(&mut out).ok()?;
    count.encode(&mut out).ok()?;
    public.encode(&mut out).ok()?;
    section.encode(&mut out).ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use russh::keys::HashAlg;

    use super::*;

    /// A throwaway key from `ssh-keygen -t ecdsa` (P-256), one of the 2 in 400 whose scalar
    /// OpenSSH wrote in 31 bytes. `ssh-keygen -y` reads it.
    const SHORT: &str = "-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAaAAAABNlY2RzYS
1zaGEyLW5pc3RwMjU2AAAACG5pc3RwMjU2AAAAQQQU6UqffpzeASGbwNpGtoWiW2Ryie/g
Y7AjdCiJ+qRzQgXgukMn/whaMEDQA9/xUsovM8a9xUPj05Dc0UJWty/1AAAAoEpxVAxKcV
QMAAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBBTpSp9+nN4BIZvA
2ka2haJbZHKJ7+BjsCN0KIn6pHNCBeC6Qyf/CFowQNAD3/FSyi8zxr3FQ+PTkNzRQla3L/
UAAAAfCFgFgawUjtZbDHrMI7LeXSEkqKlc2FShpt1XC/nq/AAAAAdyb290QHZtAQI=
-----END OPENSSH PRIVATE KEY-----
";
    /// `ssh-keygen -l` of it.
    const FINGERPRINT: &str = "SHA256:W+V6C3Q9sYTWWMMgy/lzdVTLqGsBYzrGmPUt7RGYec4";

    #[test]
    fn a_short_scalar_is_widened_into_the_same_working_key() {
        // The reason for this module: when this starts to pass, ssh-key reads such keys itself.
        assert!(
            russh::keys::decode_secret_key(SHORT, None).is_err(),
            "ssh-key now reads short ECDSA scalars: remove short_scalar.rs"
        );
        let padded = padded(SHORT).expect("a short scalar");
        let key = russh::keys::decode_secret_key(&padded, None).expect("the widened key loads");
        assert_eq!(
            key.public_key().fingerprint(HashAlg::Sha256).to_string(),
            FINGERPRINT
        );
        assert_eq!(key.comment().as_str_lossy(), "root@vm");
        // The scalar belongs to the public key: what it signs, the public key verifies.
        let signed = key
            .sign("tunneld-test", HashAlg::Sha256, b"message")
            .expect("it signs");
        key.public_key()
            .verify("tunneld-test", b"message", &signed)
            .expect("and the public key verifies it");
    }

    #[test]
    fn other_keys_are_left_alone() {
        // Throwaway keys from ssh-keygen: ed25519, and P-256 with a full 32-byte scalar.
        let ed25519 = "-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW
QyNTUxOQAAACCn0yffng1DEzf16Fks2P80qlj0EyuXmwS4iD1dSzqbAAAAAJChqOIfoaji
HwAAAAtzc2gtZWQyNTUxOQAAACCn0yffng1DEzf16Fks2P80qlj0EyuXmwS4iD1dSzqbAA
AAAEC0yIEw04EoDysNvHQ8cEW9Kd0LSX4JzgK1Yhj0RB2eTqfTJ9+eDUMTN/XoWSzY/zSq
WPQTK5ebBLiIPV1LOpsAAAAAB3Jvb3RAdm0BAgMEBQY=
-----END OPENSSH PRIVATE KEY-----
";
        let full_ecdsa = "-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAaAAAABNlY2RzYS
1zaGEyLW5pc3RwMjU2AAAACG5pc3RwMjU2AAAAQQQ+VXgjKCwvEUBixeOoFXSqNcQHKPQP
tPmXGpkDm+E7vszI4nMgZ0WLI2w3s0j/FZ/ZmoCRU+TienlN80miF8iTAAAAoKJllPuiZZ
T7AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBD5VeCMoLC8RQGLF
46gVdKo1xAco9A+0+ZcamQOb4Tu+zMjicyBnRYsjbDezSP8Vn9magJFT5OJ6eU3zSaIXyJ
MAAAAgSkgLlcgRBujpBCflCyue31Nh/mXRYs1UZOd+jdkD5AIAAAAHcm9vdEB2bQE=
-----END OPENSSH PRIVATE KEY-----
";
        assert!(padded(ed25519).is_none());
        assert!(padded(full_ecdsa).is_none());
        assert!(russh::keys::decode_secret_key(full_ecdsa, None).is_ok());
        assert!(padded("not a key").is_none());
        assert!(
            padded("-----BEGIN OPENSSH PRIVATE KEY-----\n!!!\n-----END OPENSSH PRIVATE KEY-----\n")
                .is_none()
        );
    }
}
