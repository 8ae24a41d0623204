//! The Prometheus endpoint of the tunneld binary (`[daemon] metrics_listen`), checked by the
//! real tools: curl fetches it, Debian's `promtool check metrics` judges the exposition, and a
//! real Prometheus server scrapes it and answers queries. Traffic goes through a real sshd.

// Helpers outside #[test] functions unwrap too: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod support;

use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use harness::service::in_ci;
use harness::{
    EchoServer, Sshd, TestDir, TunneldProcess, free_port, random_bytes, try_echo, wait_until,
};
use nix::sys::signal::Signal;
use support::{test_dir, write_one_tunnel};

const TIMEOUT: Duration = Duration::from_secs(30);
const SERVING: &str = "metrics: serving GET /metrics";

/// tunneld with one tunnel `web` (a local forward to `echo`) and `metrics_listen = listen`,
/// with extra environment variables `env`. Returns it, the forward's spec and its port.
fn start_with(
    dir: &TestDir,
    sshd: &Sshd,
    echo: &EchoServer,
    listen: &str,
    env: &[(&str, &str)],
) -> (TunneldProcess, String, u16) {
    let port = free_port();
    let spec = format!("{port}:127.0.0.1:{}", echo.port());
    let config = write_one_tunnel(dir.path(), sshd, "web", &format!("local = [\"{spec}\"]\n"));
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        format!("[daemon]\nmetrics_listen = \"{listen}\"\n\n{text}"),
    )
    .unwrap();
    let tunneld = TunneldProcess::spawn(&["run", "--config", config.to_str().unwrap()], env);
    tunneld.expect_log("tunnel up", TIMEOUT);
    (tunneld, spec, port)
}

/// [`start_with`] and no extra environment.
fn start(
    dir: &TestDir,
    sshd: &Sshd,
    echo: &EchoServer,
    listen: &str,
) -> (TunneldProcess, String, u16) {
    start_with(dir, sshd, echo, listen, &[])
}

/// The address tunneld says it serves metrics on (the `listen` field of its log line).
fn metrics_address(tunneld: &TunneldProcess) -> String {
    tunneld.expect_log(SERVING, TIMEOUT);
    let logs = tunneld.logs();
    let line = logs.lines().rfind(|l| l.contains(SERVING)).unwrap();
    let field = line
        .split_whitespace()
        .find(|w| w.starts_with("listen="))
        .unwrap();
    field.trim_start_matches("listen=").to_owned()
}

/// `curl` of `url` with `args`: (HTTP status, body).
fn curl(args: &[&str], url: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "-o", "-", "-w", "\n%{http_code}"])
        .args(args)
        .arg(url)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (status.trim().parse().unwrap_or(0), body.to_owned())
}

/// Sends a payload through the forward and checks that it came back.
fn traffic(port: u16, bytes: usize) {
    let payload = random_bytes(bytes, 27);
    let back = try_echo(port, &payload, TIMEOUT).unwrap();
    assert!(back == payload, "the echoed bytes differ");
}

