//! tunneld as a systemd service inside a [`Container`]: what the systemd test and the Debian
//! package test share. The container's own sshd is the server, its `tunnel` account (made in the
//! rootfs) accepts the tunnel's key, and `tunneld@db` forwards a local port to that sshd.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::nspawn::{Container, Rootfs, ensure_rootfs, poll};
use crate::tunneld::without_test_package_env;

/// The instance under test: `/etc/tunneld/db.toml`.
pub const UNIT: &str = "tunneld@db";

/// The local forward's port inside the container; its target is the container's sshd itself.
pub const FORWARD: u16 = 15432;

/// Polling interval for conditions inside the container (each probe runs nsenter + systemctl).
pub const PROBE: Duration = Duration::from_millis(100);

/// Generous bounds: these machines are shared and noisy.
pub const UP_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether this runs in CI, where tests that need root and nspawn must run, not skip.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// The rootfs of the container tests, or `None` after saying why `test` is skipped: where a
/// container cannot be booted (not root, no systemd-nspawn to be had). In CI that is a failure.
pub fn rootfs_or_skip(test: &str) -> Option<PathBuf> {
    match ensure_rootfs() {
        Rootfs::Ready(path) => Some(path),
        Rootfs::Impossible(why) => {
            assert!(!in_ci(), "CI must run {test}, but: {why}");
            eprintln!("SKIPPED: {test}: {why}");
            None
        }
    }
}

/// Run inside first: the container's own sshd on its loopback, 127.0.0.1:22, with a fresh host
/// key and a verbose log.
pub const SSHD: &str = r#"set -euo pipefail
rm -f /etc/ssh/ssh_host_*
ssh-keygen -q -t ed25519 -N '' -C tunneld-test-host -f /etc/ssh/ssh_host_ed25519_key
cat > /etc/ssh/sshd_config.d/tunneld-test.conf <<'END'
ListenAddress 127.0.0.1:22
HostKey /etc/ssh/ssh_host_ed25519_key
AllowTcpForwarding yes
PermitRootLogin prohibit-password
LogLevel VERBOSE
END
sshd -t
systemctl restart ssh.service
"#;

/// Run inside after [`SSHD`], once tunneld is installed (any way): the tunnel's key where the
/// README says (/etc/tunneld/keys, owned by tunneld, mode 0600) and authorised for `tunnel` and
/// for root (so that a test can run commands as root through the forward, as an operator
/// upgrading over the tunnel does), the server's host key pinned in /etc/tunneld/known_hosts,
/// and /etc/tunneld/db.toml.
pub const SETUP: &str = r#"set -euo pipefail
ssh-keygen -q -t ed25519 -N '' -C tunneld@test -f /etc/tunneld/keys/id_ed25519
chown tunneld:tunneld /etc/tunneld/keys/id_ed25519 /etc/tunneld/keys/id_ed25519.pub
chmod 0600 /etc/tunneld/keys/id_ed25519
install -d -m 0700 -o tunnel -g tunnel /home/tunnel/.ssh
install -m 0600 -o tunnel -g tunnel /etc/tunneld/keys/id_ed25519.pub /home/tunnel/.ssh/authorized_keys
install -d -m 0700 /root/.ssh
install -m 0600 /etc/tunneld/keys/id_ed25519.pub /root/.ssh/authorized_keys

printf '127.0.0.1 %s\n' "$(cut -d' ' -f1,2 /etc/ssh/ssh_host_ed25519_key.pub)" > /etc/tunneld/known_hosts
chmod 0644 /etc/tunneld/known_hosts

cat > /etc/tunneld/db.toml <<'EOF'
[defaults]
user = "tunnel"
identity_files = ["/etc/tunneld/keys/id_ed25519"]
backoff_min = "100ms"
backoff_max = "2s"

[tunnels.db]
host = "127.0.0.1"
local = ["15432:127.0.0.1:22"]
EOF
chown root:tunneld /etc/tunneld/db.toml
chmod 0640 /etc/tunneld/db.toml
tunneld check --config /etc/tunneld/db.toml
"#;

/// The tunnel's key, as SETUP writes it: authorised for `tunnel` and for root.
pub const KEY: &str = "/etc/tunneld/keys/id_ed25519";

/// An `ssh` command line, to run inside the container as root, that logs in as `user` with
/// `key` to the container's sshd through the forward on `port`: a real client's bytes cross
/// tunneld both ways. It trusts only the host keys pinned in /etc/tunneld/known_hosts.
pub fn ssh_through(port: u16, key: &str, user: &str) -> String {
    format!(
        "ssh -i {key} -p {port} -o BatchMode=yes -o HostKeyAlias=127.0.0.1 \
         -o UserKnownHostsFile=/etc/tunneld/known_hosts -o GlobalKnownHostsFile=/dev/null \
         -o StrictHostKeyChecking=yes {user}@127.0.0.1"
    )
}

