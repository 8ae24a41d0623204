//! A real systemd, booted as PID 1 of a container with systemd-nspawn, to test the unit files as
//! users run them (docs/testing.md, "Real systemd in a container").
//!
//! The container boots a separate rootfs built once by `tests/systemd/build-rootfs.sh` (never the
//! host's own `/`: its systemd-tmpfiles would wipe the host's `/tmp`), with `--volatile=overlay`
//! so that nothing it does outlives it, in a private network namespace (only its own loopback),
//! started from a mount namespace with fresh tmpfs on `/run` and `/tmp` so that nothing of the
//! host's is shared. The launcher is put in cgroups of its own before it runs nspawn: every
//! process of the container can then be found and killed, whatever happens to the test.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use tempfile::TempDir;

use crate::procfs::{descendants, signal_pid};

/// Where the rootfs and the per-run directories live: `$TUNNELD_TEST_CACHE`, by default
/// `/var/cache/tunneld-test` (it survives between CI runs; never under `/tmp`, which the
/// container's launcher replaces with an empty tmpfs).
pub fn cache_dir() -> PathBuf {
    std::env::var_os("TUNNELD_TEST_CACHE")
        .map_or_else(|| PathBuf::from("/var/cache/tunneld-test"), PathBuf::from)
}

/// The build script of the rootfs, in the source tree.
pub fn build_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/build-rootfs.sh")
}

/// Whether the systemd test can run here.
#[derive(Debug)]
pub enum Rootfs {
    /// The rootfs, complete, and the tools to boot it.
    Ready(PathBuf),
    /// Impossible here (not root, or systemd-nspawn cannot be installed), and why.
    Impossible(String),
}

/// Builds the rootfs if it is not there yet (about a minute, once) and returns it. Panics when the
/// build fails for any other reason than being impossible here.
pub fn ensure_rootfs() -> Rootfs {
    if !nix::unistd::Uid::effective().is_root() {
        return Rootfs::Impossible("not root: systemd-nspawn needs root".to_owned());
    }
    let started = Instant::now();
    let output = Command::new(build_script())
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", build_script().display()));
    match output.status.code() {
        Some(0) => {
            let path = String::from_utf8_lossy(&output.stdout).trim().to_owned();
            eprintln!(
                "nspawn: rootfs {path} ready after {:.1} s",
                started.elapsed().as_secs_f64()
            );
            Rootfs::Ready(PathBuf::from(path))
        }
        Some(3) => Rootfs::Impossible(format!(
            "{} says it cannot work here (see its message above)",
            build_script().display()
        )),
        _ => panic!(
            "{} failed ({}); its messages are above",
            build_script().display(),
            output.status
        ),
    }
}

/// Polls `probe` every `interval` until it returns `Some` (then that) or `timeout` has passed
/// (then `None`). The probe is always run at least once.
pub fn poll<T>(
    timeout: Duration,
    interval: Duration,
    mut probe: impl FnMut() -> Option<T>,
) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(interval);
    }
}

/// The directory of one container run, under [`cache_dir`]`/run`: `opt/` is bound read-only at
/// `/opt/tunneld` inside, `console.log` collects the container's console. Removed on drop.
#[derive(Debug)]
pub struct RunDir {
    dir: TempDir,
}

impl RunDir {
    /// A fresh run directory (named after this process, so that a later run can tell a leftover
    /// of a dead test from a live one).
    pub fn new() -> Self {
        let parent = cache_dir().join("run");
        fs::create_dir_all(&parent).unwrap_or_else(|e| panic!("create {}: {e}", parent.display()));
        let dir = tempfile::Builder::new()
            .prefix(&format!("{}-", std::process::id()))
            .tempdir_in(&parent)
            .unwrap_or_else(|e| panic!("create a run dir in {}: {e}", parent.display()));
        fs::create_dir(dir.path().join("opt")).expect("create opt/");
        Self { dir }
    }

    /// What the container sees as `/opt/tunneld`.
    pub fn opt(&self) -> PathBuf {
        self.dir.path().join("opt")
    }

    fn console(&self) -> PathBuf {
        self.dir.path().join("console.log")
    }
}

impl Default for RunDir {
    fn default() -> Self {
        Self::new()
    }
}

