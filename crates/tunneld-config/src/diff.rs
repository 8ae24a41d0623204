//! What a reload changes: tunnels added, removed or changed, keyed by name.

use std::collections::BTreeMap;

use crate::model::{Config, Tunnel};

/// One difference between two configurations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// A tunnel that only the new configuration has: start it.
    Added(Tunnel),
    /// The name of a tunnel that only the old configuration has: stop it.
    Removed(String),
    /// A tunnel whose resolved settings differ (target, jump hosts, forwards, keepalive,
    /// backoff, anything): restart it with the new ones.
    Changed(Tunnel),
}

/// The changes that turn `old` into `new`, in order of tunnel name. Tunnels whose fully
/// resolved settings are equal produce nothing, so a reload leaves them running.
pub fn diff(old: &Config, new: &Config) -> Vec<Change> {
    let old_tunnels: BTreeMap<&str, &Tunnel> =
        old.tunnels.iter().map(|t| (t.name.as_str(), t)).collect();
    let new_tunnels: BTreeMap<&str, &Tunnel> =
        new.tunnels.iter().map(|t| (t.name.as_str(), t)).collect();
    let mut names: Vec<&str> = old_tunnels
        .keys()
        .chain(new_tunnels.keys())
        .copied()
        .collect();
    names.sort_unstable();
    names.dedup();
    names
        .into_iter()
        .filter_map(
            |name| match (old_tunnels.get(name), new_tunnels.get(name)) {
                (Some(_), None) => Some(Change::Removed(name.to_owned())),
                (None, Some(added)) => Some(Change::Added((*added).clone())),
                (Some(before), Some(after)) if before != after => {
                    Some(Change::Changed((*after).clone()))
                }
                _ => None,
            },
        )
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Environment, parse};
    use std::path::Path;

    const BASE: &str = r#"
        [defaults]
        identity_files = ["/etc/tunneld/keys/id"]
        [tunnels.a]
        host = "a.example.com"
        local = ["5432:localhost:5432"]
        [tunnels.b]
        host = "b.example.com"
        local = ["6379:localhost:6379"]
    "#;

    fn config(text: &str) -> Config {
        let env = Environment {
            user: "tester".to_owned(),
        };
        parse(Path::new("/etc/tunneld/t.toml"), text, &env).unwrap()
    }

    fn tunnel(config: &Config, name: &str) -> Tunnel {
        config
            .tunnels
            .iter()
            .find(|t| t.name == name)
            .unwrap()
            .clone()
    }

    /// A case: what it shows, the new file, and the changes (kind, tunnel name) expected.
    type Case<'a> = (&'a str, String, &'a [(&'a str, &'a str)]);

    /// What a change is expected to be: its kind and tunnel name.
    fn expected(new: &Config, kind: &str, name: &str) -> Change {
        match kind {
            "added" => Change::Added(tunnel(new, name)),
            "removed" => Change::Removed(name.to_owned()),
            _ => Change::Changed(tunnel(new, name)),
        }
    }

    #[test]
    fn changes_by_tunnel_name() {
        let base = config(BASE);
        let table: Vec<Case<'_>> = vec![
            ("nothing", BASE.to_owned(), &[]),
            (
                "comments and order do not matter",
                format!(
                    "# reordered\n{}",
                    BASE.replace("[tunnels.a]", "[tunnels.a] # same")
                ),
                &[],
            ),
            (
                "a forward changed",
                BASE.replace("6379:localhost:6379", "6380:localhost:6379"),
                &[("changed", "b")],
            ),
            (
                "a default changed: every tunnel that uses it",
                BASE.replace("[defaults]", "[defaults]\nkeepalive_interval = \"5s\""),
                &[("changed", "a"), ("changed", "b")],
            ),
            (
                "a default that a tunnel overrides does not change it",
                BASE.replace("[defaults]", "[defaults]\ncompression = false")
                    .replace(
                        "host = \"a.example.com\"",
                        "host = \"a.example.com\"\ncompression = false",
                    ),
                &[],
            ),
            (
                "a tunnel override only changes that tunnel",
                BASE.replace(
                    "host = \"a.example.com\"",
                    "host = \"a.example.com\"\ncompression = true",
                ),
                &[("changed", "a")],
            ),
            (
                "the pinned host keys file is a setting of the connection",
                BASE.replace(
                    "host = \"b.example.com\"",
                    "host = \"b.example.com\"\nglobal_known_hosts = \"/etc/tunneld/pinned\"",
                ),
                &[("changed", "b")],
            ),
            (
                "removed and added",
                BASE.replace("[tunnels.b]", "[tunnels.c]"),
                &[("removed", "b"), ("added", "c")],
            ),
            (
                "added before",
                BASE.replace("[tunnels.b]", "[tunnels.0]"),
                &[("added", "0"), ("removed", "b")],
            ),
        ];
        for (what, text, changes) in table {
            let new = config(&text);
            let expected: Vec<Change> = changes
                .iter()
                .map(|(kind, name)| expected(&new, kind, name))
                .collect();
            assert_eq!(diff(&base, &new), expected, "{what}");
        }
    }
}
