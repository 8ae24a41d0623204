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
    if t.reconnects > 0 {
        let _ = write!(line, " [{} reconnects]", t.reconnects);
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
    fn sizes_and_durations_read_well() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 * 1024 * 1024 * 1024), "3.0 GiB");
        assert_eq!(rounded(Duration::from_millis(192_500)), "3m 12s");
        assert_eq!(rounded(Duration::from_secs(7_331)), "2h 2m");
    }
}
