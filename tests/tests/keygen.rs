//! `tunneld keygen` against real sshds: the keys the binary creates, with the lines it prints
//! pasted into each server's authorized_keys, carry every forward of the tunnel (through a jump
//! host), and the real ssh client, holding the same keys, is refused everything else: another
//! target, another remote port, a command.

// Helpers outside #[test] functions unwrap too: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod support;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::net::TcpStream;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use harness::{
    ClosedPort, EchoServer, HostEntry, HttpServer, Sshd, free_port, known_hosts_file, localhost,
    random_bytes, wait_until,
};
use support::{InProcess, echo_through, test_dir, write_config};

/// Runs `tunneld keygen --config CONFIG ARGS...`: exit status, stdout, stderr.
fn keygen(config: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(harness::tunneld_bin())
        .args(["keygen", "--config", config.to_str().unwrap()])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Appends `line` to the sshd's authorized_keys (sshd reads it at each login).
fn authorize(sshd: &Sshd, line: &str) {
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(sshd.dir().join("authorized_keys"))
        .unwrap();
    writeln!(file, "{line}").unwrap();
}

/// The real ssh client logging in to `sshd` with `key` only (no agent, no config file, the host
/// key checked): `options` before the destination, `command` after it.
fn ssh(sshd: &Sshd, dir: &Path, key: &Path, options: &[&str], command: &[&str]) -> Output {
    let name = format!("ssh_{}", sshd.port());
    let known_hosts = known_hosts_file(dir, &name, &sshd.known_hosts_line());
    Command::new("ssh")
        .args([
            "-F",
            "/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
        ])
        .args(["-o", "StrictHostKeyChecking=yes"])
        .args(["-o", "GlobalKnownHostsFile=/dev/null"])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
        .args(["-o", "ConnectTimeout=20", "-o", "ExitOnForwardFailure=yes"])
        .arg("-i")
        .arg(key)
        .arg("-p")
        .arg(sshd.port().to_string())
        .args(options)
        .arg(format!("{}@127.0.0.1", sshd.user()))
        .args(command)
        .env_remove("SSH_AUTH_SOCK")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `ssh -W target`: one channel to `target` through `sshd`, which must refuse it.
fn assert_open_refused(sshd: &Sshd, dir: &Path, key: &Path, target: SocketAddr) {
    let out = ssh(sshd, dir, key, &["-W", &target.to_string()], &[]);
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "{target} was reachable: {stderr}");
    assert!(
        stderr.contains("administratively prohibited"),
        "{target}: {stderr}"
    );
}

/// `ssh -N -R port:...`: a listener on the server that the tunnel did not ask for.
fn assert_listen_refused(sshd: &Sshd, dir: &Path, key: &Path, port: u16) {
    let spec = format!("{port}:127.0.0.1:9");
    let out = ssh(sshd, dir, key, &["-N", "-R", &spec], &[]);
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "remote port {port} was granted");
    assert!(
        stderr.contains(&format!(
            "remote port forwarding failed for listen port {port}"
        )),
        "{port}: {stderr}"
    );
}

