//! Names that do not resolve, against a resolver the test controls: tunneld runs in network and
//! mount namespaces of its own, where /etc/resolv.conf names a tiny DNS server on the
//! namespace's 127.0.0.1 that answers NXDOMAIN, SERVFAIL or nothing, by name. Nothing leaves the
//! machine: the namespace has no interface but its own loopback.
//!
//! Checks, over a window of several seconds: that a name that does not exist (NXDOMAIN, a
//! mistyped jump host) backs off at `backoff_max` like a configuration error while a name that
//! got no answer is the network's and is retried under `backoff_max_network`; and that each
//! failure is logged once at info however often it repeats (the repeats are at debug).
//!
//! Needs root (namespaces, bind mounts). Without it the test says why and skips; in CI it fails.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use harness::{TestDir, TunneldProcess, free_port, tunneld_bin};

/// The DNS server, then tunneld: the server's socket is bound before tunneld starts, so no
/// query can miss it. Brings the namespace's loopback up first (no `ip` needed).
const DNS_THEN_TUNNELD: &str = r#"
import fcntl, os, socket, struct, sys

log_path, program = sys.argv[1], sys.argv[2:]
ctl = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
ifr = fcntl.ioctl(ctl, 0x8913, struct.pack("16sh", b"lo", 0))  # SIOCGIFFLAGS
flags = struct.unpack("16sh", ifr[:18])[1]
fcntl.ioctl(ctl, 0x8914, struct.pack("16sh", b"lo", flags | 1))  # SIOCSIFFLAGS, IFF_UP
server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
server.bind(("127.0.0.1", 53))
if os.fork() != 0:
    server.close()
    os.execv(program[0], program)
log = open(log_path, "a", buffering=1)
while True:
    data, peer = server.recvfrom(4096)
    if len(data) < 17:
        continue
    qid, flags = struct.unpack(">HH", data[:4])
    i, labels = 12, []
    while i < len(data) and data[i] != 0:
        labels.append(data[i + 1 : i + 1 + data[i]].decode("ascii", "replace").lower())
        i += 1 + data[i]
    question = data[12 : i + 5]
    qtype = struct.unpack(">H", data[i + 1 : i + 3])[0]
    log.write("%s %d\n" % (".".join(labels), qtype))
    first = labels[0] if labels else ""
    if first == "silent":
        continue
    rcode = 2 if first == "servfail" else 3  # SERVFAIL, else NXDOMAIN
    answer = struct.pack(">HHHHHH", qid, 0x8080 | (flags & 0x0100) | rcode, 1, 0, 0, 0)
    server.sendto(answer + question, peer)
"#;

const BACKOFF: &str =
    "backoff_min = \"100ms\"\nbackoff_max = \"2s\"\nbackoff_max_network = \"300ms\"\n";
const WINDOW: Duration = Duration::from_secs(6);

/// Whether namespaces can be made here; `None` with the reason when they cannot.
fn namespaces_unavailable() -> Option<String> {
    if !nix::unistd::Uid::effective().is_root() {
        return Some("needs root for network and mount namespaces".to_owned());
    }
    match std::process::Command::new("unshare")
        .args(["--mount", "--net", "true"])
        .status()
    {
        Ok(status) if status.success() => None,
        Ok(status) => Some(format!("unshare --mount --net failed: {status}")),
        Err(err) => Some(format!("cannot run unshare: {err}")),
    }
}

fn tunnel(name: &str, host_lines: &str) -> String {
    format!(
        "[tunnels.{name}]\n{host_lines}known_hosts = \"/nonexistent/known_hosts\"\n\
         {BACKOFF}local = [\"{}:127.0.0.1:9\"]\n\n",
        free_port()
    )
}

/// The lines of `text` logged for tunnel `name` that contain `what`.
fn lines<'a>(text: &'a str, name: &str, what: &str) -> Vec<&'a str> {
    let prefix = format!("tunnel{{tunnel={name}}}: {what}");
    text.lines().filter(|l| l.contains(&prefix)).collect()
}

