//! Where the metrics endpoint stands: shared between the metrics server, which publishes it on a
//! watch channel, and what reports it (`tunneld status`, STATUS=).

use std::net::SocketAddr;

/// The state of the metrics endpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) enum MetricsState {
    /// `metrics_listen` is not set.
    #[default]
    Off,
    /// Serving `GET /metrics` on this address (the bound one: port 0 is resolved).
    Listening(SocketAddr),
    /// `metrics_listen` could not be bound; retried. The tunnels are not affected.
    Failed {
        /// The address asked for.
        address: SocketAddr,
        /// Why, in words.
        error: String,
    },
}
