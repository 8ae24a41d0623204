//! `tunneld check --connect`: connects each tunnel once, with the daemon's own code, and tries
//! each forward without binding anything here: a channel to each local forward's target, and
//! each remote port asked for and given back (a socket the server would listen on is not asked
//! for: sshd keeps its file). Nothing is written (known_hosts included), so it
//! runs beside the live daemon; a remote port that daemon holds is reported as such.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use tunneld_config::{RemoteListen, Tunnel};
use tunneld_control::StatusReply;
use tunneld_ssh::{Connection, Progress, RemoteForwardError};

/// What the running daemon holds: `(tunnel, port)` of each remote forward that listens.
#[derive(Debug, Default)]
pub(crate) struct Held {
    ports: Vec<(String, u16)>,
}

impl Held {
    /// From the daemon's status.
    pub(crate) fn from_status(reply: Option<&StatusReply>) -> Held {
        let ports = reply
            .into_iter()
            .flat_map(|reply| &reply.tunnels)
            .flat_map(|tunnel| {
                tunnel
                    .forwards
                    .iter()
                    .filter(|f| f.kind == "remote")
                    .flat_map(|f| &f.listen)
                    .filter_map(|listen| listen.rsplit_once(':')?.1.parse().ok())
                    .map(|port| (tunnel.name.clone(), port))
            })
            .collect();
        Held { ports }
    }

    /// Whether the daemon holds remote `port` for `tunnel`. A port 0 forward never clashes.
    fn holds(&self, tunnel: &str, port: u16) -> bool {
        port != 0 && self.ports.iter().any(|(t, p)| t == tunnel && *p == port)
    }
}

/// Connects `tunnel` and tries its forwards, printing one line for the tunnel and one per
/// forward. Returns the number of failures.
pub(crate) async fn tunnel(tunnel: &Tunnel, held: &Held) -> usize {
    let name = &tunnel.name;
    let owned = name.clone();
    let progress = move |step: Progress| {
        if let Progress::WouldLearn { peer, fingerprint } = step {
            println!("{owned}: {peer}: unknown host, would learn {fingerprint} (accept-new)");
        }
    };
    let connection = match Connection::establish_read_only(
        &tunnel.target,
        &tunnel.jump,
        &tunnel.keepalive,
        &progress,
    )
    .await
    {
        Ok(connection) => Arc::new(connection),
        Err(err) => {
            println!("{name}: FAILED: {err}");
            return 1;
        }
    };
    println!("{name}: ok, connected to {}", connection.peer());
    let mut failures = 0;
    for forward in &tunnel.local {
        let originator = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        match connection
            .open_channel(forward.target.clone(), originator)
            .await
        {
            Ok(channel) => {
                let _ = channel.eof().await;
                let _ = channel.close().await;
                println!("  local {}: ok", forward.spec);
            }
            Err(err) => {
                failures += 1;
                println!("  local {}: FAILED: {err}", forward.spec);
            }
        }
    }
    for forward in &tunnel.remote {
        if let RemoteListen::Socket(path) = &forward.listen {
            // sshd leaves the socket file behind when the request is cancelled (unless it has
            // StreamLocalBindUnlink yes), and the daemon's own request would then be refused.
            println!(
                "  remote {}: not tried: asking for {} would leave its socket file on the server",
                forward.spec,
                path.display()
            );
            continue;
        }
        let forward = Arc::new(forward.clone());
        match connection.request_remote(&forward).await {
            Ok(port) => {
                connection.cancel_remote(&forward, port).await;
                println!("  remote {}: ok", forward.spec);
            }
            Err(RemoteForwardError::PortBusy { port }) if held.holds(name, port) => {
                println!(
                    "  remote {}: ok, port {port} held by the running daemon",
                    forward.spec
                );
            }
            Err(RemoteForwardError::PortBusy { port }) => {
                failures += 1;
                println!(
                    "  remote {}: FAILED: {} refused remote port {port}: in use there, or not \
                     permitted (PermitListen / permitlisten)",
                    forward.spec,
                    connection.peer()
                );
            }
            Err(err) => {
                failures += 1;
                println!("  remote {}: FAILED: {err}", forward.spec);
            }
        }
    }
    for forward in &tunnel.dynamic {
        println!(
            "  dynamic {}: ok (its targets are chosen by clients)",
            forward.spec
        );
    }
    connection
        .disconnect("tunneld check --connect is done")
        .await;
    failures
}
