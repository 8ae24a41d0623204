//! The `authorized_keys` line each server of a tunnel needs: what it may forward, and nothing
//! more, in the form sshd matches against what tunneld asks for.

use tunneld_config::{BindAddress, Hop, RemoteListen, RemoteTarget, Target, Tunnel};

/// The forced command: tunneld never opens a session, so it loses nothing, and a stolen key
/// cannot run anything (`restrict` alone does not stop `ssh host cmd`).
pub(crate) const COMMAND: &str = "/usr/sbin/nologin";

/// authorized_keys has no `permitopen="none"` or `permitlisten="none"` (sshd rejects the whole
/// line), and leaving the option out permits everything. This target matches no request that
/// tunneld makes and opens nothing: a `.invalid` name never resolves (RFC 6761), and port 1 is
/// privileged.
pub(crate) const NOTHING: &str = "none.invalid:1";

/// What one server lets one key do, and the notes printed above its line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Grant {
    /// The options, in order, before the key.
    pub(crate) options: Vec<String>,
    /// `#` lines that say what the line cannot narrow, and why.
    pub(crate) notes: Vec<String>,
}

impl Grant {
    /// The line: options, the key (`ssh-ed25519 AAAA...`, without its comment), and
    /// `tunneld:TUNNEL@HOSTNAME`.
    pub(crate) fn line(&self, key: &str, tunnel: &str, hostname: &str) -> String {
        format!(
            "{} {key} tunneld:{tunnel}@{hostname}",
            self.options.join(",")
        )
    }
}

/// Each server of the tunnel, in dialling order (jump hosts, then the target), with its grant:
/// a jump host may only open a channel to the next hop; the target, the tunnel's forwards.
pub(crate) fn grants(tunnel: &Tunnel) -> Vec<(&Hop, Grant)> {
    let mut out = Vec::new();
    let mut hops = tunnel.jump.iter().chain(std::iter::once(&tunnel.target));
    let mut current = hops.next();
    for next in hops {
        if let Some(hop) = current {
            out.push((hop, jump_grant(next)));
        }
        current = Some(next);
    }
    if let Some(target) = current {
        out.push((target, target_grant(tunnel)));
    }
    out
}

fn base() -> Vec<String> {
    vec![
        "restrict".to_owned(),
        "port-forwarding".to_owned(),
        format!("command=\"{COMMAND}\""),
    ]
}

/// The note on every line: `port-forwarding` turns on Unix-socket forwarding too. A
/// `permitopen` also confines connections to sockets (a path never matches `host:port`), but
/// `permitlisten` does not confine listening on one (`ssh -R /path:...`), and without a
/// `permitopen` (a dynamic forward) every socket of the server can be reached.
fn streamlocal_note(any_target: bool) -> String {
    let what = if any_target {
        "reach any Unix socket of the server and listen on new ones"
    } else {
        "make the server listen on a Unix socket (ssh -R /path:...), which permitlisten does not \
         narrow"
    };
    format!(
        "port-forwarding also lets the key {what}: set AllowStreamLocalForwarding no for this \
         account (Match User) in sshd_config"
    )
}

/// A TCP target as permitopen names it (socket targets get no permitopen at all).
fn host_port_of(target: &Target) -> String {
    match target {
        Target::Port { host, port } => host_port(host, &port.to_string()),
        Target::Socket(path) => path.display().to_string(),
    }
}

fn nothing_note(option: &str, what: &str) -> String {
    format!(
        "{option}=\"{NOTHING}\": {what} needs none, and authorized_keys has no {option}=\"none\"; \
         this target matches nothing tunneld asks for and opens nothing"
    )
}

fn jump_grant(next: &Hop) -> Grant {
    let mut options = base();
    options.push(format!(
        "permitopen=\"{}\"",
        host_port(&next.hostname, &next.port.to_string())
    ));
    options.push(format!("permitlisten=\"{NOTHING}\""));
    Grant {
        options,
        notes: vec![
            format!("jump host: may only connect on to {}", next.label),
            nothing_note("permitlisten", "a jump host"),
            streamlocal_note(false),
        ],
    }
}

fn target_grant(tunnel: &Tunnel) -> Grant {
    let mut options = base();
    let mut notes = Vec::new();
    let to_socket = tunnel
        .local
        .iter()
        .find(|f| matches!(f.target, Target::Socket(_)));
    if let Some(forward) = to_socket {
        notes.push(format!(
            "no permitopen: local {} connects to a Unix socket on the server, and sshd refuses \
             every socket connection to a key with permitopen",
            forward.spec
        ));
    } else if let Some(dynamic) = tunnel.dynamic.first() {
        notes.push(format!(
            "no permitopen: dynamic {} connects wherever its SOCKS clients ask, and any \
             permitopen would confine it",
            dynamic.spec
        ));
    } else if tunnel.local.is_empty() {
        options.push(format!("permitopen=\"{NOTHING}\""));
        notes.push(nothing_note(
            "permitopen",
            "a tunnel without local forwards",
        ));
    } else {
        for forward in &tunnel.local {
            push_new(
                &mut options,
                format!("permitopen=\"{}\"", host_port_of(&forward.target)),
            );
        }
    }
    let listens_on_ports = tunnel
        .remote
        .iter()
        .any(|f| matches!(f.listen, RemoteListen::Port { .. }));
    if !listens_on_ports {
        options.push(format!("permitlisten=\"{NOTHING}\""));
        let what = if tunnel.remote.is_empty() {
            "a tunnel without remote forwards"
        } else {
            "a tunnel whose remote forwards all listen on Unix sockets"
        };
        notes.push(nothing_note("permitlisten", what));
    }
    for forward in &tunnel.remote {
        let RemoteListen::Port { bind, port } = &forward.listen else {
            notes.push(format!(
                "remote {}: the server listens on a Unix socket, which permitlisten does not \
                 narrow",
                forward.spec
            ));
            continue;
        };
        // sshd compares the address tunneld sends (`localhost` when none is written, the empty
        // string for `*`) with the option's host, and the port as asked: port 0 matches only
        // `*`, any port.
        let bind = match bind {
            BindAddress::Default => "localhost",
            BindAddress::Any => "*",
            BindAddress::Host(host) => host,
        };
        let port = match *port {
            0 => {
                notes.push(format!(
                    "remote {}: port 0 lets the server pick, so any port on {bind} is permitted",
                    forward.spec
                ));
                "*".to_owned()
            }
            port => port.to_string(),
        };
        if forward.target == RemoteTarget::Socks {
            notes.push(format!(
                "remote {}: a SOCKS proxy on the server whose connections leave from this \
                 device (remote dynamic forwarding): the server permits nothing more for it, but \
                 whoever reaches {} on the server reaches this device's network",
                forward.spec,
                host_port(bind, &port)
            ));
        }
        push_new(
            &mut options,
            format!("permitlisten=\"{}\"", host_port(bind, &port)),
        );
    }
    if to_socket.is_some() {
        notes.push(
            "port-forwarding lets the key reach any Unix socket of the server: socket forwards \
             cannot be narrowed in authorized_keys"
                .to_owned(),
        );
    } else {
        notes.push(streamlocal_note(!tunnel.dynamic.is_empty()));
    }
    Grant { options, notes }
}

fn push_new(options: &mut Vec<String>, option: String) {
    if !options.contains(&option) {
        options.push(option);
    }
}

/// `host:port`, an IPv6 address in brackets as sshd reads it.
pub(crate) fn host_port(host: &str, port: &str) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

#[cfg(test)]
mod tests;
