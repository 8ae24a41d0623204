//! A snapshot of the supervisor, as the control socket's status object shows it.

use std::time::SystemTime;

use tunneld_control::{ForwardStatus, LastError, Metrics, StatusReply, TunnelStatus, VERSION};
use tunneld_supervisor::{ForwardSnapshot, Snapshot, TunnelSnapshot};

use crate::metrics_state::MetricsState;

/// RFC 3339 in UTC, to the millisecond (two states a second apart must not look the same).
pub(crate) fn rfc3339(at: SystemTime) -> String {
    humantime::format_rfc3339_millis(at).to_string()
}

/// The status object of `snapshot`'s tunnels.
pub(crate) fn reply(snapshot: Snapshot, metrics: &MetricsState) -> StatusReply {
    StatusReply {
        version: VERSION,
        tunnels: snapshot.tunnels.into_iter().map(tunnel).collect(),
        metrics: match metrics {
            MetricsState::Off => None,
            MetricsState::Listening(address) => Some(Metrics {
                listen: Some(address.to_string()),
                address: None,
                error: None,
            }),
            MetricsState::Failed { address, error } => Some(Metrics {
                listen: None,
                address: Some(address.to_string()),
                error: Some(error.clone()),
            }),
        },
    }
}

fn tunnel(t: TunnelSnapshot) -> TunnelStatus {
    TunnelStatus {
        reconnects: t.reconnects_total(),
        reconnects_by_kind: t
            .reconnects
            .iter()
            .map(|(kind, n)| (kind.to_string(), *n))
            .collect(),
        name: t.name,
        state: t.state.as_str().to_owned(),
        since: rfc3339(t.since),
        connection: t.connection,
        peer: t.peer,
        reason: t.reason,
        retry_in_seconds: t.retry_in.map(|d| d.as_secs_f64()),
        last_error: t.last_error.map(|e| LastError {
            message: e.message,
            kind: e.kind.to_string(),
            at: Some(rfc3339(e.at)),
        }),
        last_connect: t.last_connect.map(rfc3339),
        keepalive_rtt_seconds: t.keepalive_rtt.map(|d| d.as_secs_f64()),
        forwards: t.forwards.into_iter().map(forward).collect(),
    }
}

fn forward(f: ForwardSnapshot) -> ForwardStatus {
    ForwardStatus {
        kind: f.kind.as_str().to_owned(),
        spec: f.spec,
        listen: f.listen,
        state: f.state.as_str().to_owned(),
        reason: f.reason,
        active: f.active,
        connections_total: f.connections_total,
        bytes_in: f.bytes_in,
        bytes_out: f.bytes_out,
    }
}
