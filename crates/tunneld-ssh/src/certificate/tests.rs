use std::path::{Path, PathBuf};

use russh::keys::ssh_key::{Certificate, PublicKey};

use super::*;

// Made with ssh-keygen for key A (`ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJK9...`) and a CA:
// `ssh-keygen -s ca -I deploy -z 7 -n tunnel,admin -V 20200101000000Z:20400101000000Z a.pub`
// (valid 1577836800 <= t < 2208988800).
const DEPLOY: &str = "ssh-ed25519-cert-v01@openssh.com AAAAIHNzaC1lZDI1NTE5LWNlcnQtdjAxQG9wZW5zc2guY29tAAAAICZGtZa9yUjleRg0m/Pc6getpy0g5pOY1/LdoYTCGKN+AAAAIJK9JtCYWneObebQdJ5vUcQQ8ElijFkj2VoCTf0QFC49AAAAAAAAAAcAAAABAAAABmRlcGxveQAAABMAAAAGdHVubmVsAAAABWFkbWluAAAAAF4L4QAAAAAAg6p+gAAAAAAAAACCAAAAFXBlcm1pdC1YMTEtZm9yd2FyZGluZwAAAAAAAAAXcGVybWl0LWFnZW50LWZvcndhcmRpbmcAAAAAAAAAFnBlcm1pdC1wb3J0LWZvcndhcmRpbmcAAAAAAAAACnBlcm1pdC1wdHkAAAAAAAAADnBlcm1pdC11c2VyLXJjAAAAAAAAAAAAAAAzAAAAC3NzaC1lZDI1NTE5AAAAIHO1d6dPxEvuiSfe0EX1s/zCmyBxOg2ArwfcUP0avLKMAAAAUwAAAAtzc2gtZWQyNTUxOQAAAEBq7jDvsKU3o1PlkIIB2k+YypdXVQP160COmLq8C+j8aaoVr9DfzkRlMvjyt8xUqWUZHy7+1P0wkcUKY+7RU1IP a.pub";
// `ssh-keygen -s ca -I forever a.pub`: no principals, valid forever.
const FOREVER_CERT: &str = "ssh-ed25519-cert-v01@openssh.com AAAAIHNzaC1lZDI1NTE5LWNlcnQtdjAxQG9wZW5zc2guY29tAAAAINrN/PxF7ROElaI5GpuoY57TvLe5JxZ4MRmHDw+2BxRdAAAAIJK9JtCYWneObebQdJ5vUcQQ8ElijFkj2VoCTf0QFC49AAAAAAAAAAAAAAABAAAAB2ZvcmV2ZXIAAAAAAAAAAAAAAAD//////////wAAAAAAAACCAAAAFXBlcm1pdC1YMTEtZm9yd2FyZGluZwAAAAAAAAAXcGVybWl0LWFnZW50LWZvcndhcmRpbmcAAAAAAAAAFnBlcm1pdC1wb3J0LWZvcndhcmRpbmcAAAAAAAAACnBlcm1pdC1wdHkAAAAAAAAADnBlcm1pdC11c2VyLXJjAAAAAAAAAAAAAAAzAAAAC3NzaC1lZDI1NTE5AAAAIHO1d6dPxEvuiSfe0EX1s/zCmyBxOg2ArwfcUP0avLKMAAAAUwAAAAtzc2gtZWQyNTUxOQAAAEBpJVxa1ytWc5O4nYFOSdOREYDKnCtgEzRiBNLM4W6pg3dzfHjSyRCmHGCCZDHGXHe2pEmaRNWFTkax0D5Hr8MN a.pub";
// `ssh-keygen -s ca -h -I host -n db.example.com a.pub`: a host certificate.
const HOST_CERT: &str = "ssh-ed25519-cert-v01@openssh.com AAAAIHNzaC1lZDI1NTE5LWNlcnQtdjAxQG9wZW5zc2guY29tAAAAIE34BvbhF43K4o+gMOVH9C+4XUYWxZXXl4Q5yQw+66NIAAAAIJK9JtCYWneObebQdJ5vUcQQ8ElijFkj2VoCTf0QFC49AAAAAAAAAAAAAAACAAAABGhvc3QAAAASAAAADmRiLmV4YW1wbGUuY29tAAAAAAAAAAD//////////wAAAAAAAAAAAAAAAAAAADMAAAALc3NoLWVkMjU1MTkAAAAgc7V3p0/ES+6JJ97QRfWz/MKbIHE6DYCvB9xQ/Rq8sowAAABTAAAAC3NzaC1lZDI1NTE5AAAAQDfmOK/bhRmU+vjy2Fn8vP0L8JhU8fhQnmjHckzpi0CSZeq5ApX3tyD0GHE1O29QO+UuIf1hOQIL2fsD0c7FqwY= a.pub";
const KEY_A: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJK9JtCYWneObebQdJ5vUcQQ8ElijFkj2VoCTf0QFC49";
// `ssh-keygen -s ca -I other -n tunnel -V ...` for another key, B.
const OTHER: &str = "ssh-ed25519-cert-v01@openssh.com AAAAIHNzaC1lZDI1NTE5LWNlcnQtdjAxQG9wZW5zc2guY29tAAAAIG0z4GjqSSs3afPT454KhgId9rs3qUQZJIz4B5eMZ45cAAAAIGAf8UIKTRQtB+NjHHVxcLBP4WJJ7Z6dvPJVXKW9XwKQAAAAAAAAAAAAAAABAAAABW90aGVyAAAACgAAAAZ0dW5uZWwAAAAAXgvhAAAAAACDqn6AAAAAAAAAAIIAAAAVcGVybWl0LVgxMS1mb3J3YXJkaW5nAAAAAAAAABdwZXJtaXQtYWdlbnQtZm9yd2FyZGluZwAAAAAAAAAWcGVybWl0LXBvcnQtZm9yd2FyZGluZwAAAAAAAAAKcGVybWl0LXB0eQAAAAAAAAAOcGVybWl0LXVzZXItcmMAAAAAAAAAAAAAADMAAAALc3NoLWVkMjU1MTkAAAAgc7V3p0/ES+6JJ97QRfWz/MKbIHE6DYCvB9xQ/Rq8sowAAABTAAAAC3NzaC1lZDI1NTE5AAAAQM9XD8pJiKsvhHLlk6XEoh1hO0dSzwHRL5Xte/VvkY5prX4rEvs7z1gJRR+tLxI4qqyu+FjeTyo1P8BHCnrqKwQ= b.pub";