#[test]
fn the_exposition_passes_promtool_and_counts_the_traffic() {
    let dir = test_dir();
    let sshd = Sshd::start();
    let echo = EchoServer::start();
    let (tunneld, spec, port) = start(&dir, &sshd, &echo, "127.0.0.1:0");
    let address = metrics_address(&tunneld);
    traffic(port, 12_345);

    let url = format!("http://{address}/metrics");
    let line = format!(
        "tunneld_forward_bytes_total{{direction=\"in\",forward=\"{spec}\",tunnel=\"web\"}} 12345"
    );
    let mut body = String::new();
    let counted = wait_until(TIMEOUT, || {
        body = curl(&[], &url).1;
        body.contains(&line)
    });
    assert!(counted, "no {line:?} in:\n{body}");
    for expected in [
        "tunneld_build_info{version=\"".to_owned(),
        "tunneld_tunnel_up{tunnel=\"web\"} 1".to_owned(),
        "tunneld_tunnel_state{state=\"up\",tunnel=\"web\"} 1".to_owned(),
        "tunneld_tunnel_state{state=\"backing-off\",tunnel=\"web\"} 0".to_owned(),
        format!("tunneld_forward_up{{forward=\"{spec}\",tunnel=\"web\"}} 1"),
        format!("tunneld_forward_connections_total{{forward=\"{spec}\",tunnel=\"web\"}} 1"),
        format!("tunneld_forward_connections_active{{forward=\"{spec}\",tunnel=\"web\"}} 0"),
        format!(
            "tunneld_forward_bytes_total{{direction=\"out\",forward=\"{spec}\",tunnel=\"web\"}} 12345"
        ),
        "# TYPE tunneld_forward_bytes_total counter".to_owned(),
    ] {
        assert!(body.contains(&expected), "no {expected:?} in:\n{body}");
    }

    // promtool, from Debian's prometheus package, judges the exposition.
    let mut check = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian: prometheus) must be installed");
    check
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = check.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool: {said}\n{body}"
    );

    // Only GET /metrics.
    assert_eq!(curl(&[], &format!("http://{address}/")).0, 404);
    assert_eq!(curl(&["-X", "POST"], &url).0, 405);
}

#[test]
fn a_real_prometheus_scrapes_the_tunnels() {
    let prometheus = Path::new("/usr/bin/prometheus");
    if !prometheus.exists() {
        assert!(
            !in_ci(),
            "CI must have /usr/bin/prometheus (Debian: prometheus)"
        );
        eprintln!("skipped: no /usr/bin/prometheus (Debian: prometheus)");
        return;
    }
    let dir = test_dir();
    let sshd = Sshd::start();
    let echo = EchoServer::start();
    let (tunneld, _spec, port) = start(&dir, &sshd, &echo, "127.0.0.1:0");
    let address = metrics_address(&tunneld);
    traffic(port, 4096);

    let config = dir.write(
        "prometheus.yml",
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: tunneld\n    static_configs:\n      - targets: [\"{address}\"]\n"
        ),
    );
    let web = format!("127.0.0.1:{}", free_port());
    let storage = dir.join("tsdb");
    let server = TunneldProcess::spawn_program(
        prometheus,
        &[
            &format!("--config.file={}", config.display()),
            &format!("--storage.tsdb.path={}", storage.display()),
            &format!("--web.listen-address={web}"),
        ],
        &[],
    );
    let query = |q: &str| {
        curl(
            &["-G", "--data-urlencode", &format!("query={q}")],
            &format!("http://{web}/api/v1/query"),
        )
        .1
    };
    // A non-empty result: its first sample.
    let answered = |q: &str| {
        let answer = query(q);
        answer.contains("\"status\":\"success\"") && answer.contains("\"result\":[{")
    };
    assert!(
        wait_until(Duration::from_secs(60), || answered(
            "tunneld_tunnel_up{tunnel=\"web\"} == 1"
        )),
        "Prometheus has no tunneld_tunnel_up == 1: {}\n{}",
        query("tunneld_tunnel_up"),
        server.logs()
    );
    assert!(
        wait_until(Duration::from_secs(30), || answered(
            "tunneld_forward_bytes_total{tunnel=\"web\",direction=\"in\"} == 4096"
        )),
        "Prometheus has no byte counter of 4096: {}",
        query("tunneld_forward_bytes_total")
    );
}

