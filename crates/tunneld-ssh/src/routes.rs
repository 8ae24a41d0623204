//! The remote forwards requested on one SSH session, and where the server's forwarded-tcpip
//! channels for them go. The handler asks it about every such channel; the connection registers
//! a route before each `tcpip-forward` request.
//!
//! Routes are registered before the request is sent (pitfall 5: the server can deliver a
//! connection before russh returns, and russh returns 0 for a fixed port), keyed by what was
//! asked for. Connections for anything else are refused.

use std::sync::{Arc, Mutex};

use russh::client::{ChannelOpenHandle, Msg};
use russh::{Channel, ChannelOpenFailure};
use tokio::sync::mpsc;
use tracing::warn;
use tunneld_config::{BindAddress, RemoteForward, RemoteListen};

/// The address string a `tcpip-forward` request carries, as ssh sends it: no bind address sends
/// `localhost`, `*` the empty string (all interfaces, if GatewayPorts lets the client choose),
/// an address as written.
pub fn request_address(bind: &BindAddress) -> String {
    match bind {
        BindAddress::Default => "localhost".to_string(),
        BindAddress::Any => String::new(),
        BindAddress::Host(host) => host.clone(),
    }
}

/// A connection the server forwarded to us, for a port we asked for.
pub struct IncomingForward {
    /// The channel; usable once `reply` has accepted it.
    pub channel: Channel<Msg>,
    /// Accepts or rejects the channel (dropping it rejects).
    pub reply: ChannelOpenHandle,
    /// The forward it belongs to.
    pub forward: Arc<RemoteForward>,
    /// Who connected to the server's port, as the server says.
    pub originator: String,
}

#[derive(Debug)]
struct Route {
    /// The bind address asked for; for a socket, its path.
    address: String,
    /// Whether the server listens on a Unix socket (streamlocal-forward) at `address`.
    socket: bool,
    requested_port: u32,
    /// The port the server listens on: the requested one, or the one it picked for port 0.
    bound_port: Option<u32>,
    forward: Arc<RemoteForward>,
}

/// The remote forwards requested on one SSH session, and where their connections go.
pub(crate) struct Routes {
    routes: Mutex<Vec<Route>>,
    incoming: mpsc::UnboundedSender<IncomingForward>,
}

impl Routes {
    pub(crate) fn new() -> (Arc<Routes>, mpsc::UnboundedReceiver<IncomingForward>) {
        let (incoming, rx) = mpsc::unbounded_channel();
        (
            Arc::new(Routes {
                routes: Mutex::new(Vec::new()),
                incoming,
            }),
            rx,
        )
    }

    /// Registers a route before its request is sent.
    pub(crate) fn add(&self, forward: Arc<RemoteForward>) {
        let route = match &forward.listen {
            RemoteListen::Port { bind, port } => Route {
                address: request_address(bind),
                socket: false,
                requested_port: u32::from(*port),
                bound_port: (*port != 0).then_some(u32::from(*port)),
                forward,
            },
            RemoteListen::Socket(path) => Route {
                address: path.to_string_lossy().into_owned(),
                socket: true,
                requested_port: 0,
                bound_port: None,
                forward,
            },
        };
        if let Ok(mut routes) = self.routes.lock() {
            routes.push(route);
        }
    }

    /// Records the port the server picked for a port-0 request.
    pub(crate) fn bound(&self, forward: &RemoteForward, port: u32) {
        if let Ok(mut routes) = self.routes.lock()
            && let Some(route) = routes.iter_mut().find(|r| *r.forward == *forward)
        {
            route.bound_port = Some(port);
        }
    }

    /// Forgets a route whose request was refused or cancelled.
    pub(crate) fn remove(&self, forward: &RemoteForward) {
        if let Ok(mut routes) = self.routes.lock() {
            routes.retain(|r| *r.forward != *forward);
        }
    }

    /// The forward a forwarded-tcpip channel for `address:port` belongs to: the exact request;
    /// else the only route on that port (servers may report the address they bound rather than
    /// the one asked for); else the only port-0 request still waiting for its answer.
    fn route(&self, address: &str, port: u32) -> Option<Arc<RemoteForward>> {
        let routes = self.routes.lock().ok()?;
        let routes: Vec<&Route> = routes.iter().filter(|r| !r.socket).collect();
        if let Some(route) = routes
            .iter()
            .find(|r| r.address == address && r.bound_port == Some(port))
        {
            return Some(route.forward.clone());
        }
        let mut on_port = routes.iter().filter(|r| r.bound_port == Some(port));
        if let (Some(only), None) = (on_port.next(), on_port.next()) {
            return Some(only.forward.clone());
        }
        let mut pending = routes
            .iter()
            .filter(|r| r.requested_port == 0 && r.bound_port.is_none());
        match (pending.next(), pending.next()) {
            (Some(only), None) => Some(only.forward.clone()),
            _ => None,
        }
    }

    /// The forward a forwarded-streamlocal channel for the socket at `path` belongs to.
    fn socket_route(&self, path: &str) -> Option<Arc<RemoteForward>> {
        let routes = self.routes.lock().ok()?;
        let route = routes.iter().find(|r| r.socket && r.address == path)?;
        Some(route.forward.clone())
    }

    /// Hands a forwarded-streamlocal channel to the tunnel if it is for a socket we asked for;
    /// refuses it otherwise.
    pub(crate) async fn dispatch_socket(
        &self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        path: &str,
    ) {
        let Some(forward) = self.socket_route(path) else {
            warn!(
                path,
                "refusing a forwarded connection for a socket this tunnel did not request"
            );
            reply
                .reject(ChannelOpenFailure::AdministrativelyProhibited)
                .await;
            return;
        };
        let incoming = IncomingForward {
            channel,
            reply,
            forward,
            originator: format!("socket {path}"),
        };
        let _ = self.incoming.send(incoming);
    }

    /// Hands a forwarded-tcpip channel to the tunnel if it is for a port we asked for; refuses
    /// it otherwise.
    pub(crate) async fn dispatch(
        &self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        address: &str,
        port: u32,
        originator: String,
    ) {
        let Some(forward) = self.route(address, port) else {
            warn!(
                address,
                port, "refusing a forwarded connection for a port this tunnel did not request"
            );
            reply
                .reject(ChannelOpenFailure::AdministrativelyProhibited)
                .await;
            return;
        };
        let incoming = IncomingForward {
            channel,
            reply,
            forward,
            originator,
        };
        // If nobody serves remote forwards any more the channel is dropped, which rejects it.
        let _ = self.incoming.send(incoming);
    }
}