const STARTS: u64 = 1_577_836_800;
const ENDS: u64 = 2_208_988_800;
const IN_2030: u64 = 1_893_456_000;
const DAY: u64 = 86_400;

fn cert(text: &str) -> Certificate {
    Certificate::from_openssh(text).unwrap()
}

fn principals(names: &[&str]) -> Vec<String> {
    names.iter().map(|name| (*name).to_owned()).collect()
}

#[test]
fn judged_at_chosen_moments() {
    let deploy = cert(DEPLOY);
    assert_eq!(judge(&deploy, "tunnel", IN_2030), []);
    assert_eq!(judge(&deploy, "admin", STARTS), []);
    assert_eq!(
        judge(&deploy, "tunnel", STARTS - 1),
        [Finding::NotYetValid {
            valid_after: STARTS
        }]
    );
    // `valid before` is the first second it is no longer valid.
    assert_eq!(
        judge(&deploy, "tunnel", ENDS),
        [Finding::Expired { valid_before: ENDS }]
    );
    assert_eq!(
        judge(&deploy, "tunnel", ENDS - 1),
        [Finding::ExpiresSoon {
            valid_before: ENDS,
            left: 1
        }]
    );
    assert_eq!(
        judge(&deploy, "tunnel", ENDS - 7 * DAY),
        [Finding::ExpiresSoon {
            valid_before: ENDS,
            left: 7 * DAY
        }]
    );
    assert_eq!(judge(&deploy, "tunnel", ENDS - 7 * DAY - 1), []);
    // Principals are compared exactly, as sshd does.
    assert_eq!(
        judge(&deploy, "Tunnel", ENDS + 5),
        [
            Finding::Expired { valid_before: ENDS },
            Finding::NotForUser {
                user: "Tunnel".to_owned(),
                principals: principals(&["tunnel", "admin"]),
            }
        ]
    );
    // Forever never nears its end, and no principals is never the user's.
    let forever = cert(FOREVER_CERT);
    assert_eq!(
        judge(&forever, "tunnel", u64::MAX - 1),
        [Finding::NotForUser {
            user: "tunnel".to_owned(),
            principals: vec![],
        }]
    );
}

