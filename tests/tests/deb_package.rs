//! The Debian package as users get it: built by `packaging/build-deb.sh`, checked by lintian,
//! then installed with `dpkg -i` in a container booted with a real systemd (the harness of the
//! systemd test), enabled, upgraded *through its own tunnel*, removed and purged.
//!
//! Needs root; builds the release binary (several minutes on two cores, once per target dir)
//! and the container's rootfs (once, cached). Skipped, saying why, where that is impossible
//! (not root, no systemd-nspawn or lintian to be had), except in CI, where it must run.

// Helpers outside #[test] functions unwrap too: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use harness::nspawn::{self, Container, RunDir, poll};
use harness::service::{
    FORWARD, KEY, PROBE, SETUP, SSHD, UNIT, UP_TIMEOUT, assert_forward_works, assert_round_trip,
    build_deb, in_ci, rootfs_or_skip, ssh_through, wait_status,
};

/// `lintian` on the package: no error and no warning (the warnings that are right for tunneld
/// are overridden, each with its reason, in packaging/debian/lintian-overrides).
fn assert_lintian_clean(deb: &Path) {
    let output = Command::new("lintian")
        .args([
            "--fail-on",
            "error,warning",
            "--display-info",
            "--no-tag-display-limit",
        ])
        .arg(deb)
        .stdin(Stdio::null())
        .output()
        .expect("run lintian");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    eprintln!("deb: lintian says:\n{text}");
    assert!(
        output.status.success(),
        "lintian failed on {} ({}):\n{text}",
        deb.display(),
        output.status
    );
}

/// The file names' owner, group, mode and sha256 inside the container, one line each.
const FINGERPRINT: &str = "for f in /etc/tunneld/db.toml /etc/tunneld/known_hosts /etc/tunneld/keys/id_ed25519; do \
     printf '%s %s %s\\n' \"$(stat -c '%U:%G %a' \"$f\")\" \"$(sha256sum < \"$f\" | cut -d' ' -f1)\" \"$f\"; done";

