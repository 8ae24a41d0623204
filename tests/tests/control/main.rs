//! The control socket of the tunneld binary, through a real sshd: `tunneld status` (lines and
//! JSON), `reconnect`, `reload`, SIGUSR1, who may connect, bad clients, and where the socket is.

// Helpers outside #[test] functions unwrap too: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

#[path = "../support/mod.rs"]
mod support;

mod clients;
mod commands;
mod socket;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, SystemTime};

use harness::{TunneldProcess, tunneld_bin, wait_until};
use serde_json::Value;

/// Generous: these machines are shared and noisy.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// Runs `tunneld ARGS`, with `env`.
pub fn tunneld(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(tunneld_bin())
        .args(args)
        // The test's own session must not add a path; a test that wants one says so.
        .env_remove("XDG_RUNTIME_DIR")
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

/// The exit code, stdout and stderr of `out`.
pub fn parts(out: &Output) -> (Option<i32>, String, String) {
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The socket of a daemon started by the harness with `dir/tunneld.toml`.
pub fn socket_of(daemon: &TunneldProcess) -> PathBuf {
    daemon.runtime_dir().unwrap().join("tunneld.sock")
}

/// `tunneld status --json` through `socket`: its exit code and object (`null` when no daemon
/// answered: exit 3).
pub fn status(socket: &Path) -> (Option<i32>, Value) {
    let out = tunneld(
        &["status", "--json", "--socket", socket.to_str().unwrap()],
        &[],
    );
    let (code, stdout, stderr) = parts(&out);
    if code == Some(3) {
        assert!(stderr.contains(&socket.display().to_string()), "{stderr}");
        return (code, Value::Null);
    }
    let value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("status --json: {e} (exit {code:?}):\n{stdout}{stderr}"));
    (code, value)
}

/// Polls `status` until `cond` holds of tunnel `name`'s object; returns it.
#[track_caller]
pub fn wait_tunnel(
    daemon: &TunneldProcess,
    name: &str,
    what: &str,
    cond: impl Fn(&Value) -> bool,
) -> Value {
    let socket = socket_of(daemon);
    let mut last = Value::Null;
    let ok = wait_until(TIMEOUT, || {
        if !socket.exists() {
            return false;
        }
        let (_, all) = status(&socket);
        let Some(tunnels) = all["tunnels"].as_array() else {
            return false;
        };
        last = tunnels
            .iter()
            .find(|t| t["name"] == name)
            .cloned()
            .unwrap_or(Value::Null);
        cond(&last)
    });
    assert!(
        ok,
        "{name} never became {what}; last status:\n{last:#}\n{}",
        daemon.logs()
    );
    last
}

/// An RFC 3339 field of a status object.
pub fn time(value: &Value) -> SystemTime {
    humantime::parse_rfc3339(value.as_str().unwrap()).unwrap()
}
