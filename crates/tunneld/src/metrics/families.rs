//! The metrics, built at each scrape from a snapshot of the supervisor: no second set of
//! counters, so that `tunneld status` and the metrics always agree.
//!
//! The `prometheus` crate (tikv/rust-prometheus) encodes them in the classic text format 0.0.4,
//! which Debian's promtool 2.42 accepts; the OpenMetrics output of `prometheus-client` was
//! rejected by it ("x_total no help text", "unknown metric type info").

use std::time::UNIX_EPOCH;

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{GaugeVec, IntCounterVec, IntGaugeVec, Opts};
use tunneld_supervisor::{ForwardStateName, Snapshot, StateName, Viewer};

/// Every metric: name, help, labels, and whether it is a counter.
const METRICS: [(&str, &str, &[&str], Kind); 10] = [
    (
        "tunneld_build_info",
        "Always 1; the version of tunneld serving these metrics.",
        &["version"],
        Kind::Gauge,
    ),
    (
        "tunneld_tunnel_up",
        "1 when the tunnel is up (connected, every forward serving), else 0.",
        &["tunnel"],
        Kind::Gauge,
    ),
    (
        "tunneld_tunnel_state",
        "1 for the state the tunnel is in, 0 for the others.",
        &["tunnel", "state"],
        Kind::Gauge,
    ),
    (
        "tunneld_forward_up",
        "1 when the forward is serving, else 0.",
        &["tunnel", "forward"],
        Kind::Gauge,
    ),
    (
        "tunneld_reconnects_total",
        "Times a failure made the tunnel connect again, by the failure's class.",
        &["tunnel", "kind"],
        Kind::Counter,
    ),
    (
        "tunneld_forward_connections_total",
        "Connections carried by the forward.",
        &["tunnel", "forward"],
        Kind::Counter,
    ),
    (
        "tunneld_forward_connections_active",
        "Connections the forward carries now.",
        &["tunnel", "forward"],
        Kind::Gauge,
    ),
    (
        "tunneld_forward_bytes_total",
        "Bytes through the forward: in, sent by its clients; out, sent back to them.",
        &["tunnel", "forward", "direction"],
        Kind::Counter,
    ),
    (
        "tunneld_keepalive_rtt_seconds",
        "Round trip of the last answered keepalive probe: the latency to the server.",
        &["tunnel"],
        Kind::FloatGauge,
    ),
    (
        "tunneld_last_connect_timestamp_seconds",
        "When the tunnel's current or last connection came up, in seconds since the epoch.",
        &["tunnel"],
        Kind::FloatGauge,
    ),
];

#[derive(Clone, Copy)]
enum Kind {
    Gauge,
    FloatGauge,
    Counter,
}

/// A [`Collector`] that reads the supervisor's snapshot at every scrape.
pub(crate) struct SnapshotCollector {
    viewer: Viewer,
    descs: Vec<Desc>,
}

impl SnapshotCollector {
    pub(crate) fn new(viewer: Viewer) -> Self {
        let descs = METRICS
            .iter()
            .filter_map(|(name, help, labels, _)| {
                let labels = labels.iter().map(|l| (*l).to_owned()).collect();
                Desc::new(
                    (*name).to_owned(),
                    (*help).to_owned(),
                    labels,
                    Default::default(),
                )
                .ok()
            })
            .collect();
        SnapshotCollector { viewer, descs }
    }
}

impl Collector for SnapshotCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        families(&self.viewer.snapshot())
    }
}

/// One family's series, filled from a snapshot.
enum Family {
    Int(IntGaugeVec),
    Float(GaugeVec),
    Counter(IntCounterVec),
}

impl Family {
    fn new(name: &str, help: &str, labels: &[&str], kind: Kind) -> Option<Family> {
        let opts = Opts::new(name, help);
        Some(match kind {
            Kind::Gauge => Family::Int(IntGaugeVec::new(opts, labels).ok()?),
            Kind::FloatGauge => Family::Float(GaugeVec::new(opts, labels).ok()?),
            Kind::Counter => Family::Counter(IntCounterVec::new(opts, labels).ok()?),
        })
    }

    fn set(&self, labels: &[&str], value: u64) {
        match self {
            Family::Int(vec) => {
                if let Ok(gauge) = vec.get_metric_with_label_values(labels) {
                    gauge.set(i64::try_from(value).unwrap_or(i64::MAX));
                }
            }
            Family::Counter(vec) => {
                if let Ok(counter) = vec.get_metric_with_label_values(labels) {
                    counter.inc_by(value);
                }
            }
            Family::Float(_) => self.set_f64(labels, value as f64),
        }
    }

    fn set_f64(&self, labels: &[&str], value: f64) {
        if let Family::Float(vec) = self
            && let Ok(gauge) = vec.get_metric_with_label_values(labels)
        {
            gauge.set(value);
        }
    }

    fn collect(&self) -> Vec<MetricFamily> {
        match self {
            Family::Int(vec) => vec.collect(),
            Family::Float(vec) => vec.collect(),
            Family::Counter(vec) => vec.collect(),
        }
    }
}

