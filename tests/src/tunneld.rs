//! The tunneld binary under test: built once per test process, run as a child whose output the
//! test can wait on.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::procfs::{kill_tree, signal_group, signal_pid};
use crate::util::wait_until;

/// The tunneld binary: `$TUNNELD_BIN` if set, else built (once per test process) with
/// `cargo build -p tunneld --bin tunneld` into the target dir and profile of the running test.
pub fn tunneld_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("TUNNELD_BIN") {
            return PathBuf::from(bin);
        }
        build_tunneld()
    })
    .clone()
}

fn build_tunneld() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root");
    // A test runs as <target>/<profile>/deps/<test>-<hash>: build into the same place.
    let exe = std::env::current_exe().expect("current_exe");
    let profile_dir = exe
        .parent()
        .filter(|deps| deps.file_name() == Some(OsStr::new("deps")))
        .and_then(Path::parent);
    let (target_dir, profile) = match profile_dir {
        Some(dir) => (
            dir.parent().expect("target dir").to_path_buf(),
            dir.file_name()
                .and_then(OsStr::to_str)
                .expect("profile dir name")
                .to_owned(),
        ),
        None => (
            std::env::var_os("CARGO_TARGET_DIR")
                .map_or_else(|| workspace.join("target"), PathBuf::from),
            "debug".to_owned(),
        ),
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(workspace)
        .args(["build", "--quiet", "-p", "tunneld", "--bin", "tunneld"])
        // The tests build tokio with `test-util` (paused-time tests; a dev-dependency). Built
        // with the same features, the binary reuses the test build's libraries instead of
        // compiling tokio, russh and every tunneld crate a second time. The feature only makes
        // pausing the clock possible; nothing in the binary pauses it.
        .args(["--features", "tokio/test-util"])
        .arg("--target-dir")
        .arg(&target_dir)
        .stdin(Stdio::null());
    without_test_package_env(&mut command);
    // The "debug" dir is the dev profile's; other profiles are named after their dir.
    if profile != "debug" {
        command.args(["--profile", &profile]);
    }
    let output = command.output().expect("run cargo build");
    assert!(
        output.status.success(),
        "cargo build -p tunneld failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let bin = target_dir.join(&profile).join("tunneld");
    assert!(
        bin.is_file(),
        "cargo build did not produce {}",
        bin.display()
    );
    bin
}

/// Removes from `command`'s environment what `cargo test` says about the test's own package,
/// for a command that runs cargo again: build scripts that watch these variables (ring's does)
/// would otherwise rebuild, and every crate after them, on each test run.
pub fn without_test_package_env(command: &mut Command) -> &mut Command {
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("CARGO_PKG_")
            || name.starts_with("CARGO_MANIFEST_")
            || matches!(
                &*name,
                "CARGO_CRATE_NAME" | "CARGO_BIN_NAME" | "CARGO_PRIMARY_PACKAGE" | "OUT_DIR"
            )
        {
            command.env_remove(&*name);
        }
    }
    command
}

/// Output lines of a child, appended by its reader threads.
#[derive(Debug, Default)]
struct LogBuffer {
    text: Mutex<String>,
    grew: Condvar,
}

impl LogBuffer {
    fn push_line(&self, line: &str) {
        let mut text = self.text.lock().unwrap();
        text.push_str(line);
        if !line.ends_with('\n') {
            text.push('\n');
        }
        self.grew.notify_all();
    }
}

/// A running tunneld (or any program, see [`TunneldProcess::spawn_program`]) in its own process
/// group, with stdout and stderr collected line by line into one buffer. Killed on drop.
#[derive(Debug)]
pub struct TunneldProcess {
    child: Child,
    status: Option<ExitStatus>,
    logs: Arc<LogBuffer>,
    /// The threads collecting stdout and stderr; joined once the process has exited, so that
    /// its last lines are in `logs` before `wait_exit` returns.
    readers: Vec<std::thread::JoinHandle<()>>,
    /// Its `$RUNTIME_DIRECTORY`, where `tunneld run` puts its control socket, unless the test
    /// gave one: tests run as root, and without it every daemon of a `tunneld.toml` would
    /// claim `/run/tunneld/tunneld.sock` (the second one refuses to start).
    runtime_dir: Option<tempfile::TempDir>,
}