#[test]
fn a_port_held_by_another_program_delays_the_metrics_not_the_tunnel() {
    let dir = test_dir();
    let sshd = Sshd::start();
    let echo = EchoServer::start();
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let held = holder.local_addr().unwrap();
    let notify_path = dir.join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let env = [("NOTIFY_SOCKET", notify_path.to_str().unwrap())];
    let (tunneld, _spec, port) = start_with(&dir, &sshd, &echo, &held.to_string(), &env);
    tunneld.expect_log("metrics: cannot listen", TIMEOUT);
    // The tunnel is up and forwards all the same.
    traffic(port, 1000);
    assert_eq!(tunneld.count_in_logs(SERVING), 0);
    // systemd is told, in STATUS=.
    let wanted = format!("metrics cannot listen on {held}");
    let mut seen = Vec::new();
    let told = wait_until(TIMEOUT, || {
        let mut buf = [0u8; 4096];
        if let Ok(n) = notify.recv(&mut buf) {
            seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        seen.iter()
            .any(|m| m.contains("STATUS=") && m.contains(&wanted))
    });
    assert!(told, "no STATUS= with {wanted:?}: {seen:#?}");

    drop(holder);
    assert_eq!(metrics_address(&tunneld), held.to_string());
    let (status, body) = curl(&[], &format!("http://{held}/metrics"));
    assert_eq!(status, 200);
    assert!(
        body.contains("tunneld_tunnel_up{tunnel=\"web\"} 1"),
        "{body}"
    );
}

#[test]
fn a_reload_moves_the_metrics_and_leaves_the_tunnels_alone() {
    let dir = test_dir();
    let sshd = Sshd::start();
    let echo = EchoServer::start();
    let (tunneld, _spec, port) = start(&dir, &sshd, &echo, "127.0.0.1:0");
    let first = metrics_address(&tunneld);
    assert_eq!(curl(&[], &format!("http://{first}/metrics")).0, 200);

    let moved = format!("127.0.0.1:{}", free_port());
    let config = dir.join("tunneld.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let text = text.replace(
        "metrics_listen = \"127.0.0.1:0\"",
        &format!("metrics_listen = \"{moved}\""),
    );
    std::fs::write(&config, text).unwrap();
    tunneld.signal(Signal::SIGHUP);
    tunneld.expect_log("metrics: moved", TIMEOUT);
    assert!(tunneld.wait_for_log_count(SERVING, 2, TIMEOUT));
    assert_eq!(metrics_address(&tunneld), moved);
    let (status, body) = curl(&[], &format!("http://{moved}/metrics"));
    assert_eq!(status, 200);
    assert!(
        body.contains("tunneld_tunnel_up{tunnel=\"web\"} 1"),
        "{body}"
    );
    // The old address is let go; the tunnel was not restarted, and still forwards.
    let old_url = format!("http://{first}/metrics");
    assert!(wait_until(TIMEOUT, || curl(&[], &old_url).0 == 0));
    assert_eq!(tunneld.count_in_logs("tunnel up"), 1, "{}", tunneld.logs());
    traffic(port, 1000);
}

#[test]
fn a_huge_or_slow_request_head_is_refused_and_the_endpoint_still_serves() {
    let dir = test_dir();
    let sshd = Sshd::start();
    let echo = EchoServer::start();
    let (tunneld, _spec, _port) = start(&dir, &sshd, &echo, "127.0.0.1:0");
    let address = metrics_address(&tunneld);
    let url = format!("http://{address}/metrics");

    // A head larger than the server takes: 431, not a buffer that grows.
    let big = format!("X-Big: {}", "a".repeat(20_000));
    assert_eq!(curl(&["-H", &big], &url).0, 431);

    // A head that never ends: the server hangs up by itself (after 5 s; the bound here is
    // generous).
    let mut slow = std::net::TcpStream::connect(address.as_str()).unwrap();
    slow.write_all(b"GET /metrics HTTP/1.1\r\n").unwrap();
    slow.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut buf = [0u8; 256];
    let hung_up = match std::io::Read::read(&mut slow, &mut buf) {
        Ok(n) => n == 0 || String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 408"),
        Err(err) => err.kind() == std::io::ErrorKind::ConnectionReset,
    };
    assert!(hung_up, "the server kept a half-sent request open");

    let (status, body) = curl(&[], &url);
    assert_eq!(status, 200);
    assert!(
        body.contains("tunneld_tunnel_up{tunnel=\"web\"} 1"),
        "{body}"
    );
}
