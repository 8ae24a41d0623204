//! One `[tunnels.NAME]` table to a `Tunnel`: its target and jump chain, forwards, keepalive,
//! backoff and what a failed forward does to it.

use toml::Spanned;

use crate::duration;
use crate::error::{ConfigError, Key};
use crate::forward;
use crate::listeners::{self, Listener, Resolved, SocketListener};
use crate::model::{
    Backoff, DEFAULT_SOCKET_MODE, DynamicForward, Keepalive, Listen, LocalForward, RemoteForward,
    RemoteListen, Tunnel,
};
use crate::raw::{RawDynamic, RawTunnel};
use crate::resolve::{self, JumpList, Named, Pick, Place, Resolver};
use crate::settings::{self, Located, Settings};
use crate::streamlocal;

/// Resolves `[tunnels.NAME]`.
pub(crate) fn resolve(
    r: &Resolver<'_>,
    name: &Spanned<String>,
    raw: &Spanned<RawTunnel>,
) -> Result<Resolved, ConfigError> {
    let key = Key::root("tunnels").field(name.get_ref());
    resolve::check_name(&r.source, name, &key, "tunnel")?;
    let t = raw.get_ref();
    let settings = settings::check(t.common(), &key, &r.source, r.base_dir)?;
    let host = t.host.as_ref().ok_or_else(|| {
        r.source.error(
            &raw.span(),
            &key,
            "host is missing (expected host = a [hosts] name or [user@]hostname[:port])",
        )
    })?;
    let host_place = Place {
        key: key.field("host"),
        span: host.span(),
    };
    let target = r.named(host, &host_place.key)?;
    if let (Named::Literal(spec, label), Some(user)) = (&target, t.common().user)
        && let Some(in_host) = &spec.user
    {
        return Err(r.source.error(
            &user.span(),
            key.field("user"),
            format!(
                "user {:?} contradicts the user {in_host:?} in host {label:?} (expected the \
                 user in one place)",
                user.get_ref()
            ),
        ));
    }

    // The tunnel's own `jump` replaces its host entry's; each hop then brings its own chain.
    let tunnel_jump = t.jump.as_ref().map(|j| JumpList::new(j, key.field("jump")));
    let mut stack = Vec::new();
    let mut hops = Vec::new();
    let target_entry = match &target {
        Named::Entry(entry) => Some(*entry),
        Named::Literal(..) => None,
    };
    let list = match (tunnel_jump, target_entry) {
        (Some(list), _) => Some(list),
        (None, Some(entry)) => entry.jump(),
        (None, None) => None,
    };
    if let Some(list) = list {
        if let Some(entry) = target_entry {
            stack.push((entry.name.as_str(), list.at.clone()));
        }
        r.flatten(&list, &mut stack, &mut hops)?;
    }
    let mut jump = hops
        .iter()
        .map(|(named, at)| r.hop(named, None, at))
        .collect::<Result<Vec<_>, _>>()?;
    // `proxy` is the first hop's way out. A tunnel's own reaches its first jump host, which
    // takes nothing else from the tunnel.
    if let (Some(proxy), Some(first)) = (&settings.proxy, jump.first_mut()) {
        first.proxy = Some(proxy.clone());
    }
    let target_hop = r.hop(&target, Some((&key, &settings)), &host_place)?;
    let dialled = hops
        .iter()
        .map(|(_, at)| at.key.clone())
        .chain(std::iter::once(host_place.key.clone()))
        .collect();

    let mut layers: Vec<&Settings> = vec![&settings];
    if let Some(entry) = target_entry {
        layers.push(&entry.settings);
    }
    layers.push(&r.defaults);
    let pick = Pick(&layers);
    let keepalive = Keepalive {
        interval: pick
            .get(|s| s.keepalive_interval)
            .unwrap_or(Some(resolve::DEFAULT_KEEPALIVE_INTERVAL)),
        max: pick
            .get(|s| s.keepalive_max)
            .unwrap_or(resolve::DEFAULT_KEEPALIVE_MAX),
    };
    let backoff = backoff(r, &pick, name.get_ref())?;

    let (forwards, listeners, remote) = forwards(r, t, &key)?;
    if forwards.local.is_empty() && forwards.remote.is_empty() && forwards.dynamic.is_empty() {
        return Err(r.source.error(
            &raw.span(),
            &key,
            "no forwards (expected at least one of local, remote or dynamic)",
        ));
    }
    Ok(Resolved {
        tunnel: Tunnel {
            name: name.get_ref().clone(),
            target: target_hop,
            jump,
            local: forwards.local,
            remote: forwards.remote,
            dynamic: forwards.dynamic,
            keepalive,
            backoff,
            exit_on_forward_failure: pick.get(|s| s.exit_on_forward_failure).unwrap_or(false),
        },
        listeners,
        remote,
        sockets: forwards.sockets,
        dialled,
    })
}