impl TunneldProcess {
    /// Runs [`tunneld_bin`] with `args` and extra environment variables `env`.
    pub fn spawn(args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::spawn_program(&tunneld_bin(), args, env)
    }

    /// Runs `program` the same way.
    pub fn spawn_program(program: &Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        let runtime_dir = (!env.iter().any(|(name, _)| *name == "RUNTIME_DIRECTORY")).then(|| {
            tempfile::Builder::new()
                .prefix("tunneld-run-")
                .tempdir()
                .expect("create a runtime directory")
        });
        let mut command = Command::new(program);
        if let Some(dir) = &runtime_dir {
            command.env("RUNTIME_DIRECTORY", dir.path());
        }
        let mut child = command
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own group: a signal meant for it never hits the test, nor the reverse.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", program.display()));
        let logs = Arc::new(LogBuffer::default());
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let readers = vec![
            collect_lines(stdout, logs.clone()),
            collect_lines(stderr, logs.clone()),
        ];
        Self {
            child,
            readers,
            status: None,
            logs,
            runtime_dir,
        }
    }

    /// The `$RUNTIME_DIRECTORY` it was given by [`TunneldProcess::spawn_program`], if the test
    /// did not give one.
    pub fn runtime_dir(&self) -> Option<&Path> {
        self.runtime_dir.as_ref().map(tempfile::TempDir::path)
    }

    /// The pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything it printed so far, stdout and stderr interleaved by line as they arrived.
    pub fn logs(&self) -> String {
        self.logs.text.lock().unwrap().clone()
    }

    /// How many times `needle` occurs in the output so far.
    pub fn count_in_logs(&self, needle: &str) -> usize {
        self.logs.text.lock().unwrap().matches(needle).count()
    }

    /// Waits until the output contains `needle`; false after `timeout`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        self.wait_for_log_count(needle, 1, timeout)
    }

    /// Waits until the output contains `needle`; panics with the whole output after `timeout`.
    #[track_caller]
    pub fn expect_log(&self, needle: &str, timeout: Duration) {
        assert!(
            self.wait_for_log(needle, timeout),
            "tunneld did not log {needle:?} within {timeout:?}:\n{}",
            self.logs()
        );
    }

    /// Waits until `needle` occurs at least `count` times in the output; false after `timeout`.
    pub fn wait_for_log_count(&self, needle: &str, count: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut text = self.logs.text.lock().unwrap();
        loop {
            if text.matches(needle).count() >= count {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            text = self.logs.grew.wait_timeout(text, deadline - now).unwrap().0;
        }
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: Signal) {
        signal_pid(self.pid(), signal);
    }

    /// Waits for the process to exit; `None` if it still runs after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if self.status.is_none() {
            let child = &mut self.child;
            let mut status = None;
            wait_until(timeout, || {
                status = child.try_wait().ok().flatten();
                status.is_some()
            });
            self.status = status;
            if status.is_some() {
                // The pipes reach EOF once the process (and any child holding them) is gone.
                for reader in self.readers.drain(..) {
                    let _ = reader.join();
                }
            }
        }
        self.status
    }

    /// Whether it still runs.
    pub fn is_running(&mut self) -> bool {
        self.wait_exit(Duration::ZERO).is_none()
    }
}

/// Reads `source` line by line into `logs` on a thread of its own, until EOF.
fn collect_lines(
    source: impl Read + Send + 'static,
    logs: Arc<LogBuffer>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(source);
        let mut line = Vec::new();
        while matches!(reader.read_until(b'\n', &mut line), Ok(n) if n > 0) {
            logs.push_line(&String::from_utf8_lossy(&line));
            line.clear();
        }
    })
}

impl Drop for TunneldProcess {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = kill_tree(self.child.id());
            signal_group(self.child.id(), Signal::SIGKILL);
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "--- output of pid {} ---\n{}--- end of output ---",
                self.child.id(),
                self.logs()
            );
        }
    }
}