/// The cgroup hierarchies a container's processes are tracked in: the unified one alone on a
/// pure cgroup v2 host; else the named systemd one, the unified one of a hybrid setup, and the
/// pids controller (one flat list of every process).
fn hierarchies() -> Vec<PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    if root.join("cgroup.controllers").exists() {
        return vec![root.to_path_buf()];
    }
    ["systemd", "unified", "pids"]
        .iter()
        .map(|name| root.join(name))
        .filter(|dir| dir.join("cgroup.procs").exists())
        .collect()
}

const CGROUP_PREFIX: &str = "tunneld-nspawn-";

/// Every pid in `cgroup` and the cgroups below it.
fn cgroup_pids(cgroup: &Path) -> Vec<u32> {
    let mut pids = Vec::new();
    let mut dirs = vec![cgroup.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        if let Ok(procs) = fs::read_to_string(dir.join("cgroup.procs")) {
            pids.extend(
                procs
                    .lines()
                    .filter_map(|line| line.trim().parse::<u32>().ok()),
            );
        }
        if let Ok(entries) = fs::read_dir(&dir) {
            dirs.extend(
                entries
                    .flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path()),
            );
        }
    }
    pids
}

/// SIGKILLs every process in `cgroups` (and below) until they are all gone, then removes the
/// cgroups, deepest first. True if nothing was left.
fn kill_cgroups(cgroups: &[PathBuf], timeout: Duration) -> bool {
    let emptied = poll(timeout, Duration::from_millis(20), || {
        let mut alive = false;
        for cgroup in cgroups {
            // cgroup v2 (5.14+) kills a whole subtree at once; the pids are the fallback.
            let _ = fs::write(cgroup.join("cgroup.kill"), "1");
            for pid in cgroup_pids(cgroup) {
                alive = true;
                signal_pid(pid, Signal::SIGKILL);
            }
        }
        (!alive).then_some(())
    })
    .is_some();
    for cgroup in cgroups {
        remove_cgroup_tree(cgroup);
    }
    emptied
}

fn remove_cgroup_tree(cgroup: &Path) {
    if let Ok(entries) = fs::read_dir(cgroup) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup_tree(&entry.path());
            }
        }
    }
    // A cgroup is removed with rmdir (its files are not real files); empty ones only.
    let _ = fs::remove_dir(cgroup);
}

/// The pid a name like `tunneld-nspawn-PID-N` or `PID-xxxx` starts with.
fn owner_pid(name: &str) -> Option<u32> {
    name.split('-').next()?.parse().ok()
}

/// Removes what earlier runs left behind when their test process died without cleaning up
/// (killed by a timeout, say): their containers (by cgroup) and run directories. Only leftovers
/// of processes that no longer exist are touched.
pub fn clean_leftovers() {
    let dead = |pid: u32| pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists();
    for hierarchy in hierarchies() {
        let Ok(entries) = fs::read_dir(&hierarchy) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(pid) = name.strip_prefix(CGROUP_PREFIX).and_then(owner_pid)
                && dead(pid)
            {
                eprintln!(
                    "nspawn: removing the leftover cgroup {}",
                    entry.path().display()
                );
                kill_cgroups(&[entry.path()], Duration::from_secs(10));
            }
        }
    }
    if let Ok(entries) = fs::read_dir(cache_dir().join("run")) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if owner_pid(&name).is_some_and(dead) {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
    }
}

/// The last field of `NSpid:` in /proc/PID/status, if the process is in a nested pid namespace.
fn pid_in_namespace(pid: u32) -> Option<u32> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let fields: Vec<&str> = status
        .lines()
        .find_map(|line| line.strip_prefix("NSpid:"))?
        .split_whitespace()
        .collect();
    if fields.len() < 2 {
        return None;
    }
    fields.last()?.parse().ok()
}

/// A clean environment for the programs run on the host and inside.
fn clean_env(command: &mut Command) -> &mut Command {
    command
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("LANG", "C.UTF-8")
        .env("SYSTEMD_PAGER", "")
        .env("SYSTEMD_COLORS", "0")
}

/// A booted container: systemd as its PID 1. Powered off, and every process of it killed, on
/// drop.
#[derive(Debug)]
pub struct Container {
    launcher: Child,
    pid1: u32,
    cgroups: Vec<PathBuf>,
    run: RunDir,
    booted_in: Duration,
}

