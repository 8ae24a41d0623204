//! What a client may do to the daemon and must not get away with: garbage, a huge request, a
//! slow one, many at once; and a user outside the socket's group.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use harness::{EchoServer, Sshd, TunneldProcess, free_port, tunneld_bin};
use serde_json::Value;

use super::support::test_dir;
use super::support::write_one_tunnel;
use super::{TIMEOUT, parts, socket_of, status, tunneld, wait_tunnel};

/// Sends `bytes` and reads whatever comes back until the daemon closes.
fn raw(socket: &Path, bytes: &[u8]) -> String {
    let mut stream = UnixStream::connect(socket).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    // The daemon may close before taking everything (a request too long): not an error here.
    let _ = stream.write_all(bytes);
    let mut back = Vec::new();
    let _ = stream.read_to_end(&mut back);
    String::from_utf8_lossy(&back).into_owned()
}

fn error_kind(reply: &str) -> Value {
    let value: Value = serde_json::from_str(reply).unwrap_or_else(|e| panic!("{e}: {reply:?}"));
    assert_eq!(value["version"], 1, "{reply}");
    value["error"]["kind"].clone()
}

fn daemon() -> (harness::TestDir, Sshd, EchoServer, TunneldProcess) {
    let dir = test_dir();
    let sshd = Sshd::start();
    let echo = EchoServer::start();
    let block = format!("local = [\"{}:127.0.0.1:{}\"]\n", free_port(), echo.port());
    let config = write_one_tunnel(dir.path(), &sshd, "db", &block);
    let daemon = TunneldProcess::spawn(&["run", "--config", config.to_str().unwrap()], &[]);
    wait_tunnel(&daemon, "db", "up", |t| t["state"] == "up");
    (dir, sshd, echo, daemon)
}

#[test]
fn bad_requests_get_an_error_or_are_dropped_and_the_daemon_still_answers() {
    let (_dir, _sshd, _echo, mut daemon) = daemon();
    let socket = socket_of(&daemon);

    for garbage in [
        &b"garbage\n"[..],
        b"\xff\xfe\x00\n",
        b"{\"version\":1}\n",
        b"{\"version\":2,\"command\":\"status\"}\n",
        b"{\"version\":1,\"command\":\"shutdown\"}\n",
        b"{\"version\":1,\"command\":\"status\",\"tunnels\":[\"nope\"]}\n",
    ] {
        let reply = raw(&socket, garbage);
        let kind = error_kind(&reply);
        assert!(kind == "bad-request" || kind == "unknown-tunnel", "{reply}");
    }
    let deep = format!("{}\n", "[".repeat(100_000));
    assert_eq!(error_kind(&raw(&socket, deep.as_bytes())), "bad-request");

    // Huge: an error, or the connection closed; never buffered without end.
    let reply = raw(&socket, &vec![b'x'; 1 << 20]);
    assert!(
        reply.is_empty() || error_kind(&reply) == "bad-request",
        "{reply}"
    );

    // Slow: nothing sent. The daemon answers everyone else meanwhile, then gives up on it.
    let started = Instant::now();
    let mut slow = UnixStream::connect(&socket).unwrap();
    slow.write_all(b"{\"version\":1,").unwrap();
    // More idle clients than the daemon serves at once.
    let idle: Vec<UnixStream> = (0..40)
        .map(|_| UnixStream::connect(&socket).unwrap())
        .collect();
    slow.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut back = String::new();
    let _ = slow.read_to_string(&mut back);
    let waited = started.elapsed();
    assert_eq!(error_kind(&back), "bad-request", "{back}");
    assert!(back.contains("no complete request within 5 s"), "{back}");
    assert!(
        waited >= Duration::from_secs(4) && waited < Duration::from_secs(20),
        "{waited:?}"
    );
    drop(idle);
    // Once the idle ones are timed out or gone, a real client is answered.
    wait_tunnel(&daemon, "db", "still up", |t| t["state"] == "up");
    assert!(daemon.is_running());
}

#[test]
fn only_root_and_the_sockets_group_may_connect() {
    let (_dir, _sshd, _echo, daemon) = daemon();
    let socket = socket_of(&daemon);
    // The runtime directory is the test's (0700): open it, so that the socket's own mode decides.
    std::fs::set_permissions(
        daemon.runtime_dir().unwrap(),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660);

    let bin = tunneld_bin();
    let as_user = |group: Option<&str>| {
        let mut command = std::process::Command::new("runuser");
        command.args(["-u", "nobody"]);
        if let Some(group) = group {
            command.args(["-g", group]);
        }
        command
            .arg("--")
            .arg(&bin)
            .args(["status", "--socket", socket.to_str().unwrap()])
            .output()
            .unwrap()
    };
    let out = as_user(None);
    let (code, _, stderr) = parts(&out);
    assert_eq!(code, Some(3), "{stderr}");
    assert!(
        stderr.contains(&format!("{}: Permission denied", socket.display())),
        "{stderr}"
    );
    // The same user in the socket's group (root's, here) is let in: the file decides.
    let out = as_user(Some("root"));
    let (code, stdout, stderr) = parts(&out);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.starts_with("db up"), "{stdout}");
    let (code, _) = status(&socket);
    assert_eq!(code, Some(0));
}

#[test]
fn nothing_answers_exit_3_naming_every_path_tried() {
    let dir = test_dir();
    let pinned = dir.join("pinned.sock");
    let config = dir.write(
        "nothing-here-4242.toml",
        format!("[daemon]\ncontrol_socket = \"{}\"\n\n[tunnels.db]\nhost = \"127.0.0.1:1\"\nuser = \"x\"\nuse_agent = true\ndynamic = [\"1080\"]\n", pinned.display()),
    );
    let xdg = dir.join("xdg");
    let out = tunneld(
        &["status", "--config", config.to_str().unwrap()],
        &[("XDG_RUNTIME_DIR", xdg.to_str().unwrap())],
    );
    let (code, stdout, stderr) = parts(&out);
    assert_eq!(code, Some(3), "{stdout}{stderr}");
    assert!(stdout.is_empty());
    let expected = [
        pinned.clone(),
        Path::new("/run/tunneld/nothing-here-4242.sock").to_path_buf(),
        xdg.join("tunneld/nothing-here-4242.sock"),
    ];
    let mut at = 0;
    for path in &expected {
        let found = stderr[at..].find(&format!("  {}: ", path.display()));
        assert!(
            found.is_some(),
            "{} not listed in order:\n{stderr}",
            path.display()
        );
        at += found.unwrap();
    }
    assert!(
        stderr.contains(&format!("no daemon answers for {}", config.display())),
        "{stderr}"
    );
    for command in [&["reconnect", "--all"][..], &["reload"][..]] {
        let mut args = command.to_vec();
        args.extend(["--config", config.to_str().unwrap()]);
        assert_eq!(tunneld(&args, &[]).status.code(), Some(3));
    }
}
