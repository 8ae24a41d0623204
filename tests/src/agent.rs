//! A real `ssh-agent`, for tests of agent authentication.

use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use crate::keys::KeyPair;
use crate::procfs::kill_tree;
use crate::util::{wait_until, write_file};

/// `ssh-agent -D -a SOCKET` as a child process, killed on drop.
#[derive(Debug)]
pub struct SshAgent {
    child: Child,
    socket: PathBuf,
    askpass: PathBuf,
}

impl SshAgent {
    /// Starts an agent listening on `dir/agent.sock` and waits until it accepts connections.
    pub fn start(dir: &Path) -> Self {
        let socket = dir.join("agent.sock");
        let mut child = Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&socket)
            .stdin(Stdio::null())
            // It prints the shell commands that export SSH_AUTH_SOCK; we know the path already.
            .stdout(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("spawn ssh-agent");
        let ready = wait_until(Duration::from_secs(10), || {
            UnixStream::connect(&socket).is_ok() || matches!(child.try_wait(), Ok(Some(_)))
        });
        if let Ok(Some(status)) = child.try_wait() {
            panic!("ssh-agent exited at start: {status}");
        }
        assert!(ready, "ssh-agent did not create {}", socket.display());
        // ssh-add asks for a passphrase through this program when there is no terminal.
        let askpass = dir.join("agent-askpass.sh");
        write_file(
            &askpass,
            "#!/bin/sh\nprintf '%s\\n' \"$HARNESS_PASSPHRASE\"\n",
            0o700,
        );
        Self {
            child,
            socket,
            askpass,
        }
    }

    /// The agent's socket, for `SSH_AUTH_SOCK` or `IdentityAgent`.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The agent's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Adds a key, answering its passphrase if it is encrypted.
    pub fn add(&self, key: &KeyPair) {
        let mut command = self.ssh_add();
        command.arg(&key.private);
        if let Some(passphrase) = &key.passphrase {
            command
                .env("SSH_ASKPASS", &self.askpass)
                .env("SSH_ASKPASS_REQUIRE", "force")
                .env("HARNESS_PASSPHRASE", passphrase);
        }
        let output = command.output().expect("run ssh-add");
        check("ssh-add", &output);
    }

    /// Adds the unencrypted private key file at `path`.
    pub fn add_path(&self, path: &Path) {
        let output = self.ssh_add().arg(path).output().expect("run ssh-add");
        check("ssh-add", &output);
    }

    /// The public keys the agent holds, one per line (`ssh-add -L`); empty when none.
    pub fn list(&self) -> String {
        let output = self.ssh_add().arg("-L").output().expect("run ssh-add -L");
        // Exit status 1 means "no identities", which is an answer, not a failure.
        if output.status.code() == Some(1) {
            return String::new();
        }
        check("ssh-add -L", &output);
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Removes every key (`ssh-add -D`).
    pub fn remove_all(&self) {
        let output = self.ssh_add().arg("-D").output().expect("run ssh-add -D");
        check("ssh-add -D", &output);
    }

    fn ssh_add(&self) -> Command {
        let mut command = Command::new("ssh-add");
        command
            .env("SSH_AUTH_SOCK", &self.socket)
            .env_remove("SSH_ASKPASS")
            .env_remove("DISPLAY")
            .stdin(Stdio::null());
        command
    }
}

fn check(what: &str, output: &Output) {
    assert!(
        output.status.success(),
        "{what} failed ({}): {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

impl Drop for SshAgent {
    fn drop(&mut self) {
        let _ = kill_tree(self.child.id());
        let _ = self.child.wait();
    }
}