impl Container {
    /// Boots `rootfs` with `run.opt()` bound read-only at `/opt/tunneld`, and waits until systemd
    /// inside has finished booting (`running`, or `degraded`).
    pub fn boot(rootfs: &Path, run: RunDir) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let started = Instant::now();
        let name = format!(
            "{CGROUP_PREFIX}{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let hierarchies = hierarchies();
        assert!(
            !hierarchies.is_empty(),
            "no cgroup hierarchy in /sys/fs/cgroup"
        );
        let cgroups: Vec<PathBuf> = hierarchies.iter().map(|h| h.join(&name)).collect();
        for cgroup in &cgroups {
            fs::create_dir(cgroup)
                .unwrap_or_else(|e| panic!("create cgroup {}: {e}", cgroup.display()));
        }
        let console = File::create(run.console()).expect("create console.log");
        let console_err = console.try_clone().expect("dup console.log");
        // The launcher joins the cgroups, then in a mount namespace of its own (private, so that
        // nothing propagates back to the host) puts empty tmpfs on /run and /tmp, and becomes
        // systemd-nspawn: nothing of the host's /run or /tmp is visible to the container.
        let launcher_script = r#"for cg in $TUNNELD_NSPAWN_CGROUPS; do echo $$ > "$cg/cgroup.procs" || exit 97; done
exec unshare --mount --propagation private -- /bin/sh -c 'mount -t tmpfs -o mode=0755 tmpfs /run && mount -t tmpfs -o mode=1777 tmpfs /tmp && exec "$@"' launcher "$@""#;
        let mut command = Command::new("/bin/sh");
        clean_env(&mut command)
            .arg("-c")
            .arg(launcher_script)
            .arg("launcher")
            .arg("systemd-nspawn")
            .arg(format!("--directory={}", rootfs.display()))
            .args([
                "--boot",
                "--register=no",
                "--keep-unit",
                "--private-network",
                "--volatile=overlay",
                "--link-journal=no",
                "--resolv-conf=off",
                "--timezone=off",
                "--console=read-only",
                "--machine=tunneld-test",
            ])
            .arg(format!("--bind-ro={}:/opt/tunneld", run.opt().display()))
            .env(
                "TUNNELD_NSPAWN_CGROUPS",
                cgroups
                    .iter()
                    .map(|c| c.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" "),
            )
            .stdin(Stdio::null())
            .stdout(console)
            .stderr(console_err);
        let launcher = command.spawn().expect("spawn the systemd-nspawn launcher");
        let mut container = Self {
            pid1: 0,
            launcher,
            cgroups,
            run,
            booted_in: Duration::ZERO,
        };

        // PID 1: the descendant of systemd-nspawn that is pid 1 of its own namespace, once it
        // runs systemd (before, it is nspawn still setting up the container's root).
        let launcher_pid = container.launcher.id();
        let pid1 = poll(Duration::from_secs(30), Duration::from_millis(10), || {
            container.assert_launcher_runs("starting");
            descendants(launcher_pid).into_iter().find(|&pid| {
                pid_in_namespace(pid) == Some(1)
                    && fs::read_to_string(format!("/proc/{pid}/comm"))
                        .is_ok_and(|comm| comm.trim() == "systemd")
            })
        });
        container.pid1 = pid1.unwrap_or_else(|| {
            panic!(
                "no container PID 1 under systemd-nspawn after 30 s; console:\n{}",
                container.console()
            )
        });

        // Booted: `systemctl is-system-running` says running (or degraded, some unit failed).
        // Before systemd is up it fails to connect; --wait does the waiting after that.
        let state = poll(Duration::from_secs(60), Duration::from_millis(50), || {
            container.assert_launcher_runs("booting");
            let out = container.exec(
                "systemctl is-system-running --wait",
                Duration::from_secs(60),
            );
            let state = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            matches!(state.as_str(), "running" | "degraded").then_some(state)
        });
        let state = state.unwrap_or_else(|| {
            panic!(
                "systemd did not finish booting within 60 s; console:\n{}",
                container.console()
            )
        });
        if state == "degraded" {
            let failed = container.exec("systemctl --failed --no-legend", Duration::from_secs(30));
            eprintln!(
                "nspawn: booted degraded; failed units:\n{}",
                String::from_utf8_lossy(&failed.stdout)
            );
        }
        container.booted_in = started.elapsed();
        container
    }

    /// How long [`Container::boot`] took, from spawning nspawn to a booted system.
    pub fn booted_in(&self) -> Duration {
        self.booted_in
    }