/// Every metric family for `snapshot`, in [`METRICS`] order. A family with no series (no
/// reconnects yet, no round trip measured) is left out.
pub(crate) fn families(snapshot: &Snapshot) -> Vec<MetricFamily> {
    let made: Vec<Option<Family>> = METRICS
        .iter()
        .map(|(name, help, labels, kind)| Family::new(name, help, labels, *kind))
        .collect();
    let [
        Some(build),
        Some(up),
        Some(state),
        Some(forward_up),
        Some(reconnects),
        Some(connections),
        Some(active),
        Some(bytes),
        Some(rtt),
        Some(last_connect),
    ] = made.as_slice()
    else {
        // Only a programming error in METRICS gets here, and the test of this module finds it.
        return Vec::new();
    };
    build.set(&[env!("CARGO_PKG_VERSION")], 1);
    for tunnel in &snapshot.tunnels {
        let name = tunnel.name.as_str();
        up.set(&[name], u64::from(tunnel.state == StateName::Up));
        for each in StateName::ALL {
            state.set(&[name, each.as_str()], u64::from(tunnel.state == each));
        }
        for (kind, count) in &tunnel.reconnects {
            reconnects.set(&[name, &kind.to_string()], *count);
        }
        if let Some(measured) = tunnel.keepalive_rtt {
            rtt.set_f64(&[name], measured.as_secs_f64());
        }
        if let Some(at) = tunnel
            .last_connect
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        {
            last_connect.set_f64(&[name], at.as_secs_f64());
        }
        for forward in &tunnel.forwards {
            let spec = forward.spec.as_str();
            let serving = forward.state == ForwardStateName::Up;
            forward_up.set(&[name, spec], u64::from(serving));
            connections.set(&[name, spec], forward.connections_total);
            active.set(&[name, spec], forward.active);
            bytes.set(&[name, spec, "in"], forward.bytes_in);
            bytes.set(&[name, spec, "out"], forward.bytes_out);
        }
    }
    made.iter()
        .flatten()
        .flat_map(Family::collect)
        // The encoder refuses a family without series.
        .filter(|family| !family.get_metric().is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use prometheus::{Encoder, TextEncoder};
    use tunneld_ssh::FailureKind;
    use tunneld_supervisor::{ForwardKind, ForwardSnapshot, TunnelSnapshot};

    use super::*;

    fn snapshot() -> Snapshot {
        let forward = ForwardSnapshot {
            kind: ForwardKind::Remote,
            spec: "0:localhost:80".to_owned(),
            listen: vec!["localhost:40000".to_owned()],
            state: ForwardStateName::Up,
            reason: None,
            active: 2,
            connections_total: 7,
            bytes_in: 100,
            bytes_out: 2000,
        };
        let tunnel = TunnelSnapshot {
            name: "db".to_owned(),
            state: StateName::Up,
            since: SystemTime::now(),
            connection: Some(3),
            peer: Some("db-server".to_owned()),
            reason: None,
            retry_in: None,
            last_error: None,
            reconnects: vec![(FailureKind::Network, 4), (FailureKind::HostKey, 1)],
            keepalive_rtt: Some(Duration::from_millis(250)),
            last_connect: Some(UNIX_EPOCH + Duration::from_secs(1_800_000_000)),
            forwards: vec![forward],
        };
        Snapshot {
            tunnels: vec![tunnel],
        }
    }

    fn text(snapshot: &Snapshot) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&families(snapshot), &mut out)
            .unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn every_metric_is_there_with_its_labels_and_values() {
        let text = text(&snapshot());
        for line in [
            "tunneld_build_info{version=\"",
            "tunneld_tunnel_up{tunnel=\"db\"} 1",
            "tunneld_tunnel_state{state=\"up\",tunnel=\"db\"} 1",
            "tunneld_tunnel_state{state=\"degraded\",tunnel=\"db\"} 0",
            "tunneld_forward_up{forward=\"0:localhost:80\",tunnel=\"db\"} 1",
            "tunneld_reconnects_total{kind=\"network\",tunnel=\"db\"} 4",
            "tunneld_reconnects_total{kind=\"host-key\",tunnel=\"db\"} 1",
            "tunneld_forward_connections_total{forward=\"0:localhost:80\",tunnel=\"db\"} 7",
            "tunneld_forward_connections_active{forward=\"0:localhost:80\",tunnel=\"db\"} 2",
            "tunneld_forward_bytes_total{direction=\"in\",forward=\"0:localhost:80\",tunnel=\"db\"} 100",
            "tunneld_forward_bytes_total{direction=\"out\",forward=\"0:localhost:80\",tunnel=\"db\"} 2000",
            "tunneld_keepalive_rtt_seconds{tunnel=\"db\"} 0.25",
            "tunneld_last_connect_timestamp_seconds{tunnel=\"db\"} 1800000000",
            "# TYPE tunneld_reconnects_total counter",
            "# TYPE tunneld_tunnel_state gauge",
        ] {
            assert!(text.contains(line), "no {line:?} in:\n{text}");
        }
        assert_eq!(families(&snapshot()).len(), METRICS.len());
        assert_eq!(families(&Snapshot { tunnels: vec![] }).len(), 1);
    }

    #[test]
    fn what_is_not_known_has_no_series() {
        let mut snapshot = snapshot();
        let tunnel = &mut snapshot.tunnels[0];
        tunnel.reconnects.clear();
        tunnel.keepalive_rtt = None;
        tunnel.last_connect = None;
        let text = text(&snapshot);
        for absent in [
            "tunneld_reconnects_total{",
            "tunneld_keepalive_rtt_seconds{",
            "tunneld_last_connect_timestamp_seconds{",
        ] {
            assert!(!text.contains(absent), "{absent:?} in:\n{text}");
        }
    }
}
