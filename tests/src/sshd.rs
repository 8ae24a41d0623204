//! A real OpenSSH sshd per test, on its own port, keys and config, killed with its sessions on
//! drop.

use std::fs::{self, OpenOptions};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::keys::KeyPair;
use crate::ports::free_port;
use crate::procfs::{
    descendants, has_exited, kill_tree, process_state, signal_group, signal_pid, stop_tree,
};
use crate::sshd_config::{current_user, ensure_privsep_dir, reads_banner, sshd_path, write_config};
use crate::util::{POLL_INTERVAL, TestDir, localhost, wait_until, write_file};

/// How long sshd may take to start listening, on a loaded machine.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);

/// How many fresh ports [`SshdBuilder::start`] tries when another process takes the one it
/// picked between picking and sshd's bind.
const PORT_ATTEMPTS: usize = 5;

/// Settings for an [`Sshd`]; start it with [`SshdBuilder::start`].
#[derive(Debug, Clone)]
#[must_use]
pub struct SshdBuilder {
    config_lines: Vec<String>,
    log_level: String,
    authorized_keys: Vec<String>,
}

impl SshdBuilder {
    /// Adds an sshd_config directive, such as `PermitOpen 127.0.0.1:9`. Directives go before the
    /// harness's common ones (sshd keeps the first value it reads), except that a `Match` line
    /// and everything added after it go at the end, since a Match block runs to the end of file.
    pub fn config_line(mut self, line: impl Into<String>) -> Self {
        self.config_lines.push(line.into());
        self
    }

    /// Sets `LogLevel` (default `VERBOSE`; `DEBUG1` logs each direct-tcpip request and target).
    pub fn log_level(mut self, level: &str) -> Self {
        level.clone_into(&mut self.log_level);
        self
    }

    /// Authorizes one more public key line (`authorized_keys` syntax, options allowed), besides
    /// the client key the harness generates.
    pub fn authorized_key(mut self, line: impl Into<String>) -> Self {
        self.authorized_keys.push(line.into());
        self
    }

    /// Generates the keys, writes and checks the config, starts sshd and waits until it sends
    /// its banner. Panics with sshd's own message if it cannot start.
    pub fn start(self) -> Sshd {
        ensure_privsep_dir();
        let dir = TestDir::new();
        let host_key = KeyPair::generate(dir.path(), "ssh_host_ed25519_key");
        let client_key = KeyPair::generate(dir.path(), "client_ed25519");
        let mut authorized = client_key.public_line() + "\n";
        for line in &self.authorized_keys {
            authorized.push_str(line);
            authorized.push('\n');
        }
        write_file(&dir.join("authorized_keys"), authorized, 0o600);
        let mut sshd = Sshd {
            config: dir.join("sshd_config"),
            log: dir.join("sshd.log"),
            dir,
            host_key,
            client_key,
            settings: self,
            port: 0,
            user: current_user(),
            child: None,
        };
        for attempt in 0..PORT_ATTEMPTS {
            sshd.port = free_port();
            sshd.write_config();
            if attempt == 0 {
                sshd.check_config();
            }
            if let Ok(child) = sshd.launch() {
                sshd.child = Some(child);
                return sshd;
            }
        }
        panic!(
            "sshd found no free port in {PORT_ATTEMPTS} attempts:\n{}",
            sshd.log()
        );
    }
}

/// A running `sshd -D -e` listening on 127.0.0.1, with its temp dir (host key, client key,
/// authorized_keys, config, log).
#[derive(Debug)]
pub struct Sshd {
    dir: TestDir,
    host_key: KeyPair,
    client_key: KeyPair,
    config: PathBuf,
    log: PathBuf,
    settings: SshdBuilder,
    port: u16,
    user: String,
    child: Option<Child>,
}

/// sshd exited because its port was taken.
struct AddrInUse;

impl Sshd {
    /// A builder with the defaults: one generated client key, `LogLevel VERBOSE`.
    pub fn builder() -> SshdBuilder {
        SshdBuilder {
            config_lines: Vec::new(),
            log_level: "VERBOSE".to_owned(),
            authorized_keys: Vec::new(),
        }
    }

    /// Starts an sshd with the defaults.
    pub fn start() -> Self {
        Self::builder().start()
    }

    /// The port it listens on (the same across [`Sshd::restart`]).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:port`.
    pub fn addr(&self) -> SocketAddr {
        localhost(self.port)
    }

    /// The temp dir that holds its files; tests may put their own there.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The generated client key, authorized for [`Sshd::user`].
    pub fn client_key(&self) -> &KeyPair {
        &self.client_key
    }