/// `ssh host echo ...`: the forced command runs instead, and the echo never does.
fn assert_command_refused(sshd: &Sshd, dir: &Path, key: &Path) {
    let out = ssh(sshd, dir, key, &[], &["echo", "the-command-ran"]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(!out.status.success(), "the command ran: {stdout}{stderr}");
    assert!(!stdout.contains("the-command-ran"), "{stdout}");
    assert_eq!(stdout, "This account is currently not available.\n");
}

/// `ssh -N -L port:/path`: a connection to a Unix socket of the server, which the line's
/// `permitopen` refuses too (a path never matches `host:port`).
fn assert_socket_refused(sshd: &Sshd, dir: &Path, key: &Path) {
    let socket_path = dir.join("server.sock");
    let socket = UnixListener::bind(&socket_path).unwrap();
    socket.set_nonblocking(true).unwrap();
    let port = free_port();
    let spec = format!("{port}:{}", socket_path.display());
    let name = format!("ssh_{}", sshd.port());
    let known_hosts = known_hosts_file(dir, &name, &sshd.known_hosts_line());
    let mut ssh = Command::new("ssh")
        .args([
            "-F",
            "/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
        ])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
        .arg("-i")
        .arg(key)
        .args(["-p", &sshd.port().to_string(), "-N", "-L", &spec])
        .arg(format!("{}@127.0.0.1", sshd.user()))
        .env_remove("SSH_AUTH_SOCK")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mark = sshd.log_mark();
    let mut client = None;
    assert!(wait_until(Duration::from_secs(20), || {
        client = TcpStream::connect(localhost(port)).ok();
        client.is_some()
    }));
    let mut got = Vec::new();
    let _ = client.unwrap().read_to_end(&mut got);
    assert!(sshd.wait_for_log_since(
        mark,
        &format!(
            "connect to path {}, but the request was denied",
            socket_path.display()
        ),
        Duration::from_secs(10)
    ));
    assert_eq!(got, b"");
    assert!(socket.accept().is_err(), "the socket was reached");
    let _ = ssh.kill();
    let _ = ssh.wait();
}

/// The key lines of keygen's output, in order (comments and blank lines dropped).
fn key_lines(stdout: &str) -> Vec<&str> {
    stdout
        .lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_printed_lines_carry_every_forward_and_nothing_else() {
    let dir = test_dir();
    let (jump, server) = (Sshd::start(), Sshd::start());
    let echo = EchoServer::start();
    let elsewhere = EchoServer::start();
    let (local_port, remote_port) = (free_port(), free_port());
    let keys = dir.path().join("keys");
    std::fs::create_dir(&keys).unwrap();
    let (jump_key, server_key): (PathBuf, PathBuf) = (keys.join("bastion"), keys.join("db"));
    let kh_jump = known_hosts_file(dir.path(), "bastion", &jump.known_hosts_line());
    let kh_server = known_hosts_file(dir.path(), "db", &server.known_hosts_line());
    let config = write_config(
        dir.path(),
        &format!(
            "[defaults]\nbackoff_min = \"100ms\"\nbackoff_max = \"2s\"\n\n{}{}\
             [tunnels.db]\nhost = \"db\"\njump = [\"bastion\"]\n\
             local = [\"{local_port}:127.0.0.1:{echo}\"]\n\
             remote = [\"{remote_port}:127.0.0.1:{echo}\"]\n",
            HostEntry::new("bastion", &jump, &kh_jump)
                .identity(&jump_key)
                .toml(),
            HostEntry::new("db", &server, &kh_server)
                .identity(&server_key)
                .toml(),
            echo = echo.port(),
        ),
    );

    // As root, keygen will not guess who owns the keys.
    if nix::unistd::geteuid().is_root() {
        let (status, stdout, stderr) = keygen(&config, &[]);
        assert_eq!(status, Some(1), "{stdout}{stderr}");
        assert!(
            stderr.contains("runs as root: say who will own it with --owner USER"),
            "{stderr}"
        );
        assert!(!jump_key.exists() && !server_key.exists());
    }
    let (status, stdout, stderr) = keygen(&config, &["--owner", jump.user()]);
    assert_eq!(status, Some(0), "{stdout}{stderr}");
    let lines = key_lines(&stdout);
    for key in [&jump_key, &server_key] {
        let meta = std::fs::metadata(key).unwrap();
        assert_eq!(
            meta.permissions().mode() & 0o777,
            0o600,
            "{}",
            key.display()
        );
        assert_eq!(meta.uid(), nix::unistd::geteuid().as_raw());
    }
    let hostname = nix::unistd::gethostname().unwrap().into_string().unwrap();
    let public = |key: &Path| {
        let line = std::fs::read_to_string(format!("{}.pub", key.display())).unwrap();
        line.split(' ').take(2).collect::<Vec<_>>().join(" ")
    };
    assert_eq!(
        lines,
        [
            format!(
                "restrict,port-forwarding,command=\"/usr/sbin/nologin\",\
                 permitopen=\"127.0.0.1:{}\",permitlisten=\"none.invalid:1\" {} \
                 tunneld:db@{hostname}",
                server.port(),
                public(&jump_key)
            ),
            format!(
                "restrict,port-forwarding,command=\"/usr/sbin/nologin\",\
                 permitopen=\"127.0.0.1:{}\",permitlisten=\"localhost:{remote_port}\" {} \
                 tunneld:db@{hostname}",
                echo.port(),
                public(&server_key)
            ),
        ]
    );
    authorize(&jump, lines[0]);
    authorize(&server, lines[1]);

    // A second run creates nothing and prints the same lines.
    let (status, again, stderr) = keygen(&config, &["--owner", jump.user()]);
    assert_eq!((status, stderr.as_str()), (Some(0), ""));
    assert_eq!(again, stdout);

    // Every forward works, through the jump host, with these keys alone.
    let tunneld = InProcess::start(&config);
    tunneld.wait_remote_listening("db").await;
    let payload = random_bytes(1 << 20, 16);
    assert!(echo_through(localhost(local_port), &payload).await == payload);
    assert!(echo_through(localhost(remote_port), &payload).await == payload);
    tunneld.stop().await;

    // The same keys, in the real ssh client, get nothing else.
    let closed = ClosedPort::new();
    for target in [elsewhere.addr(), closed.addr(), server.addr()] {
        assert_open_refused(&server, dir.path(), &server_key, target);
    }
    for target in [elsewhere.addr(), echo.addr()] {
        assert_open_refused(&jump, dir.path(), &jump_key, target);
    }
    assert_listen_refused(&server, dir.path(), &server_key, free_port());
    assert_listen_refused(&jump, dir.path(), &jump_key, free_port());
    assert_command_refused(&server, dir.path(), &server_key);
    assert_socket_refused(&server, dir.path(), &server_key);
    assert_command_refused(&jump, dir.path(), &jump_key);
    assert_eq!(elsewhere.connections_total(), 0);
}

/// A SOCKS forward gets no permitopen (any would confine it), and a remote port 0 gets
/// `localhost:*`: both work with the printed line, and the key still gets no other listener
/// and no command.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socks_forward_and_a_remote_port_0_work_with_the_printed_line() {
    let dir = test_dir();
    let server = Sshd::start();
    let echo = EchoServer::start();
    let web = HttpServer::start(b"through socks".to_vec());
    let socks_port = free_port();
    let key = dir.path().join("id");
    let known_hosts = known_hosts_file(dir.path(), "db", &server.known_hosts_line());
    let config = write_config(
        dir.path(),
        &format!(
            "[defaults]\nbackoff_min = \"100ms\"\nbackoff_max = \"2s\"\n\n{}\
             [tunnels.db]\nhost = \"db\"\ndynamic = [\"{socks_port}\"]\n\
             remote = [\"0:127.0.0.1:{}\"]\n",
            HostEntry::new("db", &server, &known_hosts)
                .identity(&key)
                .toml(),
            echo.port(),
        ),
    );
    let (status, stdout, stderr) = keygen(&config, &["--owner", server.user()]);
    assert_eq!(status, Some(0), "{stdout}{stderr}");
    let lines = key_lines(&stdout);
    assert_eq!(lines.len(), 1, "{stdout}");
    assert!(
        lines[0].starts_with(
            "restrict,port-forwarding,command=\"/usr/sbin/nologin\",\
             permitlisten=\"localhost:*\" ssh-ed25519 "
        ),
        "{stdout}"
    );
    assert!(stdout.contains("# no permitopen: dynamic "), "{stdout}");
    authorize(&server, lines[0]);

    let tunneld = InProcess::start(&config);
    let (_, ports) = tunneld.wait_remote_listening("db").await;
    let payload = random_bytes(1 << 16, 17);
    let port = u16::try_from(ports[0]).unwrap();
    assert!(echo_through(localhost(port), &payload).await == payload);
    let proxy = format!("127.0.0.1:{socks_port}");
    let url = web.url();
    let curl = tokio::task::spawn_blocking(move || {
        Command::new("curl")
            .args(["-sS", "--max-time", "20", "--socks5-hostname", &proxy, &url])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(
        text(&curl.stdout),
        "through socks",
        "{}",
        text(&curl.stderr)
    );
    tunneld.stop().await;

    // `localhost:*` is any port on localhost, and nothing else.
    let spec = format!("127.0.0.1:{}:127.0.0.1:9", free_port());
    let out = ssh(&server, dir.path(), &key, &["-N", "-R", &spec], &[]);
    assert!(!out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("remote port forwarding failed"),
        "{}",
        text(&out.stderr)
    );
    assert_command_refused(&server, dir.path(), &key);
}
