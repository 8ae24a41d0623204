//! The answers of the control socket in words, for a terminal.

use std::fmt::Write;
use std::time::{Duration, SystemTime};

use tunneld_control::{ForwardStatus, ReloadReply, StatusReply, TunnelStatus};

/// One line per tunnel (name, state, for how long, peer; when not up, why and when the next
/// attempt is), and under it one line per forward.
pub(crate) fn status(reply: &StatusReply, now: SystemTime) -> String {
    let mut out = String::new();
    if reply.tunnels.is_empty() {
        out.push_str("no tunnels\n");
    }
    for tunnel in &reply.tunnels {
        let _ = writeln!(out, "{}", tunnel_line(tunnel, now));
        for forward in &tunnel.forwards {
            let _ = writeln!(out, "  {}", forward_line(forward));
        }
    }
    if let Some(metrics) = &reply.metrics {
        match (&metrics.listen, &metrics.error) {
            (Some(listen), _) => {
                let _ = writeln!(out, "metrics: http://{listen}/metrics");
            }
            (None, Some(error)) => {
                let address = metrics.address.as_deref().unwrap_or("?");
                let _ = writeln!(out, "metrics: cannot listen on {address}: {error}");
            }
            (None, None) => {}
        }
    }
    out
}

fn tunnel_line(t: &TunnelStatus, now: SystemTime) -> String {
    let mut line = format!("{} {}", t.name, t.state);
    if let Ok(since) = humantime::parse_rfc3339(&t.since) {
        let held = now.duration_since(since).unwrap_or(Duration::ZERO);
        let _ = write!(line, " for {}", rounded(held));
    }
    if let Some(peer) = &t.peer {
        let _ = write!(line, " ({peer})");
    }
    if t.state != "up" {
        if let Some(reason) = &t.reason {
            let _ = write!(line, ": {reason}");
        }
        if let Some(seconds) = t.retry_in_seconds {
            let _ = write!(line, "; retry in {}s", seconds.ceil());
        }
    }
    match t.reconnects {
        0 => {}
        1 => line.push_str(" [1 reconnect]"),
        n => {
            let _ = write!(line, " [{n} reconnects]");
        }
    }
    line
}

fn forward_line(f: &ForwardStatus) -> String {
    let mut line = format!("{} {}", f.kind, f.spec);
    if !f.listen.is_empty() {
        let _ = write!(line, " on {}", f.listen.join(", "));
    }
    let _ = write!(line, " {}", f.state);
    if let Some(reason) = &f.reason {
        let _ = write!(line, " ({reason})");
    }
    let _ = write!(
        line,
        ", {} active, {} total, {} in, {} out",
        f.active,
        f.connections_total,
        bytes(f.bytes_in),
        bytes(f.bytes_out)
    );
    line
}

/// A duration to the second (to the minute beyond an hour): "3m 12s", "2days 4h 1m".
fn rounded(d: Duration) -> String {
    let seconds = d.as_secs();
    let seconds = if seconds >= 3600 {
        seconds - seconds % 60
    } else {
        seconds
    };
    humantime::format_duration(Duration::from_secs(seconds)).to_string()
}

/// Bytes in the largest binary unit that keeps a number of at least 1.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// What a reload did.
pub(crate) fn reload(reply: &ReloadReply) -> String {
    let mut out = String::from("reloaded\n");
    for (label, names) in [
        ("added", &reply.added),
        ("removed", &reply.removed),
        ("restarted", &reply.restarted),
        ("unchanged", &reply.unchanged),
    ] {
        let shown = if names.is_empty() {
            "-".to_owned()
        } else {
            names.join(", ")
        };
        let _ = writeln!(out, "  {label}: {shown}");
    }
    for change in &reply.needs_restart {
        let _ = writeln!(out, "  needs a restart: {change}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tunnel_not_up_says_why_and_when_it_retries() {
        let now = humantime::parse_rfc3339("2026-11-26T14:00:08Z").unwrap();
        let reply = StatusReply {
            version: 1,
            tunnels: vec![TunnelStatus {
                name: "web".to_owned(),
                state: "backing-off".to_owned(),
                since: "2026-11-26T14:00:00.000Z".to_owned(),
                connection: None,
                peer: None,
                reason: Some("cannot connect to web:22: refused".to_owned()),
                retry_in_seconds: Some(11.2),
                last_error: None,
                reconnects: 1,
                reconnects_by_kind: [("network".to_owned(), 1)].into(),
                last_connect: None,
                keepalive_rtt_seconds: None,
                forwards: vec![ForwardStatus {
                    kind: "remote".to_owned(),
                    spec: "0:localhost:80".to_owned(),
                    listen: Vec::new(),
                    state: "down".to_owned(),
                    reason: None,
                    active: 0,
                    connections_total: 2,
                    bytes_in: 780,
                    bytes_out: 12_288,
                }],
            }],
            metrics: Some(tunneld_control::Metrics {
                listen: None,
                address: Some("127.0.0.1:9469".to_owned()),
                error: Some("address in use".to_owned()),
            }),
        };
        assert_eq!(
            status(&reply, now),
            "web backing-off for 8s: cannot connect to web:22: refused; retry in 12s [1 reconnect]\n\
             \x20 remote 0:localhost:80 down, 0 active, 2 total, 780 B in, 12.0 KiB out\n\
             metrics: cannot listen on 127.0.0.1:9469: address in use\n"
        );
    }

    #[test]
    fn sizes_and_durations_read_well() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 * 1024 * 1024 * 1024), "3.0 GiB");
        assert_eq!(rounded(Duration::from_millis(192_500)), "3m 12s");
        assert_eq!(rounded(Duration::from_secs(7_331)), "2h 2m");
    }
}
