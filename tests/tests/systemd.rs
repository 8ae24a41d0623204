//! tunneld under a real systemd, as users run it: a container booted with
//! systemd-nspawn (docs/testing.md, "Real systemd in a container") with OpenSSH's sshd inside, the
//! freshly built tunneld installed by `packaging/install.sh` with the unit files of `systemd/`,
//! then `systemctl enable --now tunneld@db`, reload, a stopped sshd, a frozen tunneld and the
//! journal.
//!
//! Needs root; the first run builds the container's rootfs (`tests/systemd/build-rootfs.sh`,
//! one to three minutes, cached in /var/cache/tunneld-test). Skipped, saying why, where that is
//! impossible (not root, no systemd-nspawn to be had), except in CI, where it must run.

// Helpers outside #[test] functions unwrap too: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use harness::nspawn::{self, Container, RunDir, poll};
use harness::service::{
    FORWARD, KEY, SETUP, SSHD, UNIT, UP_TIMEOUT, assert_forward_works, assert_round_trip, journal,
    rootfs_or_skip, ssh_through, wait_journal, wait_status,
};
use harness::tunneld_bin;

/// The forward of the second instance, tunneld@web.
const WEB: u16 = 15433;

/// Copies the regular files of `from` into `to` (created), permissions included.
fn copy_files(from: &Path, to: &Path, ext: Option<&str>) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() && ext.is_none_or(|ext| path.extension().is_some_and(|e| e == ext)) {
            fs::copy(&path, to.join(path.file_name().unwrap())).unwrap();
        }
    }
}

/// What the container sees as /opt/tunneld: the binary under test, and what install.sh installs
/// from the source tree (units, sysusers and tmpfiles snippets, README, docs, examples).
fn stage(opt: &Path) {
    let tree = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    fs::copy(tunneld_bin(), opt.join("tunneld")).unwrap();
    copy_files(&tree.join("systemd"), &opt.join("systemd"), None);
    copy_files(&tree.join("docs"), &opt.join("docs"), Some("md"));
    copy_files(&tree.join("examples"), &opt.join("examples"), Some("toml"));
    fs::create_dir_all(opt.join("packaging")).unwrap();
    fs::copy(
        tree.join("packaging/install.sh"),
        opt.join("packaging/install.sh"),
    )
    .unwrap();
    fs::copy(tree.join("README.md"), opt.join("README.md")).unwrap();
}

/// The records of `journalctl -o verbose`: each starts with an unindented line.
fn verbose_records(text: &str) -> Vec<Vec<&str>> {
    let mut records: Vec<Vec<&str>> = Vec::new();
    for line in text.lines() {
        if line.starts_with(char::is_whitespace) {
            if let Some(record) = records.last_mut() {
                record.push(line.trim());
            }
        } else {
            records.push(Vec::new());
        }
    }
    records
}

/// A systemd time span as `systemctl show` prints it ("30s", "1min 30s", "500ms", "0").
fn parse_timespan(text: &str) -> Option<Duration> {
    if text == "infinity" {
        return None;
    }
    let mut total = Duration::ZERO;
    for part in text.split_whitespace() {
        let split = part.find(|ch: char| !ch.is_ascii_digit() && ch != '.')?;
        let (number, unit) = part.split_at(split);
        let number: f64 = number.parse().ok()?;
        let seconds = match unit {
            "us" => number / 1e6,
            "ms" => number / 1e3,
            "s" => number,
            "min" => number * 60.0,
            "h" => number * 3600.0,
            _ => return None,
        };
        total += Duration::from_secs_f64(seconds);
    }
    Some(total)
}