/// `retry_in=1.8s` / `retry_in=283.1ms` of a log line.
fn retry_in(line: &str) -> Duration {
    let value = line
        .split_whitespace()
        .find_map(|field| field.strip_prefix("retry_in="))
        .unwrap_or_else(|| panic!("no retry_in in {line}"));
    let (number, scale) = if let Some(ms) = value.strip_suffix("ms") {
        (ms, 1e-3)
    } else if let Some(us) = value.strip_suffix("µs") {
        (us, 1e-6)
    } else {
        (value.strip_suffix('s').unwrap(), 1.0)
    };
    Duration::from_secs_f64(number.parse::<f64>().unwrap() * scale)
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn a_name_that_does_not_exist_waits_like_a_config_error_and_each_failure_is_logged_once() {
    if let Some(why) = namespaces_unavailable() {
        assert!(
            !harness::service::in_ci(),
            "CI must run the DNS test, but: {why}"
        );
        eprintln!("SKIPPED: dns: {why}");
        return;
    }
    let dir = TestDir::new();
    let resolv = write(
        dir.path(),
        "resolv.conf",
        "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n",
    );
    let nsswitch = write(dir.path(), "nsswitch.conf", "hosts: files dns\n");
    let server = write(dir.path(), "dns.py", DNS_THEN_TUNNELD);
    let queries = dir.path().join("queries.log");
    let config = write(
        dir.path(),
        "tunneld.toml",
        &[
            // Jump hosts take nothing from the tunnel: the agent is for them too.
            "[defaults]\nuse_agent = true\n\n".to_owned(),
            tunnel("missing", "host = \"nonexistent.invalid\"\n"),
            tunnel("typo", "host = \"db.invalid\"\njump = [\"bastoin\"]\n"),
            tunnel("servfail", "host = \"servfail.test\"\n"),
            tunnel("silent", "host = \"silent.test\"\n"),
        ]
        .concat(),
    );
    let script = format!(
        "set -e; mount --bind {resolv} /etc/resolv.conf; mount --bind {nsswitch} /etc/nsswitch.conf; \
         exec python3 {server} {} {} run --config {config}",
        queries.display(),
        tunneld_bin().display(),
    );
    let tunneld = TunneldProcess::spawn_program(
        Path::new("unshare"),
        &["--mount", "--net", "--", "sh", "-c", &script],
        &[("RUST_LOG", "info,tunneld_supervisor::failure_log=debug")],
    );
    for name in ["missing", "typo", "servfail", "silent"] {
        tunneld.expect_log(
            &format!("tunnel{{tunnel={name}}}: tunnel down; reconnecting"),
            Duration::from_secs(20),
        );
    }
    let before = tunneld.logs();
    // The scenario: the names keep failing for a while.
    std::thread::sleep(WINDOW);
    let all = tunneld.logs();
    let window = &all[before.len()..];

    // Each failure said once at info, with its kind and its exact error.
    let first = |name| {
        let said = lines(&all, name, "tunnel down; reconnecting");
        assert_eq!(said.len(), 1, "{name}: {said:#?}");
        said[0]
    };
    let missing = first("missing");
    assert!(
        missing.contains(
            "error=cannot resolve nonexistent.invalid: failed to lookup address information: "
        ) && missing.contains("error_kind=config permanent=true"),
        "{missing}"
    );
    let typo = first("typo");
    assert!(
        typo.contains("error=hop 1 (bastoin): cannot resolve bastoin: ")
            && typo.contains("error_kind=config permanent=true"),
        "{typo}"
    );
    for name in ["servfail", "silent"] {
        let said = first(name);
        assert!(
            said.contains(&format!("error=cannot resolve {name}.test: "))
                && said.contains("error_kind=network permanent=false"),
            "{said}"
        );
    }
    // Nothing else at info or above while they keep failing, but at most one more
    // "connecting" (the attempt right after a failure that was logged).
    let loud: Vec<&str> = window
        .lines()
        .filter(|l| !l.contains("DEBUG") && !l.contains(": connecting peer="))
        .collect();
    assert!(loud.is_empty(), "logged at info while failing: {loud:#?}");
    for name in ["missing", "typo", "servfail", "silent"] {
        let connecting = lines(&all, name, "connecting peer=").len();
        assert!(connecting <= 2, "{name}: {connecting} connecting lines");
    }

    // The backoff, from every attempt's line (the repeats at debug carry the same fields).
    let attempts = |name: &str| {
        let mut all_lines = lines(&all, name, "tunnel down; reconnecting");
        all_lines.extend(lines(&all, name, "tunnel down again; reconnecting"));
        all_lines.into_iter().map(retry_in).collect::<Vec<_>>()
    };
    let mut report = Vec::new();
    for name in ["missing", "typo"] {
        let waits = attempts(name);
        for wait in &waits {
            assert!(
                *wait >= Duration::from_millis(1600) && *wait <= Duration::from_secs(2),
                "{name}: a name that does not exist waits at backoff_max, not {wait:?}"
            );
        }
        report.push(format!("{name}: {} attempts", waits.len()));
    }
    for name in ["servfail", "silent"] {
        let waits = attempts(name);
        for wait in &waits {
            assert!(
                *wait <= Duration::from_millis(300),
                "{name}: no DNS answer is retried within backoff_max_network, not {wait:?}"
            );
        }
        report.push(format!("{name}: {} attempts", waits.len()));
    }
    let count = |name: &str| attempts(name).len();
    assert!(count("missing") <= 6, "{report:?}");
    assert!(count("servfail") >= 3 * count("missing"), "{report:?}");
    // The server saw what tunneld asked, and nothing else reached it.
    let asked = std::fs::read_to_string(&queries).unwrap();
    assert!(asked.contains("nonexistent.invalid 1"), "{asked}");
    assert!(asked.contains("bastoin 1"), "{asked}");
    eprintln!(
        "[dns] {:.0} s after each first failure: {}; info/warn lines in the window: {}; DNS queries: {}",
        WINDOW.as_secs_f64(),
        report.join(", "),
        loud.len(),
        asked.lines().count()
    );
}