#[test]
fn findings_and_descriptions_in_words() {
    assert_eq!(
        describe(&cert(DEPLOY)),
        "certificate \"deploy\" serial 7, valid from 2020-01-01 00:00:00 UTC to \
         2040-01-01 00:00:00 UTC, principals: tunnel, admin"
    );
    assert_eq!(
        describe(&cert(FOREVER_CERT)),
        "certificate \"forever\" serial 0, valid forever, principals: (none)"
    );
    let said = |finding: Finding| finding.to_string();
    assert_eq!(
        said(Finding::Expired { valid_before: ENDS }),
        "expired at 2040-01-01 00:00:00 UTC by this machine's clock"
    );
    assert_eq!(
        said(Finding::NotYetValid {
            valid_after: STARTS
        }),
        "not valid until 2020-01-01 00:00:00 UTC by this machine's clock"
    );
    assert_eq!(
        said(Finding::ExpiresSoon {
            valid_before: ENDS,
            left: 3 * DAY + 7_200 + 59
        }),
        "expires at 2040-01-01 00:00:00 UTC, in 3days 2h"
    );
    assert_eq!(
        said(Finding::NotForUser {
            user: "root".to_owned(),
            principals: principals(&["tunnel", "admin"]),
        }),
        "its principals (tunnel, admin) do not include the user root; the server accepts it \
         only if its AuthorizedPrincipalsFile or AuthorizedPrincipalsCommand lists one of them \
         for root"
    );
    assert!(Finding::Expired { valid_before: 0 }.is_failure());
    assert!(
        !Finding::ExpiresSoon {
            valid_before: 0,
            left: 0
        }
        .is_failure()
    );
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn reading_certificate_files() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    assert_eq!(
        beside(Path::new("/etc/tunneld/keys/id_ed25519")),
        Path::new("/etc/tunneld/keys/id_ed25519-cert.pub")
    );
    // Most keys have no certificate: nothing beside is not an error.
    assert!(read_beside(&dir.join("id")).unwrap().is_none());

    write(dir, "id-cert.pub", &format!("{DEPLOY}\n"));
    let found = read_beside(&dir.join("id")).unwrap().unwrap();
    assert_eq!(found.origin, Origin::Beside);
    assert_eq!(found.path, dir.join("id-cert.pub"));
    let key_a = PublicKey::from_openssh(KEY_A).unwrap();
    assert!(found.certifies(key_a.key_data()));
    assert!(!cert(OTHER).public_key().eq(key_a.key_data()));
    assert_eq!(
        found.key_fingerprint(),
        key_a.fingerprint(Default::default()).to_string()
    );

    let error = |text: &str| {
        let path = write(dir, "x-cert.pub", text);
        read(&path, Origin::Named).unwrap_err().to_string()
    };
    let x = dir.join("x-cert.pub").display().to_string();
    assert_eq!(
        error(HOST_CERT),
        format!("{x} is a host certificate; only a user certificate can log in")
    );
    assert_eq!(
        error(KEY_A),
        format!(
            "{x} is not an OpenSSH certificate: ssh-ed25519 is a public key, not a certificate \
             (expected a -cert.pub written by ssh-keygen -s)"
        )
    );
    assert_eq!(
        error("-----BEGIN OPENSSH PRIVATE KEY-----\nb3Bl\n"),
        format!("{x} is not an OpenSSH certificate: this is a private key; name its -cert.pub")
    );
    assert_eq!(
        error("\n\n"),
        format!("{x} is not an OpenSSH certificate: the file is empty")
    );
    assert!(
        error(&DEPLOY.replace("AAAAIHNz", "AAAAIHNy"))
            .starts_with(&format!("{x} is not an OpenSSH certificate: "))
    );
    let missing = read(&dir.join("nope-cert.pub"), Origin::Named).unwrap_err();
    assert!(
        missing.to_string().starts_with(&format!(
            "cannot read certificate {}: ",
            dir.join("nope-cert.pub").display()
        )),
        "{missing}"
    );
}
