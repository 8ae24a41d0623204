//! Each forward of a tunnel in a snapshot: its state, as the published state tells it, and what
//! it carried, as its counters tell.

use tunneld_config::{RemoteListen, Tunnel};

use super::{ForwardKind, ForwardSnapshot, ForwardStateName, TunnelSnapshot};
use crate::counters::TunnelCounters;
use crate::state::{ListenerState, RemoteState, TunnelState};

/// Adds what the counters tell: each forward's traffic and listening addresses, the round trip.
pub(super) fn counted(tunnel: &mut TunnelSnapshot, counters: &TunnelCounters) {
    tunnel.keepalive_rtt = counters.rtt();
    for (forward, counters) in tunnel.forwards.iter_mut().zip(counters.forwards()) {
        let read = counters.read();
        forward.active = read.active;
        forward.connections_total = read.connections_total;
        forward.bytes_in = read.bytes_in;
        forward.bytes_out = read.bytes_out;
        if forward.kind != ForwardKind::Remote {
            forward.listen = read.listen.iter().map(ToString::to_string).collect();
            forward.listen.extend(read.sockets);
        }
    }
}

/// Each forward's state as the published state tells it.
pub(super) fn forwards(tunnel: &Tunnel, state: &TunnelState) -> Vec<ForwardSnapshot> {
    let (remote, listeners) = match state {
        TunnelState::Up {
            remote, listeners, ..
        }
        | TunnelState::Degraded {
            remote, listeners, ..
        } => (remote.as_slice(), Some(listeners.as_slice())),
        _ => (&[][..], None),
    };
    let blank = |kind, spec: &str| ForwardSnapshot {
        kind,
        spec: spec.to_owned(),
        listen: Vec::new(),
        state: ForwardStateName::Down,
        reason: None,
        active: 0,
        connections_total: 0,
        bytes_in: 0,
        bytes_out: 0,
    };
    let listener = |kind, spec: &str, index: usize| {
        let mut forward = blank(kind, spec);
        match listeners.and_then(|l| l.get(index)).map(|l| &l.state) {
            Some(ListenerState::Retrying { reason }) => {
                forward.state = ForwardStateName::Retrying;
                forward.reason = Some(reason.clone());
            }
            // Listeners are bound once and outlive connections: up unless known otherwise.
            Some(ListenerState::Listening) | None => forward.state = ForwardStateName::Up,
        }
        forward
    };
    let mut out = Vec::new();
    for (index, forward) in tunnel.local.iter().enumerate() {
        out.push(listener(ForwardKind::Local, &forward.spec, index));
    }
    for (index, forward) in tunnel.remote.iter().enumerate() {
        let mut snapshot = blank(ForwardKind::Remote, &forward.spec);
        match remote.get(index).map(|r| &r.state) {
            Some(RemoteState::Listening { port }) => {
                snapshot.state = ForwardStateName::Up;
                snapshot.listen = vec![match &forward.listen {
                    RemoteListen::Port { bind, .. } => format!("{bind}:{port}"),
                    RemoteListen::Socket(path) => path.display().to_string(),
                }];
            }
            Some(RemoteState::Requesting) => snapshot.state = ForwardStateName::Requesting,
            Some(RemoteState::Waiting { reason } | RemoteState::Refused { reason }) => {
                snapshot.state = ForwardStateName::Retrying;
                snapshot.reason = Some(reason.clone());
            }
            None => {}
        }
        out.push(snapshot);
    }
    for (index, forward) in tunnel.dynamic.iter().enumerate() {
        out.push(listener(
            ForwardKind::Dynamic,
            &forward.spec,
            tunnel.local.len() + index,
        ));
    }
    out
}