fn backoff(r: &Resolver<'_>, pick: &Pick<'_>, tunnel: &str) -> Result<Backoff, ConfigError> {
    let min = pick.get(|s| s.backoff_min.clone());
    let max = pick.get(|s| s.backoff_max.clone());
    let network = pick.get(|s| s.backoff_max_network.clone());
    let value = |set: &Option<Located<_>>, default| set.as_ref().map_or(default, |l| l.value);
    let (min_value, max_value) = (
        value(&min, resolve::DEFAULT_BACKOFF_MIN),
        value(&max, resolve::DEFAULT_BACKOFF_MAX),
    );
    let origin = |set: &Option<Located<_>>| {
        set.as_ref()
            .map_or("built-in".to_owned(), |l| l.key.to_string())
    };
    // `short` must not be longer than `long`; the error sits at `blame`, or at whichever of the
    // two was written (one of them was: the built-in defaults are in order).
    let in_order = |short: (&str, &Option<Located<_>>, _),
                    long: (&str, &Option<Located<_>>, _),
                    blame: Option<&Located<_>>| {
        if short.2 <= long.2 {
            return Ok(());
        }
        let message = format!(
            "{} {} ({}) is longer than {} {} ({}) for tunnel {tunnel} (expected {} <= {})",
            short.0,
            duration::show(short.2),
            origin(short.1),
            long.0,
            duration::show(long.2),
            origin(long.1),
            short.0,
            long.0,
        );
        match blame.or(short.1.as_ref()).or(long.1.as_ref()) {
            Some(at) => Err(r.source.error(&at.span, &at.key, message)),
            None => Err(r.source.error(&(0..0), "", message)),
        }
    };
    in_order(
        ("backoff_min", &min, min_value),
        ("backoff_max", &max, max_value),
        None,
    )?;
    let max_network = match &network {
        Some(set) => {
            in_order(
                ("backoff_min", &min, min_value),
                ("backoff_max_network", &network, set.value),
                Some(set),
            )?;
            in_order(
                ("backoff_max_network", &network, set.value),
                ("backoff_max", &max, max_value),
                Some(set),
            )?;
            set.value
        }
        // The built-in 5 s follows the other two: a tunnel that sets `backoff_max = "1s"` or
        // `backoff_min = "10s"` keeps working as it did before this key existed.
        None => resolve::DEFAULT_BACKOFF_MAX_NETWORK.clamp(min_value, max_value),
    };
    Ok(Backoff {
        min: min_value,
        max: max_value,
        max_network,
    })
}

#[derive(Default)]
struct Forwards {
    local: Vec<LocalForward>,
    sockets: Vec<SocketListener>,
    remote: Vec<RemoteForward>,
    dynamic: Vec<DynamicForward>,
}

fn forwards(
    r: &Resolver<'_>,
    t: &RawTunnel,
    key: &Key,
) -> Result<(Forwards, Vec<Listener>, Vec<Listener>), ConfigError> {
    let mut forwards = Forwards::default();
    let mut listeners = Vec::new();
    let mut remote_listeners = Vec::new();
    let items = |list: &Option<Spanned<Vec<Spanned<String>>>>, name: &str| {
        let list_key = key.field(name);
        let items: Vec<_> = list.iter().flat_map(|l| l.get_ref()).cloned().collect();
        items
            .into_iter()
            .enumerate()
            .map(move |(index, spec)| (spec, list_key.index(index)))
    };
    let socket_mode = match &t.socket_mode {
        Some(text) => streamlocal::mode(text.get_ref())
            .map_err(|e| r.source.error(&text.span(), key.field("socket_mode"), e))?,
        None => DEFAULT_SOCKET_MODE,
    };
    for (spec, at) in items(&t.local, "local") {
        let forward = match streamlocal::local(spec.get_ref(), socket_mode) {
            Ok(Some(forward)) => Ok(forward),
            Ok(None) => forward::local(spec.get_ref()),
            Err(e) => Err(e),
        }
        .map_err(|e| r.source.error(&spec.span(), &at, e))?;
        match &forward.listen {
            Listen::Port { bind, port } => {
                listeners.push(Listener::new(bind, *port, at, spec.span()));
            }
            Listen::Socket { path, .. } => forwards.sockets.push(SocketListener {
                path: path.clone(),
                key: at,
                span: spec.span(),
            }),
        }
        forwards.local.push(forward);
    }
    for (spec, at) in items(&t.remote, "remote") {
        let forward = match streamlocal::remote(spec.get_ref()) {
            Ok(Some(forward)) => Ok(forward),
            Ok(None) => forward::remote(spec.get_ref()),
            Err(e) => Err(e),
        }
        .map_err(|e| r.source.error(&spec.span(), &at, e))?;
        if let RemoteListen::Port { bind, port } = &forward.listen
            && *port != 0
        {
            remote_listeners.push(Listener::new(bind, *port, at, spec.span()));
        }
        forwards.remote.push(forward);
    }
    let dynamic_key = key.field("dynamic");
    for (index, item) in t.dynamic.iter().flat_map(|l| l.get_ref()).enumerate() {
        let at = dynamic_key.index(index);
        let (spec, auth_file) = match item.get_ref() {
            RawDynamic::Spec(spec) => (Spanned::new(item.span(), spec.clone()), None),
            RawDynamic::Table(socks) => {
                let listen = socks.listen.clone().ok_or_else(|| {
                    r.source.error(
                        &item.span(),
                        &at,
                        "listen is missing (expected { listen = \"[bind:]port\", auth_file = \"PATH\" })",
                    )
                })?;
                let auth_file = match &socks.auth_file {
                    Some(path) => Some(
                        settings::checked_path(path.get_ref(), r.base_dir)
                            .map_err(|e| r.source.error(&path.span(), at.field("auth_file"), e))?,
                    ),
                    None => None,
                };
                (listen, auth_file)
            }
        };
        let forward = forward::dynamic(spec.get_ref(), auth_file)
            .map_err(|e| r.source.error(&spec.span(), &at, e))?;
        listeners.push(Listener::new(&forward.bind, forward.port, at, spec.span()));
        forwards.dynamic.push(forward);
    }
    listeners::check_within(&r.source, &listeners)?;
    // Remote ports are checked across the file (`remote_ports`): what sshd makes of a bind
    // address is the same question within one tunnel.
    Ok((forwards, listeners, remote_listeners))
}
