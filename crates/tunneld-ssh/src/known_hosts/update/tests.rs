use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use russh::keys::PublicKey;
use russh::keys::ssh_key::public::KeyData;

use super::super::{HostsFile, KnownHosts};
use super::{Plan, Skipped, rewrite};

const ED_A: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKgj+qW5RR2k/5eW5IrUc7JVII/K3bPaU6wvl2VbEPTp";
const ED_B: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFEgeWSWIzVVStG+3XsXbe/9F79VsDI6NxXYegWBMa/x";
const EC_A: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBKrnVACPuW0pBH3JapK9vI0b4+yd00G1Azj3MZWBDjpiuvQbJJV/3hZfjkNc7tAXBVTrNQriG4JnZvRydSCOU1Q=";
const RSA_A: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQDCg2ZGdy/85kkn7m15Ykwjr9sO5qzZUE4pkqOC5/qkjbGAt1o1gveH/Wra6TbCdLyyjeZlTAZliQse/xcnWTvoynw3PAbaCvZGxnUoyjV+zqlUEgq+7zUeihnX0vomeBuS/e5AfRvr37X+C+0BWcQ6cWAeG48r/XtS6ObO+wKbNQ==";
const NAME: &str = "[127.0.0.1]:2222";
const PATH: &str = "/var/lib/tunneld/known_hosts";

fn data(text: &str) -> KeyData {
    PublicKey::from_openssh(text).unwrap().key_data().clone()
}

fn learned(content: &str) -> KnownHosts {
    KnownHosts::parse(Path::new(PATH), content.as_bytes())
}

/// The plan for `content` when the server logged in with `verified` and announced `announced`.
fn plan(content: &str, verified: &str, announced: &[&str]) -> Result<Plan, Skipped> {
    let announced: Vec<KeyData> = announced.iter().map(|key| data(key)).collect();
    learned(content).plan(content.as_bytes(), NAME, &data(verified), &announced)
}

fn skipped(content: &str, verified: &str, announced: &[&str]) -> String {
    plan(content, verified, announced).unwrap_err().0
}

#[test]
fn a_new_key_is_added_and_a_key_no_longer_offered_is_removed() {
    let content =
        format!("# pinned by hand\n{NAME} {ED_A}\nother.example {RSA_A}\n{NAME} {EC_A}\n");
    // Rotated: A stays, B is new, the ECDSA key is gone; the other host's line is not touched.
    let plan = plan(&content, ED_A, &[ED_A, ED_B]).unwrap();
    assert_eq!(plan.add, vec![data(ED_B)]);
    assert_eq!(plan.remove, vec![(4, data(EC_A))]);
}

#[test]
fn a_hashed_line_for_the_host_is_attributed_and_one_for_another_host_left_alone() {
    // `ssh-keygen -H` of "[127.0.0.1]:2222" and of "other.example".
    let ours = hashed(NAME);
    let theirs = hashed("other.example");
    let content = format!("{ours} {EC_A}\n{theirs} {RSA_A}\n{NAME} {ED_A}\n");
    let plan = plan(&content, ED_A, &[ED_A]).unwrap();
    assert_eq!(plan.remove, vec![(1, data(EC_A))]);
    assert!(plan.add.is_empty());
}

/// A hashed host field for `name`, as `ssh-keygen -H` writes it.
fn hashed(name: &str) -> String {
    use ring::hmac;
    let salt = [7u8; 20];
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &salt);
    let tag = hmac::sign(&key, name.as_bytes());
    format!("|1|{}|{}", base64(&salt), base64(tag.as_ref()))
}

