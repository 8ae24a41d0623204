//! `tunneld status`, `reconnect`, `reload` and SIGUSR1 against a daemon with real tunnels.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::SystemTime;

use harness::{EchoServer, Sshd, TunneldProcess, free_port, localhost};
use nix::sys::signal::Signal;
use serde_json::Value;

use super::support::{defaults_for, host_line, test_dir, write_config};
use super::{TIMEOUT, parts, socket_of, status, time, tunneld, wait_tunnel};

fn exchange(port: u16, bytes: &[u8]) {
    let mut stream = TcpStream::connect(localhost(port)).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream.write_all(bytes).unwrap();
    let mut back = vec![0u8; bytes.len()];
    stream.read_exact(&mut back).unwrap();
    assert_eq!(back, bytes);
}

/// The port of a `127.0.0.1:PORT` listen address.
fn port_of(listen: &Value) -> u16 {
    let text = listen.as_str().unwrap();
    text.rsplit_once(':').unwrap().1.parse().unwrap()
}

fn is_up(t: &Value) -> bool {
    t["state"] == "up"
}

#[test]
fn status_shows_every_kind_of_forward_and_follows_an_sshd_restart() {
    let dir = test_dir();
    let mut sshd = Sshd::start();
    let echo = EchoServer::start();
    let (local, socks) = (free_port(), free_port());
    let config = write_config(
        dir.path(),
        &format!(
            "{}[tunnels.db]\n{}local = [\"{local}:127.0.0.1:{e}\"]\nremote = [\"0:127.0.0.1:{e}\"]\ndynamic = [\"127.0.0.1:{socks}\"]\n",
            defaults_for(&sshd, dir.path()),
            host_line(&sshd),
            e = echo.port()
        ),
    );
    let daemon = TunneldProcess::spawn(&["run", "--config", config.to_str().unwrap()], &[]);
    let first = wait_tunnel(&daemon, "db", "up", is_up);
    let socket = socket_of(&daemon);

    let (code, all) = status(&socket);
    assert_eq!(code, Some(0), "every tunnel is up: {all:#}");
    assert_eq!(all["version"], 1);
    assert_eq!(all["metrics"], Value::Null);
    assert_eq!(first["peer"], format!("127.0.0.1:{}", sshd.port()));
    assert_eq!(first["last_error"], Value::Null);
    assert_eq!(first["reconnects"], 0);
    assert!(first["connection"].is_u64());
    assert!(time(&first["since"]) <= SystemTime::now());
    let forwards = first["forwards"].as_array().unwrap();
    let kinds: Vec<&str> = forwards
        .iter()
        .map(|f| f["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["local", "remote", "dynamic"]);
    assert_eq!(
        forwards[0]["spec"],
        format!("{local}:127.0.0.1:{}", echo.port())
    );
    assert_eq!(forwards[1]["spec"], format!("0:127.0.0.1:{}", echo.port()));
    for forward in forwards {
        assert_eq!(forward["state"], "up", "{forward:#}");
        for field in ["active", "connections_total", "bytes_in", "bytes_out"] {
            assert!(forward[field].is_u64(), "{field} in {forward:#}");
        }
    }
    // The port the server allocated is shown, and it is the one that works.
    let allocated = port_of(&forwards[1]["listen"][0]);
    assert_ne!(allocated, 0);
    exchange(allocated, b"through the allocated port");
    exchange(local, b"through the local forward");

    let out = tunneld(&["status", "--socket", socket.to_str().unwrap()], &[]);
    let (code, text, _) = parts(&out);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.starts_with("db up for "), "{text}");
    assert!(
        text.contains(&format!("(127.0.0.1:{})", sshd.port())),
        "{text}"
    );
    let listen = forwards[1]["listen"][0].as_str().unwrap();
    let line = format!("  remote 0:127.0.0.1:{} on {listen} up", echo.port());
    assert!(text.contains(&line), "{line:?} in\n{text}");
    assert!(
        text.contains(&format!("  dynamic 127.0.0.1:{socks}")),
        "{text}"
    );
    assert_eq!(text.lines().count(), 4, "{text}");

    // A forced restart of sshd: counted, `since` and the connection move, the new port shows.
    let before = SystemTime::now();
    sshd.restart();
    let second = wait_tunnel(&daemon, "db", "up on a new connection", |t| {
        is_up(t) && t["connection"] != first["connection"]
    });
    assert!(second["reconnects"].as_u64().unwrap() >= 1, "{second:#}");
    let kinds = second["reconnects_by_kind"].as_object().unwrap();
    assert_eq!(
        kinds.values().map(|n| n.as_u64().unwrap()).sum::<u64>(),
        second["reconnects"].as_u64().unwrap()
    );
    let last = &second["last_error"];
    assert!(
        last["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{second:#}"
    );
    assert!(last["kind"].is_string(), "{second:#}");
    assert!(time(&last["at"]) >= before, "{second:#}");
    assert!(
        time(&second["since"]) > time(&first["since"]),
        "{first:#}\n{second:#}"
    );
    assert!(time(&second["since"]) >= before);
    let allocated = port_of(&second["forwards"][1]["listen"][0]);
    exchange(allocated, b"through the port allocated after the restart");
}

#[test]
fn a_refused_remote_forward_shows_degraded_with_its_reason() {
    let dir = test_dir();
    let sshd = Sshd::builder()
        .config_line("PermitListen 127.0.0.1:1")
        .start();
    let echo = EchoServer::start();
    let refused = free_port();
    let config = write_config(
        dir.path(),
        &format!(
            "{}[tunnels.db]\n{}remote = [\"{refused}:127.0.0.1:{}\"]\n",
            defaults_for(&sshd, dir.path()),
            host_line(&sshd),
            echo.port()
        ),
    );
    let daemon = TunneldProcess::spawn(&["run", "--config", config.to_str().unwrap()], &[]);
    let degraded = wait_tunnel(&daemon, "db", "degraded and refused", |t| {
        t["state"] == "degraded" && t["forwards"][0]["state"] == "retrying"
    });
    let reason = degraded["forwards"][0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("refuses remote port forwarding"),
        "{degraded:#}"
    );
    assert!(
        degraded["reason"].as_str().unwrap().contains(reason),
        "{degraded:#}"
    );
    let socket = socket_of(&daemon);
    let out = tunneld(&["status", "--socket", socket.to_str().unwrap()], &[]);
    let (code, text, _) = parts(&out);
    assert_eq!(code, Some(1), "not every tunnel is up: {text}");
    assert!(text.starts_with("db degraded for "), "{text}");
    assert!(text.contains(reason), "{text}");
}

/// Connects to `port` over and over until stopped; counts refusals.
fn keep_connecting(
    port: u16,
    stop: Arc<AtomicBool>,
    refused: Arc<AtomicUsize>,
) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        let mut tries = 0;
        while !stop.load(Ordering::Relaxed) {
            if TcpStream::connect(localhost(port)).is_err() {
                refused.fetch_add(1, Ordering::Relaxed);
            }
            tries += 1;
            // A pace, not a synchronisation: each connection is forwarded through the tunnel,
            // and a tight loop would only load the machine.
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        tries
    })
}

