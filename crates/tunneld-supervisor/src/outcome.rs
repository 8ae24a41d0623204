//! What the supervisor answers to the operator's requests: the outcome of a reload, and the
//! error for a tunnel name that does not exist.

use std::collections::BTreeMap;
use std::fmt;

use tunneld_config::{Change, Config};

/// What a reload did, by tunnel name (each list sorted).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Tunnels that are new in the file, started.
    pub added: Vec<String>,
    /// Tunnels no longer in the file, stopped.
    pub removed: Vec<String>,
    /// Tunnels whose settings changed, stopped and started again.
    pub restarted: Vec<String>,
    /// Tunnels left running untouched.
    pub unchanged: Vec<String>,
}

impl Applied {
    /// The outcome of applying `changes` to reach `new`.
    pub(crate) fn of(changes: &[Change], new: &Config) -> Applied {
        let mut applied = Applied::default();
        for change in changes {
            match change {
                Change::Added(tunnel) => applied.added.push(tunnel.name.clone()),
                Change::Removed(name) => applied.removed.push(name.clone()),
                Change::Changed(tunnel) => applied.restarted.push(tunnel.name.clone()),
            }
        }
        applied.unchanged = new
            .tunnels
            .iter()
            .map(|t| t.name.clone())
            .filter(|name| !applied.added.contains(name) && !applied.restarted.contains(name))
            .collect();
        for list in [
            &mut applied.added,
            &mut applied.removed,
            &mut applied.restarted,
            &mut applied.unchanged,
        ] {
            list.sort();
        }
        applied
    }

    /// Whether anything changed.
    pub fn changed(&self) -> bool {
        !(self.added.is_empty() && self.removed.is_empty() && self.restarted.is_empty())
    }
}

/// Names asked for that are not running tunnels.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct UnknownTunnels {
    /// The names not found, as given.
    pub unknown: Vec<String>,
    /// The tunnels that are running, for the message.
    pub known: Vec<String>,
}

impl fmt::Display for UnknownTunnels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plural = if self.unknown.len() == 1 { "" } else { "s" };
        write!(f, "no tunnel{plural} named {}", self.unknown.join(", "))?;
        if self.known.is_empty() {
            f.write_str(" (no tunnel is running)")
        } else {
            write!(f, " (running: {})", self.known.join(", "))
        }
    }
}

/// `names`, deduplicated, if every one of them is a key of `running`.
pub(crate) fn known<T>(
    names: &[String],
    running: &BTreeMap<String, T>,
) -> Result<Vec<String>, UnknownTunnels> {
    let unknown: Vec<String> = names
        .iter()
        .filter(|name| !running.contains_key(*name))
        .cloned()
        .collect();
    if !unknown.is_empty() {
        return Err(UnknownTunnels {
            unknown,
            known: running.keys().cloned().collect(),
        });
    }
    let mut names = names.to_vec();
    names.sort();
    names.dedup();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_names_are_named_with_the_running_ones() {
        let running: BTreeMap<String, ()> = [("db".to_owned(), ()), ("web".to_owned(), ())].into();
        let ask = |names: &[&str]| {
            let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
            known(&names, &running)
        };
        assert_eq!(
            ask(&["web", "db", "web"]),
            Ok(vec!["db".into(), "web".into()])
        );
        let err = ask(&["db", "dbb"]).unwrap_err();
        assert_eq!(err.to_string(), "no tunnel named dbb (running: db, web)");
    }
}