#[test]
fn systemd_runs_tunneld_as_users_run_it() {
    let total = Instant::now();
    let Some(rootfs) = rootfs_or_skip("systemd_runs_tunneld_as_users_run_it") else {
        return;
    };
    let rootfs_ready = total.elapsed();
    nspawn::clean_leftovers();
    let run = RunDir::new();
    stage(&run.opt());

    let mut c = Container::boot(&rootfs, run);
    eprintln!(
        "systemd: booted in {:.2} s (PID 1 is {} on the host)",
        c.booted_in().as_secs_f64(),
        c.pid1()
    );
    let mut timings = vec![("boot", c.booted_in())];
    let mut phase = Instant::now();
    let mut lap = |name: &'static str, timings: &mut Vec<(&'static str, Duration)>| {
        timings.push((name, phase.elapsed()));
        phase = Instant::now();
    };

    // Installed as README says, with the units of this tree.
    let installed = c.run("/opt/tunneld/packaging/install.sh --binary /opt/tunneld/tunneld");
    assert!(installed.contains("installed."), "{installed}");
    c.run("test -x /usr/local/bin/tunneld && id tunneld && systemctl cat tunneld@db.service | grep -qx 'ExecStart=/usr/local/bin/tunneld run --config /etc/tunneld/%i.toml'");
    c.run(SSHD);
    c.run(SETUP);
    lap("install and set up", &mut timings);

    // enable --now: running, enabled, the forward works and systemd is told so.
    c.run(&format!("systemctl enable --now {UNIT}"));
    assert_eq!(c.property(UNIT, "ActiveState"), "active");
    assert_eq!(
        c.run(&format!("systemctl is-enabled {UNIT}")).trim(),
        "enabled"
    );
    assert_forward_works(&c, "after enable --now");
    assert_round_trip(
        &c,
        &ssh_through(FORWARD, KEY, "tunnel"),
        4,
        "after enable --now",
    );
    lap("enable --now until forwarding", &mut timings);
    let status = wait_status(&c, "1/1 tunnels up", UP_TIMEOUT, "tunnel up");
    eprintln!("systemd: StatusText={status:?} once up");

    // reload: same process, a connection opened before it still carries bytes after it.
    let pid = c.property(UNIT, "MainPID");
    let across = c.run(&format!(
        r#"set -euo pipefail
exec 3<>/dev/tcp/127.0.0.1/{FORWARD}
IFS= read -r -t 10 banner <&3
echo "before: $banner"
systemctl reload {UNIT}
# The sshd behind the forward answers a client's version string with its key exchange.
printf 'SSH-2.0-tunneld-test\r\n' >&3
echo "after: $(timeout 10 head -c 16 <&3 | wc -c) bytes"
"#
    ));
    assert!(across.contains("before: SSH-2.0-OpenSSH"), "{across}");
    assert!(
        across.contains("after: 16 bytes"),
        "a connection open across the reload stopped working:\n{across}"
    );
    assert_eq!(c.property(UNIT, "ActiveState"), "active");
    assert_eq!(
        c.property(UNIT, "MainPID"),
        pid,
        "reload must not restart tunneld"
    );
    assert_forward_works(&c, "after reload");
    wait_journal(
        &c,
        &format!("_PID={pid} -o cat"),
        "reload line from tunneld",
        |j| j.to_lowercase().contains("reload"),
    );
    lap("reload", &mut timings);

    // The control socket: `tunneld status` of db answers, and still does after another
    // instance sharing /run/tunneld (tunneld@web) stops.
    assert_eq!(
        c.run("stat -c '%a %U %G' /run/tunneld /run/tunneld/db.sock")
            .trim(),
        "750 tunneld tunneld\n660 tunneld tunneld"
    );
    let db_status = c.run("tunneld status --config /etc/tunneld/db.toml");
    assert!(db_status.starts_with("db up for "), "{db_status}");
    c.run(&format!(
        "set -euo pipefail
sed -e 's/tunnels.db/tunnels.web/' -e 's/15432:/{WEB}:/' /etc/tunneld/db.toml > /etc/tunneld/web.toml
chown root:tunneld /etc/tunneld/web.toml
chmod 0640 /etc/tunneld/web.toml
systemctl start tunneld@web
for i in $(seq 100); do tunneld status --config /etc/tunneld/web.toml >/dev/null && exit 0; sleep 0.2; done
tunneld status --config /etc/tunneld/web.toml"
    ));
    c.run("systemctl stop tunneld@web; test ! -e /run/tunneld/web.sock");
    let db_status = c.run("tunneld status --config /etc/tunneld/db.toml; echo \"exit $?\"");
    assert!(
        db_status.starts_with("db up for ") && db_status.ends_with("exit 0\n"),
        "status of db after tunneld@web stopped:\n{db_status}"
    );
    let refused = c.run(
        "runuser -u nobody -- tunneld status --config /etc/tunneld/db.toml 2>&1; echo \"exit $?\"",
    );
    assert!(refused.ends_with("exit 3\n"), "{refused}");
    lap("control socket", &mut timings);

    // sshd stopped (the listener and the tunnel's session): StatusText says the tunnel is down.
    c.run("systemctl stop ssh.service; pkill -KILL -u tunnel || true");
    let status = wait_status(
        &c,
        "0/1 tunnels up",
        Duration::from_secs(60),
        "sshd stopped",
    );
    assert!(
        status.contains("db"),
        "the status must name the tunnel: {status:?}"
    );
    eprintln!("systemd: StatusText={status:?} with sshd stopped");
    c.run("systemctl start ssh.service");
    wait_status(
        &c,
        "1/1 tunnels up",
        Duration::from_secs(60),
        "sshd started again",
    );
    assert_forward_works(&c, "after sshd came back");
    lap("sshd stopped and started", &mut timings);

    // A frozen tunneld is killed by the watchdog and restarted.
    let watchdog = c.property(UNIT, "WatchdogUSec");
    let watchdog = parse_timespan(&watchdog)
        .filter(|d| !d.is_zero())
        .unwrap_or_else(|| {
            panic!("{UNIT} has no watchdog (WatchdogUSec={watchdog:?}): a frozen tunneld would never be restarted")
        });
    let restarts: u32 = c.property(UNIT, "NRestarts").parse().unwrap();
    let pid = c.property(UNIT, "MainPID");
    c.run(&format!(
        "kill -STOP {pid}; for i in $(seq 100); do [[ $(ps -o stat= -p {pid} | tr -d ' ') == T* ]] && exit 0; sleep 0.05; done; exit 1"
    ));
    let frozen = Instant::now();
    // The watchdog fires within WatchdogSec, systemd aborts it (SIGABRT, then SIGKILL after
    // TimeoutAbortSec) and restarts it after RestartSec: bounded generously.
    let limit = watchdog * 2 + Duration::from_secs(60);
    let restarted = poll(limit, Duration::from_millis(500), || {
        let n: u32 = c.property(UNIT, "NRestarts").parse().ok()?;
        (n > restarts).then_some(n)
    });
    assert!(
        restarted.is_some(),
        "NRestarts still {restarts} {limit:?} after SIGSTOP (WatchdogSec {watchdog:?}); journal:\n{}",
        journal(&c, "-o short-monotonic")
    );
    eprintln!(
        "systemd: frozen tunneld restarted by the watchdog after {:.1} s (WatchdogSec {watchdog:?})",
        frozen.elapsed().as_secs_f64()
    );
    wait_journal(&c, "", "watchdog line from systemd", |j| {
        j.contains("Watchdog timeout")
    });
    assert_forward_works(&c, "after the watchdog restart");
    assert_ne!(c.property(UNIT, "MainPID"), pid);
    wait_status(
        &c,
        "1/1 tunnels up",
        UP_TIMEOUT,
        "after the watchdog restart",
    );
    lap("watchdog restart", &mut timings);

    // The journal has the tunnel's lines, and says which tunnel each is about.
    wait_journal(&c, "-o cat", "\"tunnel up\"", |j| j.contains("tunnel up"));
    wait_journal(&c, "-o verbose", "\"tunnel up\" record naming db", |j| {
        verbose_records(j).iter().any(|record| {
            let message = record
                .iter()
                .find_map(|field| field.strip_prefix("MESSAGE="))
                .unwrap_or_default();
            message.contains("tunnel up")
                && (message.contains("tunnel=db") || record.contains(&"TUNNEL=db"))
        })
    });

    assert!(
        c.poweroff(Duration::from_secs(30)),
        "the container did not power off cleanly"
    );
    lap("journal and poweroff", &mut timings);
    drop(c);

    eprintln!(
        "systemd: rootfs ready after {:.1} s; whole test {:.1} s:",
        rootfs_ready.as_secs_f64(),
        total.elapsed().as_secs_f64()
    );
    for (name, took) in timings {
        eprintln!("  {name:32} {:6.2} s", took.as_secs_f64());
    }
}