fn base64(bytes: &[u8]) -> String {
    const TABLE: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(TABLE[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn nothing_to_do_is_an_empty_plan() {
    let content = format!("{NAME} {ED_A}\n");
    assert_eq!(plan(&content, ED_A, &[ED_A]).unwrap(), Plan::default());
}

#[test]
fn lines_managed_by_hand_stop_the_update() {
    for (line, why) in [
        (
            format!("@revoked {NAME} {EC_A}"),
            "an @revoked or @cert-authority line",
        ),
        (
            format!("@cert-authority {NAME} {EC_A}"),
            "an @revoked or @cert-authority line",
        ),
        (
            format!("[127.0.0.1]:* {EC_A}"),
            "through a pattern or a list of names",
        ),
        (
            format!("{NAME},db {EC_A}"),
            "through a pattern or a list of names",
        ),
    ] {
        let content = format!("{NAME} {ED_A}\n{line}\n");
        let reason = skipped(&content, ED_A, &[ED_A, ED_B]);
        assert!(
            reason.starts_with(&format!("{PATH}:2 ")),
            "{line}: {reason}"
        );
        assert!(reason.contains(why), "{line}: {reason}");
    }
}

#[test]
fn the_key_of_this_login_must_be_announced_and_still_be_in_the_file() {
    let content = format!("{NAME} {ED_A}\n");
    assert_eq!(
        skipped(&content, ED_A, &[ED_B]),
        "the server did not announce the key it logged in with"
    );
    // Removed from the file by someone else since the login.
    let content = format!("{NAME} {EC_A}\n");
    assert_eq!(
        skipped(&content, ED_A, &[ED_A, ED_B]),
        format!("the key this connection was verified with is no longer in {PATH}")
    );
    assert_eq!(
        skipped(&format!("{NAME} {ED_A}\n"), ED_A, &[ED_A, ED_A]),
        "the server announced the same key twice"
    );
}

#[test]
fn an_outgoing_key_listed_under_another_name_stops_the_update() {
    let content = format!("{NAME} {ED_A}\n{NAME} {EC_A}\ndb.example.com {EC_A}\n");
    assert_eq!(
        skipped(&content, ED_A, &[ED_A]),
        format!("{PATH}:3 has one of the keys of {NAME} under another name")
    );
}

#[test]
fn keys_revoked_or_pinned_in_the_global_file_are_not_added() {
    let content = format!("{NAME} {ED_A}\n");
    let mut known = learned(&content);
    known.global = Some("/etc/tunneld/known_hosts".into());
    let mut global = KnownHosts::parse(
        Path::new("/etc/tunneld/known_hosts"),
        format!("@revoked * {ED_B}\n{NAME} {EC_A}\n").as_bytes(),
    )
    .lines;
    for line in &mut global {
        line.file = HostsFile::Global;
    }
    known.lines.extend(global);
    let plan = known
        .plan(
            content.as_bytes(),
            NAME,
            &data(ED_A),
            &[data(ED_A), data(ED_B), data(EC_A)],
        )
        .unwrap();
    assert_eq!(plan, Plan::default());
}

#[test]
fn the_rewrite_keeps_every_other_byte() {
    let content = format!(
        "# comment\r\n\t{NAME}   {EC_A} old\nnot a key line\n{NAME} {ED_A}\nlast-no-newline"
    );
    let plan = Plan {
        add: vec![data(ED_B)],
        remove: vec![(2, data(EC_A))],
    };
    let (bytes, added) = rewrite(content.as_bytes(), NAME, &plan);
    assert_eq!(
        String::from_utf8(bytes).unwrap(),
        format!("# comment\r\nnot a key line\n{NAME} {ED_A}\nlast-no-newline\n{NAME} {ED_B}\n")
    );
    assert_eq!(added, vec![5]);
    // Only removals; a file that ends with its newline keeps exactly one.
    let plan = Plan {
        add: Vec::new(),
        remove: vec![(1, data(EC_A))],
    };
    let (bytes, added) = rewrite(
        format!("{NAME} {EC_A}\n{NAME} {ED_A}\n").as_bytes(),
        NAME,
        &plan,
    );
    assert_eq!(
        String::from_utf8(bytes).unwrap(),
        format!("{NAME} {ED_A}\n")
    );
    assert!(added.is_empty());
}

fn key(text: &str) -> PublicKey {
    PublicKey::from_openssh(text).unwrap()
}

#[test]
fn update_replaces_the_file_keeping_its_mode_and_a_symlink() {
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("real_known_hosts");
    let link = dir.path().join("known_hosts");
    std::fs::write(&real, format!("{NAME} {ED_A}\n{NAME} {EC_A}\n")).unwrap();
    std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o640)).unwrap();
    std::os::unix::fs::symlink(&real, &link).unwrap();

    let known = KnownHosts::load(&link).unwrap();
    let (a, b) = (key(ED_A), key(ED_B));
    let to_prove = known
        .host_keys_to_prove("127.0.0.1", 2222, &a, &[a.clone(), b.clone()])
        .unwrap();
    assert_eq!(to_prove, vec![b.clone()]);
    let updated = known
        .update_host_keys("127.0.0.1", 2222, &a, &[a.clone(), b.clone()], &to_prove)
        .unwrap()
        .unwrap();
    assert_eq!(
        updated.added.iter().map(|c| c.line).collect::<Vec<_>>(),
        [2]
    );
    assert_eq!(
        updated.removed.iter().map(|c| c.line).collect::<Vec<_>>(),
        [2]
    );
    assert_eq!(updated.removed[0].algorithm, "ecdsa-sha2-nistp256");
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(
        std::fs::read_to_string(&real).unwrap(),
        format!("{NAME} {ED_A}\n{NAME} {ED_B}\n")
    );
    let mode = std::fs::metadata(&real).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o640);
    // No temporary file is left behind.
    let mut names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names, ["known_hosts", "real_known_hosts"]);

    // Done: a second announcement of the same keys changes nothing.
    let known = KnownHosts::load(&link).unwrap();
    let nothing = Skipped("no key to add or remove".to_owned());
    let announced = [a.clone(), b.clone()];
    assert_eq!(
        known.host_keys_to_prove("127.0.0.1", 2222, &a, &announced),
        Err(nothing.clone())
    );
    let again = known
        .update_host_keys("127.0.0.1", 2222, &a, &announced, &[])
        .unwrap();
    assert_eq!(again, Err(nothing));
}

#[test]
fn a_key_that_was_not_proven_is_not_written() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("known_hosts");
    std::fs::write(&path, format!("{NAME} {ED_A}\n")).unwrap();
    let (a, b) = (key(ED_A), key(ED_B));
    let known = KnownHosts::load(&path).unwrap();
    let outcome = known
        .update_host_keys("127.0.0.1", 2222, &a, &[a.clone(), b], &[])
        .unwrap();
    assert!(outcome.is_err(), "{outcome:?}");
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        format!("{NAME} {ED_A}\n")
    );
}
