//! How errors and logs name a server.

use std::fmt;

use tunneld_config::Hop;

/// A server as messages name it: `host:port`, or `label (host:port)` when the configuration
/// calls it by a `[hosts]` name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    /// The configuration's name for the server (a `[hosts]` name, or the address as written).
    pub label: String,
    /// `host:port`, with an IPv6 host in brackets.
    pub address: String,
    /// Whether messages say the label: not when it already holds the host name, nor inside an
    /// error that names the hop by its label already.
    show_label: bool,
}

impl Peer {
    /// The peer of one hop of a tunnel.
    pub fn of(hop: &Hop) -> Peer {
        Peer::new(&hop.label, &hop.hostname, hop.port)
    }

    /// The server `host` port `port`, which the configuration calls `label`.
    pub fn new(label: &str, host: &str, port: u16) -> Peer {
        let address = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        Peer {
            show_label: !label.contains(host),
            label: label.to_string(),
            address,
        }
    }

    /// The same server, named by its address alone (its label is said elsewhere).
    pub(crate) fn address_only(&mut self) {
        self.show_label = false;
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.show_label {
            write!(f, "{} ({})", self.label, self.address)
        } else {
            f.write_str(&self.address)
        }
    }
}