#[test]
fn reconnect_and_sigusr1_keep_the_listeners_bound_and_reload_answers() {
    let dir = test_dir();
    let sshd = Sshd::start();
    let echo = EchoServer::start();
    let (port, other) = (free_port(), free_port());
    let defaults = defaults_for(&sshd, dir.path());
    let db = format!(
        "[tunnels.db]\n{}local = [\"{port}:127.0.0.1:{}\"]\n",
        host_line(&sshd),
        echo.port()
    );
    let config = write_config(dir.path(), &format!("{defaults}{db}"));
    let daemon = TunneldProcess::spawn(&["run", "--config", config.to_str().unwrap()], &[]);
    let first = wait_tunnel(&daemon, "db", "up", is_up);
    let socket = socket_of(&daemon);
    let sock = socket.to_str().unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let refused = Arc::new(AtomicUsize::new(0));
    let prober = keep_connecting(port, stop.clone(), refused.clone());
    let out = tunneld(&["reconnect", "--socket", sock, "db"], &[]);
    assert_eq!(
        parts(&out),
        (Some(0), "reconnecting: db\n".to_owned(), String::new())
    );
    let second = wait_tunnel(&daemon, "db", "up on a new connection", |t| {
        is_up(t) && t["connection"] != first["connection"]
    });
    // Asked for, not a failure.
    assert_eq!(second["reconnects"], 0, "{second:#}");
    daemon.signal(Signal::SIGUSR1);
    wait_tunnel(&daemon, "db", "up after SIGUSR1", |t| {
        is_up(t) && t["connection"] != second["connection"]
    });
    stop.store(true, Ordering::Relaxed);
    let tries = prober.join().unwrap();
    assert!(tries > 0);
    assert_eq!(
        refused.load(Ordering::Relaxed),
        0,
        "the listener was closed during a reconnect"
    );
    assert_eq!(sshd.logins(), 3);
    exchange(port, b"after the reconnects");

    let out = tunneld(&["reconnect", "--socket", sock, "db", "nope"], &[]);
    let (code, _, stderr) = parts(&out);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("no tunnel named nope (running: db)"),
        "{stderr}"
    );

    // Reload: a tunnel added, one unchanged.
    let web = format!(
        "[tunnels.web]\n{}local = [\"{other}:127.0.0.1:{}\"]\n",
        host_line(&sshd),
        echo.port()
    );
    std::fs::write(&config, format!("{defaults}{db}{web}")).unwrap();
    let out = tunneld(&["reload", "--socket", sock], &[]);
    let (code, stdout, stderr) = parts(&out);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert_eq!(
        stdout,
        "reloaded\n  added: web\n  removed: -\n  restarted: -\n  unchanged: db\n"
    );
    wait_tunnel(&daemon, "web", "up", is_up);

    // A broken file: exit 78 with the file's line, and nothing changed.
    std::fs::write(&config, format!("{defaults}{db}[tunnels.web\n")).unwrap();
    let out = tunneld(&["reload", "--socket", sock], &[]);
    let (code, _, stderr) = parts(&out);
    assert_eq!(code, Some(78), "{stderr}");
    assert!(
        stderr.contains(&format!("{}:", config.display())),
        "{stderr}"
    );
    let (code, all) = status(&socket);
    assert_eq!(code, Some(0));
    let names: Vec<&str> = all["tunnels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["db", "web"]);
}
