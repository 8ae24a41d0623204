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
    made.iter().flatten().flat_map(Family::collect).collect()
}