    /// The host key.
    pub fn host_key(&self) -> &KeyPair {
        &self.host_key
    }

    /// The host key's public line: `ssh-ed25519 AAAA... comment`.
    pub fn host_key_public_line(&self) -> String {
        self.host_key.public_line()
    }

    /// Its known_hosts entry: `[127.0.0.1]:PORT ssh-ed25519 AAAA...`.
    pub fn known_hosts_line(&self) -> String {
        self.known_hosts_line_for_port(self.port)
    }

    /// A known_hosts entry for this host key served on another port of 127.0.0.1 (a proxy, a
    /// tunnel).
    pub fn known_hosts_line_for_port(&self, port: u16) -> String {
        format!("[127.0.0.1]:{port} {}", self.host_key.public_key())
    }

    /// Writes a known_hosts file holding [`Sshd::known_hosts_line`].
    pub fn write_known_hosts(&self, path: &Path) {
        write_file(path, self.known_hosts_line() + "\n", 0o644);
    }

    /// The user to log in as: the current user (root when tests run as root).
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The listener's pid. Panics after [`Sshd::kill`].
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("sshd is not running").id()
    }

    /// The config file.
    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// Everything sshd and its sessions logged so far, across restarts.
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&fs::read(&self.log).unwrap_or_default()).into_owned()
    }

    /// The current length of the log, to wait for lines written after this point.
    pub fn log_mark(&self) -> usize {
        fs::metadata(&self.log).map_or(0, |m| usize::try_from(m.len()).unwrap_or(usize::MAX))
    }

    fn log_since(&self, mark: usize) -> String {
        let log = fs::read(&self.log).unwrap_or_default();
        String::from_utf8_lossy(log.get(mark..).unwrap_or_default()).into_owned()
    }

    /// Polls the log until it contains `needle`; false after `timeout`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        self.wait_for_log_since(0, needle, timeout)
    }

    /// Polls the log until `needle` occurs at least `count` times; false after `timeout`.
    pub fn wait_for_log_count(&self, needle: &str, count: usize, timeout: Duration) -> bool {
        wait_until(timeout, || self.log().matches(needle).count() >= count)
    }

    /// Polls the log written after `mark` (from [`Sshd::log_mark`]) until it contains `needle`.
    pub fn wait_for_log_since(&self, mark: usize, needle: &str, timeout: Duration) -> bool {
        wait_until(timeout, || self.log_since(mark).contains(needle))
    }

    /// How many logins sshd has accepted so far, across restarts: it logs one "Accepted
    /// publickey" line for each (at the default `VERBOSE`, and at any level from `INFO`).
    pub fn logins(&self) -> usize {
        self.log().matches("Accepted publickey").count()
    }

    /// The per-connection processes (and everything they started): all descendants of the
    /// listener. Empty after [`Sshd::kill`].
    pub fn session_pids(&self) -> Vec<u32> {
        self.child
            .as_ref()
            .map(|child| descendants(child.id()))
            .unwrap_or_default()
    }

    /// SIGSTOPs every session process but not the listener, and returns once they are stopped:
    /// their connections freeze like a hung server while new connections still get served.
    /// Returns the stopped pids.
    pub fn stop_sessions(&self) -> Vec<u32> {
        let stopped = stop_tree(self.pid(), false);
        let all_stopped = wait_until(Duration::from_secs(10), || {
            stopped
                .iter()
                .all(|&pid| has_exited(pid) || process_state(pid) == Some('T'))
        });
        assert!(all_stopped, "sshd sessions {stopped:?} did not stop");
        stopped
    }

    /// SIGCONTs every session process stopped by [`Sshd::stop_sessions`].
    pub fn cont_sessions(&self) {
        for pid in self.session_pids() {
            signal_pid(pid, Signal::SIGCONT);
        }
    }

    /// SIGKILLs the listener and every session process, and reaps the listener. The port is
    /// closed when this returns.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let sessions = kill_tree(child.id());
            signal_group(child.id(), Signal::SIGKILL);
            let _ = child.wait();
            // Reaped by init, not by us: wait until they are dead and their sockets closed.
            let gone = wait_until(Duration::from_secs(10), || {
                sessions.iter().all(|&pid| has_exited(pid))
            });
            if !gone {
                // Not a panic: this also runs in Drop, maybe while a failed test unwinds.
                eprintln!("sshd sessions {sessions:?} still alive after SIGKILL");
            }
        }
    }

    /// Kills sshd if it runs, then starts it again on the same port with the same keys and
    /// config, retrying while the port is briefly unavailable, and waits for its banner.
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Ok(child) = self.launch() {
                self.child = Some(child);
                return;
            }
            assert!(
                Instant::now() < deadline,
                "port {} stayed in use, sshd could not restart:\n{}",
                self.port,
                self.log()
            );
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// An OpenSSH client command logging in to this sshd as [`Sshd::user`] with the client key,
    /// checking the host key strictly, with no config file and no agent; append the remote
    /// command with `.arg(...)`.
    pub fn ssh_command(&self) -> Command {
        self.ssh_command_via(self.port)
    }

    /// Like [`Sshd::ssh_command`], but connecting to 127.0.0.1:`port` (a proxy or a tunnel in
    /// front of this sshd) and expecting this host key there.
    pub fn ssh_command_via(&self, port: u16) -> Command {
        let known_hosts = self.dir.join(format!("known_hosts_{port}"));
        write_file(
            &known_hosts,
            self.known_hosts_line_for_port(port) + "\n",
            0o644,
        );
        let mut command = Command::new("ssh");
        command
            .args(["-F", "/dev/null", "-o", "BatchMode=yes"])
            .args([
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                "IdentitiesOnly=yes",
            ])
            .args([
                "-o",
                "GlobalKnownHostsFile=/dev/null",
                "-o",
                "ConnectTimeout=20",
            ])
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
            .arg("-i")
            .arg(&self.client_key.private)
            .arg("-p")
            .arg(port.to_string())
            .arg(format!("{}@127.0.0.1", self.user))
            .env_remove("SSH_AUTH_SOCK")
            .stdin(Stdio::null());
        command
    }

    fn write_config(&self) {
        let settings = &self.settings;
        write_config(
            &self.config,
            self.dir.path(),
            self.port,
            &settings.config_lines,
            &settings.log_level,
        );
    }

    fn check_config(&self) {
        let output = Command::new(sshd_path())
            .arg("-t")
            .arg("-f")
            .arg(&self.config)
            .stdin(Stdio::null())
            .output()
            .expect("run sshd -t");
        assert!(
            output.status.success(),
            "sshd -t rejects the config: {}\n{}",
            String::from_utf8_lossy(&output.stderr),
            fs::read_to_string(&self.config).unwrap_or_default()
        );
    }

    /// Whether the effective LogLevel shows sshd's "Server listening" line (INFO and above).
    fn logs_listening(&self) -> bool {
        let level = self
            .settings
            .config_lines
            .iter()
            .find_map(|line| {
                let (key, value) = line.trim().split_once(char::is_whitespace)?;
                key.eq_ignore_ascii_case("LogLevel").then(|| value.trim())
            })
            .unwrap_or(&self.settings.log_level)
            .to_ascii_uppercase();
        ["INFO", "VERBOSE", "DEBUG"]
            .iter()
            .any(|l| level.starts_with(l))
    }

    /// Starts sshd on `self.port` and waits until it is ours that answers there.
    fn launch(&self) -> Result<Child, AddrInUse> {
        let mark = self.log_mark();
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open sshd log");
        let mut child = Command::new(sshd_path())
            .args(["-D", "-e", "-f"])
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log fd"))
            .stderr(log)
            // Its own group, so nothing sent to the test's group reaches it, and vice versa.
            .process_group(0)
            .spawn()
            .expect("spawn sshd");
        // The banner alone could come from another process that took the port before sshd's
        // bind failed; the log line says that sshd itself is listening.
        let listening = format!("Server listening on 127.0.0.1 port {}", self.port);
        let needs_line = self.logs_listening();
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let log = self.log_since(mark);
                if log.contains("Address already in use") {
                    return Err(AddrInUse);
                }
                panic!("sshd exited at start ({status}):\n{log}");
            }
            if (!needs_line || self.log_since(mark).contains(&listening))
                && reads_banner(self.addr())
                && matches!(child.try_wait(), Ok(None))
            {
                return Ok(child);
            }
            if Instant::now() >= deadline {
                kill_tree(child.id());
                let _ = child.wait();
                panic!(
                    "sshd did not answer on port {} within {STARTUP_TIMEOUT:?}:\n{}",
                    self.port,
                    self.log_since(mark)
                );
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(200).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            eprintln!(
                "--- sshd on port {} (last {} log lines) ---\n{}\n--- end of sshd log ---",
                self.port,
                tail.len(),
                tail.join("\n")
            );
        }
        self.kill();
    }
}
