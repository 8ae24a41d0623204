//! The sshd_config of a test server, what the installed sshd needs and how to tell it is up.

use std::fs;
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use crate::util::write_file;

/// The sshd binary: `$SSHD`, else `/usr/sbin/sshd`. sshd re-executes itself for each
/// connection, so the path must be absolute.
pub fn sshd_path() -> PathBuf {
    std::env::var_os("SSHD").map_or_else(|| PathBuf::from("/usr/sbin/sshd"), PathBuf::from)
}

/// The installed OpenSSH version as (major, minor), from `sshd -V` (older versions print it in
/// their usage message, which this reads as well).
pub fn openssh_version() -> (u32, u32) {
    static VERSION: OnceLock<(u32, u32)> = OnceLock::new();
    *VERSION.get_or_init(|| {
        let output = Command::new(sshd_path())
            .arg("-V")
            .stdin(Stdio::null())
            .output()
            .expect("run sshd -V");
        let text = String::from_utf8_lossy(&output.stderr).into_owned()
            + &String::from_utf8_lossy(&output.stdout);
        parse_version(&text).unwrap_or_else(|| panic!("no OpenSSH version in {text:?}"))
    })
}

fn parse_version(text: &str) -> Option<(u32, u32)> {
    let rest = &text[text.find("OpenSSH_")? + "OpenSSH_".len()..];
    let (major, rest) = rest.split_once('.')?;
    let minor: String = rest.chars().take_while(char::is_ascii_digit).collect();
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// The name of the user the tests run as (who the test sshd lets in).
pub fn current_user() -> String {
    nix::unistd::User::from_uid(nix::unistd::geteuid())
        .ok()
        .flatten()
        .map(|user| user.name)
        .or_else(|| std::env::var("USER").ok())
        .expect("name of the current user")
}

/// Writes the config of a test sshd that keeps its files in `dir`.
///
/// `extra` goes first, since sshd keeps the first value of a repeated directive; but a `Match`
/// block runs to the end of the file, so from the first `Match` line on, `extra` goes last.
pub(crate) fn write_config(path: &Path, dir: &Path, port: u16, extra: &[String], log_level: &str) {
    let match_at = extra
        .iter()
        .position(|line| {
            line.trim_start()
                .get(..6)
                .is_some_and(|word| word.eq_ignore_ascii_case("match "))
        })
        .unwrap_or(extra.len());
    let (before, matches) = extra.split_at(match_at);
    let dir = dir.display();
    let mut config = String::new();
    for line in before {
        config.push_str(line);
        config.push('\n');
    }
    config.push_str(&format!(
        "ListenAddress 127.0.0.1:{port}\n\
         PidFile {dir}/sshd.pid\n\
         HostKey {dir}/ssh_host_ed25519_key\n\
         AuthorizedKeysFile {dir}/authorized_keys\n\
         UsePAM no\n\
         StrictModes no\n\
         PermitRootLogin prohibit-password\n\
         AllowTcpForwarding yes\n\
         LogLevel {log_level}\n\
         PasswordAuthentication no\n\
         KbdInteractiveAuthentication no\n"
    ));
    // From 9.8 on, sshd penalises (refuses for a while) a source address whose connections
    // fail or get cut, which is what these tests do to it on purpose, from 127.0.0.1.
    if openssh_version() >= (9, 8) {
        config.push_str("PerSourcePenalties no\n");
    }
    for line in matches {
        config.push_str(line);
        config.push('\n');
    }
    write_file(path, config, 0o644);
}

/// Whether 127.0.0.1:`addr` accepts a connection and sends an `SSH-2.0-` identification line.
pub(crate) fn reads_banner(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut received = Vec::new();
    let mut buf = [0u8; 256];
    while received.len() < 4096 {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return false,
            Ok(n) => received.extend_from_slice(&buf[..n]),
        }
        // RFC 4253 allows other lines before the identification string.
        let mut lines = received.split(|&b| b == b'\n');
        let complete = lines.clone().count() - 1;
        if lines
            .by_ref()
            .take(complete)
            .any(|l| l.starts_with(b"SSH-2.0-"))
        {
            return true;
        }
    }
    false
}

/// As root, sshd needs its privilege separation directory, which only the package's service
/// creates at boot.
pub(crate) fn ensure_privsep_dir() {
    if !nix::unistd::geteuid().is_root() {
        return;
    }
    let dir = Path::new("/run/sshd");
    if !dir.is_dir() {
        fs::create_dir_all(dir).expect("create /run/sshd");
    }
    // sshd refuses a privsep dir that is group or world writable.
    let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o755));
}

#[cfg(test)]
mod tests {
    use super::parse_version;

    #[test]
    fn parses_versions() {
        assert_eq!(
            parse_version("OpenSSH_9.2p1 Debian-2+deb12u10, OpenSSL 3.0"),
            Some((9, 2))
        );
        assert_eq!(parse_version("OpenSSH_10.0, OpenSSL"), Some((10, 0)));
        assert_eq!(parse_version("unknown option -- V"), None);
    }
}
