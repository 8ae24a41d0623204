//! The host key update (`update_host_keys`) beside other writers of the learned known_hosts:
//! another process that appends under the lock, and accept-new racing the rewrite. Nothing
//! written by either may be lost.

// A failed unwrap is a failed test; `allow-unwrap-in-tests` does not reach the helper functions
// outside `#[test]`s.
#![allow(clippy::unwrap_used)]

use std::fs::File;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use russh::keys::PublicKey;
use tunneld_ssh::known_hosts::{KnownHosts, learn};

const ED_A: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKgj+qW5RR2k/5eW5IrUc7JVII/K3bPaU6wvl2VbEPTp";
const ED_B: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFEgeWSWIzVVStG+3XsXbe/9F79VsDI6NxXYegWBMa/x";
const EC_OLD: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBKrnVACPuW0pBH3JapK9vI0b4+yd00G1Azj3MZWBDjpiuvQbJJV/3hZfjkNc7tAXBVTrNQriG4JnZvRydSCOU1Q=";
const OTHER_KEY: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQDCg2ZGdy/85kkn7m15Ykwjr9sO5qzZUE4pkqOC5/qkjbGAt1o1gveH/Wra6TbCdLyyjeZlTAZliQse/xcnWTvoynw3PAbaCvZGxnUoyjV+zqlUEgq+7zUeihnX0vomeBuS/e5AfRvr37X+C+0BWcQ6cWAeG48r/XtS6ObO+wKbNQ==";
const NAME: &str = "[127.0.0.1]:2222";

fn key(text: &str) -> PublicKey {
    PublicKey::from_openssh(text).unwrap()
}

fn line(text: &str) -> String {
    format!("{NAME} {text}\n")
}

/// The file before the server rotated: A, and the key it retires.
fn before(path: &Path) {
    std::fs::write(path, line(ED_A) + &line(EC_OLD)).unwrap();
}

/// What the server announces, what it proved, and the key it logged in with.
fn rotate(known: &KnownHosts) {
    let (a, b) = (key(ED_A), key(ED_B));
    let updated = known
        .update_host_keys("127.0.0.1", 2222, &a, &[a.clone(), b.clone()], &[b])
        .unwrap()
        .unwrap();
    assert_eq!((updated.added.len(), updated.removed.len()), (1, 1));
}

#[test]
fn a_writer_holding_the_lock_is_waited_for_and_its_line_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("known_hosts");
    before(&path);
    let known = KnownHosts::load(&path).unwrap();
    let other = format!("other.example {OTHER_KEY}");

    // Another process takes the lock and, holding it, appends a line of its own.
    let mut writer = Command::new("flock")
        .arg(&path)
        .args(["sh", "-c", "sleep 1; printf '%s\\n' \"$0\" >> \"$1\""])
        .arg(&other)
        .arg(&path)
        .stdin(Stdio::null())
        .spawn()
        .expect("run flock (util-linux)");
    let probe = File::open(&path).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while probe.try_lock().is_ok() {
        probe.unlock().unwrap();
        assert!(Instant::now() < deadline, "flock never took the lock");
        std::thread::sleep(Duration::from_millis(10));
    }
    rotate(&known);
    assert!(writer.wait().unwrap().success());
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        format!("{}{other}\n{}", line(ED_A), line(ED_B))
    );
}

#[test]
fn accept_new_racing_a_rewrite_never_loses_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let other = key(OTHER_KEY);
    // Both orders happen over the rounds: the learner first (the rewrite keeps its line), or
    // the rewrite first (the learner, woken holding the lock of the replaced file, follows the
    // path to the new one).
    for round in 0..20 {
        let path = dir.path().join(format!("known_hosts_{round}"));
        before(&path);
        let known = Arc::new(KnownHosts::load(&path).unwrap());
        let gate = File::open(&path).unwrap();
        gate.lock().unwrap();
        let rewrite = {
            let known = known.clone();
            std::thread::spawn(move || rotate(&known))
        };
        let learner = {
            let (path, other) = (path.clone(), other.clone());
            std::thread::spawn(move || learn(&path, "other.example", 22, &other).unwrap())
        };
        drop(gate);
        rewrite.join().unwrap();
        learner.join().unwrap();
        let content = std::fs::read_to_string(&path).unwrap();
        assert!(
            content.contains(&format!("other.example {OTHER_KEY}\n")),
            "round {round}: accept-new's line was lost: {content}"
        );
        assert!(content.contains(&line(ED_B)), "round {round}: {content}");
        assert!(!content.contains(EC_OLD), "round {round}: {content}");
    }
}
