//! Names resolved as tunneld resolves them when it dials, for the questions of `check` that the
//! file cannot answer: is this name a host at all, and are these two names one server?

use std::collections::HashMap;
use std::net::{IpAddr, ToSocketAddrs};

/// Resolves each name once per check.
#[derive(Default)]
pub(super) struct Lookup {
    cache: HashMap<String, Vec<IpAddr>>,
}

impl Lookup {
    /// The addresses `host` resolves to on this machine, sorted; empty when it does not resolve.
    pub(super) fn addresses(&mut self, host: &str) -> &[IpAddr] {
        self.cache
            .entry(host.to_ascii_lowercase())
            .or_insert_with_key(|host| resolve(host))
    }
}

fn resolve(host: &str) -> Vec<IpAddr> {
    // RFC 6761: a name under .invalid never resolves, and resolver libraries should say so
    // without asking anyone. glibc asks the DNS server all the same; answering here keeps such
    // names (the tests use them) off the network.
    let name = host.trim_end_matches('.').to_ascii_lowercase();
    if name == "invalid" || name.ends_with(".invalid") {
        return Vec::new();
    }
    let mut addresses: Vec<IpAddr> = (host, 0)
        .to_socket_addrs()
        .map(|addrs| addrs.map(|addr| addr.ip()).collect())
        .unwrap_or_default();
    addresses.sort();
    addresses.dedup();
    addresses
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_resolve_without_leaving_the_machine() {
        let mut lookup = Lookup::default();
        assert_eq!(
            lookup.addresses("127.0.0.1"),
            [IpAddr::from([127, 0, 0, 1])]
        );
        assert_eq!(
            lookup.addresses("::1"),
            [IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1])]
        );
        assert!(!lookup.addresses("localhost").is_empty());
        for name in ["bastoin.invalid", "BASTOIN.INVALID.", "invalid"] {
            assert!(lookup.addresses(name).is_empty(), "{name}");
        }
    }
}