    /// The container's PID 1 (systemd), as the host sees it.
    pub fn pid1(&self) -> u32 {
        self.pid1
    }

    /// What the container wrote on its console so far.
    pub fn console(&self) -> String {
        fs::read_to_string(self.run.console()).unwrap_or_default()
    }

    fn assert_launcher_runs(&mut self, doing: &str) {
        if let Ok(Some(status)) = self.launcher.try_wait() {
            panic!(
                "systemd-nspawn exited ({status}) while {doing}; console:\n{}",
                self.console()
            );
        }
    }

    /// Runs `script` with bash inside the container (in all its namespaces and its root, through
    /// nsenter), killed after `timeout`; returns its output whatever its status.
    pub fn exec(&self, script: &str, timeout: Duration) -> Output {
        let mut command = Command::new("timeout");
        clean_env(&mut command)
            .arg("--kill-after=5")
            .arg(format!("{}", timeout.as_secs().max(1)))
            .arg("nsenter")
            .arg(format!("--target={}", self.pid1))
            .args([
                "--mount",
                "--uts",
                "--ipc",
                "--net",
                "--pid",
                "--cgroup",
                "--root",
                "--wd",
                "--",
                "/bin/bash",
                "-c",
            ])
            .arg(script)
            .stdin(Stdio::null());
        command.output().expect("run timeout nsenter")
    }

    /// Runs `script` inside with a 90 s limit and returns its stdout; panics, with its output,
    /// if it fails.
    pub fn run(&self, script: &str) -> String {
        let output = self.exec(script, Duration::from_secs(90));
        assert!(
            output.status.success(),
            "inside the container, this failed ({}{}):\n{script}\n--- stdout ---\n{}--- stderr ---\n{}",
            output.status,
            if output.status.code() == Some(124) {
                ": timed out"
            } else {
                ""
            },
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// `systemctl show -p PROPERTY --value UNIT` inside.
    pub fn property(&self, unit: &str, property: &str) -> String {
        self.run(&format!("systemctl show -p {property} --value {unit}"))
            .trim()
            .to_owned()
    }

    /// Powers the container off from inside and waits up to `timeout` for systemd-nspawn to
    /// exit; then kills whatever is left of it. True if it stopped by itself, with nothing left.
    pub fn poweroff(&mut self, timeout: Duration) -> bool {
        if matches!(self.launcher.try_wait(), Ok(None)) {
            // Fails when systemd is gone before it answers; the exit of nspawn is what counts.
            let _ = self.exec("systemctl poweroff", Duration::from_secs(10));
        }
        let launcher = &mut self.launcher;
        let exited = poll(timeout, Duration::from_millis(20), || {
            launcher.try_wait().ok().flatten()
        });
        let left: Vec<u32> = self.cgroups.iter().flat_map(|c| cgroup_pids(c)).collect();
        let clean = exited.is_some() && left.is_empty();
        if !clean {
            eprintln!(
                "nspawn: after poweroff, nspawn {} and {} process(es) left: killing them",
                if exited.is_some() {
                    "exited"
                } else {
                    "still runs"
                },
                left.len()
            );
        }
        self.kill_all();
        clean
    }

    /// SIGKILLs every process of the container and its launcher, reaps the launcher and
    /// removes the cgroups.
    fn kill_all(&mut self) {
        signal_pid(self.launcher.id(), Signal::SIGKILL);
        let emptied = kill_cgroups(&self.cgroups, Duration::from_secs(10));
        let _ = self.launcher.wait();
        if !emptied {
            eprintln!(
                "nspawn: processes still in {:?} after SIGKILL for 10 s",
                self.cgroups
            );
        }
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let running = matches!(self.launcher.try_wait(), Ok(None));
        if std::thread::panicking() {
            if running {
                let journal = self.exec(
                    "journalctl -b --no-pager -n 150 -o short-monotonic",
                    Duration::from_secs(20),
                );
                eprintln!(
                    "--- journal of the container (last 150 lines) ---\n{}--- end of journal ---",
                    String::from_utf8_lossy(&journal.stdout)
                );
            }
            let console = self.console();
            let tail: Vec<&str> = console.lines().rev().take(60).collect();
            eprintln!(
                "--- console of the container (last 60 lines) ---\n{}\n--- end of console ---",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        if running {
            self.poweroff(Duration::from_secs(10));
        } else {
            self.kill_all();
        }
    }
}
