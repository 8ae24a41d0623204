//! Listening addresses that could never all be bound: twice in one tunnel, or in two tunnels of
//! the same file.

use std::ops::Range;

use crate::error::{ConfigError, Key, Source};
use crate::model::{BindAddress, Tunnel};

/// A resolved tunnel and where its listeners were written, for the checks across tunnels.
pub(crate) struct Resolved {
    pub(crate) tunnel: Tunnel,
    pub(crate) listeners: Vec<Listener>,
}

/// One address and port that a forward listens on, and where it was written.
pub(crate) struct Listener {
    bind: BindAddress,
    port: u16,
    key: Key,
    span: Range<usize>,
}

impl Listener {
    pub(crate) fn new(bind: &BindAddress, port: u16, key: Key, span: Range<usize>) -> Self {
        Listener {
            bind: bind.clone(),
            port,
            key,
            span,
        }
    }

    /// Whether both cannot be bound at once.
    fn clashes_with(&self, other: &Listener) -> bool {
        self.port == other.port && overlap(&self.bind, &other.bind)
    }

    fn address(&self) -> String {
        format!("{}:{}", self.bind, self.port)
    }
}

/// The addresses a bind address covers; `None` for every interface.
fn addresses(bind: &BindAddress) -> Option<Vec<&str>> {
    match bind {
        BindAddress::Any => None,
        BindAddress::Host(host) if host == "0.0.0.0" || host == "::" => None,
        // No bind address listens on both loopbacks, as ssh does, so it really clashes with an
        // explicit 127.0.0.1 or ::1 too; but the format's reference example
        // (tests/contract_example.rs) pairs `dynamic = ["1080"]` with `listen = "127.0.0.1:1080"`
        // in another tunnel and must parse, so only the same bind address (or a wildcard) is
        // refused here and the bind error shows at run time.
        BindAddress::Default => Some(vec!["localhost"]),
        BindAddress::Host(host) if host == "localhost" => Some(vec!["localhost"]),
        BindAddress::Host(host) => Some(vec![host.as_str()]),
    }
}

fn overlap(a: &BindAddress, b: &BindAddress) -> bool {
    match (addresses(a), addresses(b)) {
        (Some(a), Some(b)) => a.iter().any(|host| b.contains(host)),
        _ => true,
    }
}

/// No two listeners of one list clash. `what` names them in the message.
pub(crate) fn check_within(
    source: &Source<'_>,
    listeners: &[Listener],
    what: &str,
) -> Result<(), ConfigError> {
    for (index, listener) in listeners.iter().enumerate() {
        if let Some(earlier) = listeners
            .iter()
            .take(index)
            .find(|earlier| earlier.clashes_with(listener))
        {
            return Err(source.error(
                &listener.span,
                &listener.key,
                format!(
                    "{what} {} clashes with {} of the same tunnel at {} (expected each address \
                     and port once)",
                    listener.address(),
                    earlier.address(),
                    earlier.key
                ),
            ));
        }
    }
    Ok(())
}

/// No listener of one tunnel clashes with a listener of another tunnel of the file.
pub(crate) fn check_across_tunnels(
    source: &Source<'_>,
    tunnels: &[Resolved],
) -> Result<(), ConfigError> {
    for (index, tunnel) in tunnels.iter().enumerate() {
        for listener in &tunnel.listeners {
            for other in tunnels.iter().take(index) {
                if let Some(earlier) = other.listeners.iter().find(|l| l.clashes_with(listener)) {
                    return Err(source.error(
                        &listener.span,
                        &listener.key,
                        format!(
                            "listener {} of tunnel {} clashes with {} of tunnel {} at {}; both \
                             could never be bound (expected a different port or address)",
                            listener.address(),
                            tunnel.tunnel.name,
                            earlier.address(),
                            other.tunnel.name,
                            earlier.key
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use BindAddress::{Any, Default, Host};

    fn h(s: &str) -> BindAddress {
        Host(s.to_owned())
    }

    #[test]
    fn which_bind_addresses_overlap() {
        let table = [
            (Default, Default, true),
            (Default, h("127.0.0.1"), false),
            (Default, h("::1"), false),
            (Default, h("localhost"), true),
            (Default, h("192.0.2.1"), false),
            (Any, h("192.0.2.1"), true),
            (Any, Default, true),
            (h("0.0.0.0"), h("127.0.0.1"), true),
            (h("::"), Default, true),
            (h("127.0.0.1"), h("::1"), false),
            (h("192.0.2.1"), h("192.0.2.2"), false),
        ];
        for (a, b, expected) in table {
            assert_eq!(overlap(&a, &b), expected, "{a} {b}");
            assert_eq!(overlap(&b, &a), expected, "{b} {a}");
        }
    }
}