/// Whether lintian can be had here (CI installs it; a developer may not have it).
fn lintian_available() -> bool {
    Command::new("lintian")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn debian_package_installs_upgrades_over_its_tunnel_and_purges() {
    let total = Instant::now();
    let Some(rootfs) =
        rootfs_or_skip("debian_package_installs_upgrades_over_its_tunnel_and_purges")
    else {
        return;
    };
    if !lintian_available() {
        assert!(!in_ci(), "CI must run lintian, but it is not installed");
        eprintln!(
            "SKIPPED: debian_package_...: lintian is not installed (apt-get install lintian)"
        );
        return;
    }

    // Two packages of the same build: the second, with a higher revision, is the upgrade.
    // cargo-deb replaces the other versions in target/debian: each is copied out at once.
    nspawn::clean_leftovers();
    let run = RunDir::new();
    let stage = |deb: PathBuf| {
        let staged = run.opt().join(deb.file_name().unwrap());
        fs::copy(&deb, &staged).unwrap();
        staged
    };
    let first = stage(build_deb(&["--revision", "1"]));
    assert_lintian_clean(&first);
    let second = stage(build_deb(&["--revision", "2", "--no-build"]));
    let name = |deb: &Path| {
        format!(
            "/opt/tunneld/{}",
            deb.file_name().unwrap().to_string_lossy()
        )
    };
    let (first_in, second_in) = (name(&first), name(&second));

    let c = Container::boot(&rootfs, run);
    let tunnel_ssh = ssh_through(FORWARD, KEY, "tunnel");

    // Install: the user, the directories, the units; no tunnel started, nothing enabled.
    let installed = c.run(&format!("dpkg -i {first_in} 2>&1"));
    eprintln!("deb: dpkg -i said:\n{installed}");
    let layout = c.run(
        "set -euo pipefail
id tunneld
stat -c '%n %U:%G %a' /etc/tunneld /etc/tunneld/keys /var/lib/tunneld
test -x /usr/bin/tunneld && tunneld --version
systemctl cat tunneld@db.service | grep -x 'ExecStart=/usr/bin/tunneld run --config /etc/tunneld/%i.toml'
systemctl cat tunneld.service | grep -x 'ExecStart=/usr/bin/tunneld run --config /etc/tunneld/tunneld.toml'
ls /usr/share/doc/tunneld/examples/*.toml | wc -l
echo enabled=$(systemctl is-enabled tunneld@db.service tunneld.service 2>&1 | sort -u | tr '\\n' ' ')
echo running=$(pgrep -x tunneld | wc -l)",
    );
    assert!(
        layout.contains("/etc/tunneld root:tunneld 750")
            && layout.contains("/etc/tunneld/keys root:tunneld 750")
            && layout.contains("/var/lib/tunneld tunneld:tunneld 750"),
        "the package's directories: {layout}"
    );
    assert!(
        layout.lines().any(|l| l == "enabled=disabled") && layout.lines().any(|l| l == "running=0"),
        "installing must enable and start nothing: {layout}"
    );

    // Configured as the README says, enabled: up, and a real ssh client's bytes go both ways.
    c.run(SSHD);
    c.run(SETUP);
    c.run(&format!("systemctl enable --now {UNIT}"));
    assert_eq!(c.property(UNIT, "ActiveState"), "active");
    assert_forward_works(&c, "after enable --now");
    assert_round_trip(&c, &tunnel_ssh, 4, "after enable --now");
    wait_status(&c, "1/1 tunnels up", UP_TIMEOUT, "tunnel up");
    let files_before = c.run(FINGERPRINT);
    let pid_before = c.property(UNIT, "MainPID");

    // Upgrade the way many Pi owners do: as root, in an SSH session that runs through the very
    // tunnel that the upgrade restarts. dpkg must finish before the restart cuts the session.
    let upgrade = c.exec(
        &format!(
            "{} 'dpkg -i {second_in} 2>&1; echo dpkg-exit=$?'",
            ssh_through(FORWARD, KEY, "root")
        ),
        Duration::from_secs(120),
    );
    let upgrade_out = String::from_utf8_lossy(&upgrade.stdout).into_owned();
    eprintln!(
        "deb: dpkg -i over the tunnel said ({}):\n{upgrade_out}{}",
        upgrade.status,
        String::from_utf8_lossy(&upgrade.stderr)
    );
    assert!(
        upgrade_out.contains("Setting up tunneld (0.1.0-2)"),
        "the upgrade over the tunnel did not get to configure the package: {upgrade_out}"
    );
    let state = c.run("dpkg-query -W -f='${Status} ${Version}' tunneld");
    assert_eq!(
        state.trim(),
        "install ok installed 0.1.0-2",
        "dpkg must have finished the upgrade, although it ran through the tunnel it restarts"
    );

    // The restart comes after dpkg, from the transient timer: a new process runs the new binary.
    let pid_after = poll(Duration::from_secs(60), PROBE, || {
        let pid = c.property(UNIT, "MainPID");
        (pid != pid_before && pid != "0" && c.property(UNIT, "ActiveState") == "active")
            .then_some(pid)
    })
    .unwrap_or_else(|| {
        panic!(
            "the upgrade did not restart {UNIT} within 60 s (MainPID still {pid_before}); journal:\n{}",
            c.run("journalctl --no-pager -n 80 -o short-monotonic")
        )
    });
    let exe = c.run(&format!("readlink /proc/{pid_after}/exe"));
    assert_eq!(
        exe.trim(),
        "/usr/bin/tunneld",
        "the restarted tunneld must run the installed binary, not a deleted one"
    );
    let restarted_by = c.run("journalctl --no-pager -u tunneld-upgrade-restart.service -o cat");
    assert!(
        restarted_by.contains("Restart tunneld after its package was upgraded"),
        "the restart must come from the upgrade's timer: {restarted_by}"
    );
    wait_status(&c, "1/1 tunnels up", UP_TIMEOUT, "after the upgrade");
    assert_round_trip(&c, &tunnel_ssh, 4, "after the upgrade");
    assert_eq!(
        c.run(FINGERPRINT),
        files_before,
        "the upgrade must leave the operator's files as they were"
    );

    // remove: the instance stops, the configuration stays.
    c.run("dpkg --remove tunneld");
    let removed = c.run(&format!(
        "echo active=$(systemctl is-active {UNIT} || true); echo running=$(pgrep -x tunneld | wc -l); \
         test ! -e /usr/bin/tunneld && echo binary-gone"
    ));
    assert!(
        removed.contains("active=inactive")
            && removed.contains("running=0")
            && removed.contains("binary-gone"),
        "dpkg --remove must stop the instance: {removed}"
    );
    assert_eq!(
        c.run(FINGERPRINT),
        files_before,
        "remove keeps the configuration"
    );

    // purge: the package's files and state go; what the operator wrote stays, byte for byte.
    c.run("dpkg --purge tunneld");
    let purged = c.run(
        "for f in /lib/systemd/system/tunneld@.service /lib/systemd/system/tunneld.service \
           /usr/lib/sysusers.d/tunneld.conf /usr/lib/tmpfiles.d/tunneld.conf /var/lib/tunneld \
           /usr/share/doc/tunneld /usr/lib/tunneld /etc/systemd/system/multi-user.target.wants/tunneld@db.service; do \
           if [ -e \"$f\" ] || [ -L \"$f\" ]; then echo \"left: $f\"; fi; done; \
         echo status=$(dpkg-query -W -f='${Status}' tunneld 2>&1 | head -n 1)",
    );
    assert!(
        !purged.contains("left:"),
        "purge must remove the package's files and state: {purged}"
    );
    assert_eq!(
        c.run(FINGERPRINT),
        files_before,
        "purge must keep what the operator wrote"
    );

    drop(c);
    eprintln!("deb: whole test {:.1} s", total.elapsed().as_secs_f64());
}
