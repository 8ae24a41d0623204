//! `jump = ["bastoin"]` beside `[hosts.bastion]`: a string that names no `[hosts]` entry is a
//! host name, so a typo of an entry's name loads, and fails at run time. Whether it is a typo
//! depends on whether the name resolves (`db2` beside `db1` may be a real host), which `check`
//! finds out; this finds the strings close to an entry's name.

use std::collections::BTreeMap;
use std::net::IpAddr;

use toml::Spanned;

use crate::error::{Key, Source};
use crate::findings::{Finding, NearHostName, ResolvedBy};
use crate::listeners::Resolved;
use crate::raw::RawFile;
use crate::resolve::HostEntry;

/// Every `host` and `jump` string of the file, in tunnels and in `[hosts]` entries alike, that
/// is not a `[hosts]` name but is close to one.
pub(crate) fn find(
    source: &Source<'_>,
    raw: &RawFile,
    hosts: &BTreeMap<String, HostEntry<'_>>,
    tunnels: &[Resolved],
) -> Vec<Finding> {
    let mut written: Vec<(&Spanned<String>, Key, Option<&str>)> = Vec::new();
    for (name, tunnel) in raw.tunnels.iter().flat_map(|t| t.get_ref()) {
        let key = Key::root("tunnels").field(name.get_ref());
        let tunnel_name = Some(name.get_ref().as_str());
        let t = tunnel.get_ref();
        if let Some(host) = &t.host {
            written.push((host, key.field("host"), tunnel_name));
        }
        for (item, at) in jumps(t.jump.as_ref(), key.field("jump")) {
            written.push((item, at, tunnel_name));
        }
    }
    for (name, host) in raw.hosts.iter().flat_map(|h| h.get_ref()) {
        let key = Key::root("hosts").field(name.get_ref()).field("jump");
        for (item, at) in jumps(host.get_ref().jump.as_ref(), key) {
            written.push((item, at, None));
        }
    }
    let mut findings = Vec::new();
    for (text, key, tunnel) in written {
        if hosts.contains_key(text.get_ref()) {
            continue;
        }
        let Some(suggestion) = suggest(text.get_ref(), hosts.keys()) else {
            continue;
        };
        let resolved_by = if tunnels.iter().any(|t| t.dialled.first() == Some(&key)) {
            ResolvedBy::ThisMachine
        } else if tunnels.iter().any(|t| t.dialled.contains(&key)) {
            ResolvedBy::JumpHost
        } else {
            ResolvedBy::Nobody
        };
        findings.push(Finding::NearHostName(NearHostName {
            at: source.location(&text.span(), &key),
            tunnel: tunnel.map(str::to_owned),
            written: text.get_ref().clone(),
            suggestion: suggestion.to_owned(),
            resolved_by,
        }));
    }
    findings
}

/// The elements of a `jump` list written at `key`.
fn jumps(
    list: Option<&Spanned<Vec<Spanned<String>>>>,
    key: Key,
) -> impl Iterator<Item = (&Spanned<String>, Key)> {
    list.into_iter()
        .flat_map(|list| list.get_ref().iter().enumerate())
        .map(move |(index, item)| (item, key.index(index)))
}

/// The `[hosts]` name closest to `written`, if one is close enough to be a typo of it: a bare
/// name (no user, port or URL; not an address) within a few edits (transpositions count as
/// one), fewer for short names, letter case aside.
fn suggest<'a>(written: &str, names: impl Iterator<Item = &'a String>) -> Option<&'a str> {
    let bare = !written.is_empty()
        && written
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if !bare || written.parse::<IpAddr>().is_ok() {
        return None;
    }
    let written = written.to_ascii_lowercase();
    names
        .filter_map(|name| {
            let lower = name.to_ascii_lowercase();
            let distance = strsim::osa_distance(&written, &lower);
            let limit = match written.len().min(lower.len()) {
                0..=3 => 1,
                4..=8 => 2,
                _ => 3,
            };
            (distance <= limit).then_some((distance, name.as_str()))
        })
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, name)| name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_names() {
        let names: Vec<String> = ["bastion", "db-server", "db1", "web.internal"]
            .map(str::to_owned)
            .to_vec();
        let table = [
            ("bastoin", Some("bastion")),
            ("bastin", Some("bastion")),
            ("Bastion", Some("bastion")),
            ("bstoin", Some("bastion")),
            ("db-sever", Some("db-server")),
            ("db2", Some("db1")),
            ("db", Some("db1")),
            ("web.intranet", None),
            ("web.internl", Some("web.internal")),
            ("mail", None),
            ("x", None),
            // Not bare names: a user, a port or a URL says the writer meant a host name.
            ("admin@bastoin", None),
            ("bastoin:22", None),
            ("ssh://bastoin", None),
            ("", None),
            // Addresses are never typos of names.
            ("10.0.0.1", None),
            ("::1", None),
        ];
        for (written, expected) in table {
            assert_eq!(suggest(written, names.iter()), expected, "{written}");
        }
        // The closest wins, then the first in order.
        let names: Vec<String> = ["db10", "db12", "db2"].map(str::to_owned).to_vec();
        assert_eq!(suggest("db1", names.iter()), Some("db10"));
        assert_eq!(suggest("db22", names.iter()), Some("db12"));
    }
}