/// The first line a client reads through the forward ("" if none within 10 s).
fn read_through_forward(c: &Container) -> String {
    let out = c.exec(
        &format!(
            "exec 3<>/dev/tcp/127.0.0.1/{FORWARD} && IFS= read -r -t 10 line <&3 && printf '%s\\n' \"$line\""
        ),
        Duration::from_secs(20),
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Waits until a client gets the container's sshd banner through the forward.
pub fn assert_forward_works(c: &Container, when: &str) {
    let mut last = String::new();
    let ok = poll(UP_TIMEOUT, PROBE, || {
        last = read_through_forward(c);
        last.starts_with("SSH-2.0-OpenSSH").then_some(())
    });
    assert!(
        ok.is_some(),
        "{when}: no sshd banner through 127.0.0.1:{FORWARD} within {UP_TIMEOUT:?} (last read: {last:?}); \
         status: {:?}; journal:\n{}",
        c.property(UNIT, "StatusText"),
        journal(c, "-o short-monotonic")
    );
}

/// Sends `mib` MiB of random bytes with `ssh` (an [`ssh_through`] command line) to `cat` on the
/// container's sshd and back, and asserts that the same bytes came back.
pub fn assert_round_trip(c: &Container, ssh: &str, mib: u32, when: &str) {
    let out = c.run(&format!(
        r#"set -euo pipefail
head -c {mib}M /dev/urandom > /tmp/payload
sent=$(sha256sum < /tmp/payload | cut -d' ' -f1)
got=$({ssh} cat < /tmp/payload | sha256sum | cut -d' ' -f1)
echo "sent=$sent got=$got bytes=$(stat -c %s /tmp/payload)"
"#
    ));
    let fields: Vec<&str> = out.split_whitespace().collect();
    let sent = fields.iter().find_map(|f| f.strip_prefix("sent="));
    let got = fields.iter().find_map(|f| f.strip_prefix("got="));
    assert!(
        sent.is_some() && sent == got && out.contains(&format!("bytes={}", u64::from(mib) << 20)),
        "{when}: the {mib} MiB round trip ({ssh}) came back different: {out}"
    );
}

/// Runs `packaging/build-deb.sh ARGS` and returns the package it printed last.
pub fn build_deb(args: &[&str]) -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root");
    let started = Instant::now();
    let mut command = Command::new(workspace.join("packaging/build-deb.sh"));
    without_test_package_env(&mut command)
        .args(args)
        .current_dir(workspace)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit());
    let output = command.output().expect("run packaging/build-deb.sh");
    assert!(
        output.status.success(),
        "packaging/build-deb.sh {args:?} failed ({}); its messages are above",
        output.status
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let deb = PathBuf::from(stdout.lines().last().unwrap_or_default());
    assert!(
        deb.is_file() && deb.extension().is_some_and(|e| e == "deb"),
        "build-deb.sh's last line is not a package: {stdout:?}"
    );
    eprintln!(
        "deb: {} built in {:.1} s",
        deb.display(),
        started.elapsed().as_secs_f64()
    );
    deb
}

/// Waits until `systemctl show -p StatusText` of [`UNIT`] contains `want`, and returns it.
pub fn wait_status(c: &Container, want: &str, timeout: Duration, when: &str) -> String {
    let mut last = String::new();
    let found = poll(timeout, PROBE, || {
        last = c.property(UNIT, "StatusText");
        last.contains(want).then(|| last.clone())
    });
    found.unwrap_or_else(|| {
        panic!(
            "{when}: StatusText never said {want:?} within {timeout:?}; it says {last:?}\njournal:\n{}",
            journal(c, "-o short-monotonic")
        )
    })
}

/// `journalctl -u UNIT` inside, with `args`.
pub fn journal(c: &Container, args: &str) -> String {
    c.run(&format!("journalctl -u {UNIT} --no-pager --all {args}"))
}

/// Waits until the unit's journal satisfies `check`; the lines land a few ms late.
pub fn wait_journal(c: &Container, args: &str, what: &str, check: impl Fn(&str) -> bool) {
    let mut last = String::new();
    let ok = poll(Duration::from_secs(10), PROBE, || {
        last = journal(c, args);
        check(&last).then_some(())
    });
    assert!(
        ok.is_some(),
        "journalctl -u {UNIT} {args}: no {what} within 10 s:\n{last}"
    );
}
