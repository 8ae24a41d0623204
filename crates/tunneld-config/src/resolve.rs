//! What every tunnel is resolved against: `[hosts]` entries, precedence (tunnel, then `[hosts]`
//! entry, then `[defaults]`, then the built-in default) and the flattening of jump chains.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use crate::Environment;
use crate::address;
use crate::error::{ConfigError, Key, Source};
use crate::hostspec::{self, HostSpec};
use crate::model::{Hop, HostKeyPolicy};
use crate::raw::{RawFile, RawHost};
use crate::settings::{self, Settings};

/// Built-in defaults (docs/configuration.md).
pub(crate) const DEFAULT_PORT: u16 = 22;
pub(crate) const DEFAULT_KNOWN_HOSTS: &str = "/var/lib/tunneld/known_hosts";
pub(crate) const DEFAULT_GLOBAL_KNOWN_HOSTS: &str = "/etc/tunneld/known_hosts";
pub(crate) const DEFAULT_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(15);
pub(crate) const DEFAULT_KEEPALIVE_MAX: u32 = 3;
pub(crate) const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
pub(crate) const DEFAULT_BACKOFF_MIN: Duration = Duration::from_secs(1);
pub(crate) const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(60);
pub(crate) const DEFAULT_BACKOFF_MAX_NETWORK: Duration = Duration::from_secs(5);

/// A chain longer than this is a mistake (or an exponential diamond of `jump`s), not a network.
const MAX_HOPS: usize = 32;

/// A checked `[hosts.NAME]` entry.
pub(crate) struct HostEntry<'a> {
    pub(crate) name: String,
    pub(crate) key: Key,
    pub(crate) hostname: String,
    pub(crate) port: u16,
    pub(crate) settings: Settings,
    raw: &'a RawHost,
}

/// A list of `jump` elements and where it was written.
pub(crate) struct JumpList<'a> {
    pub(crate) items: &'a [Spanned<String>],
    pub(crate) at: Place,
}

impl<'a> JumpList<'a> {
    /// The list written at `key`.
    pub(crate) fn new(jump: &'a Spanned<Vec<Spanned<String>>>, key: Key) -> Self {
        JumpList {
            items: jump.get_ref(),
            at: Place {
                key,
                span: jump.span(),
            },
        }
    }
}

impl HostEntry<'_> {
    /// The entry's own `jump`, if it has one.
    pub(crate) fn jump(&self) -> Option<JumpList<'_>> {
        let jump = self.raw.jump.as_ref()?;
        Some(JumpList::new(jump, self.key.field("jump")))
    }
}

/// How a `host` or `jump` element names a server.
pub(crate) enum Named<'a> {
    /// A `[hosts]` entry.
    Entry(&'a HostEntry<'a>),
    /// `[user@]hostname[:port]`, and the string as written.
    Literal(HostSpec, String),
}

/// Where something was named, for errors about it.
#[derive(Clone)]
pub(crate) struct Place {
    pub(crate) key: Key,
    pub(crate) span: Range<usize>,
}

/// Everything a tunnel is resolved against.
pub(crate) struct Resolver<'a> {
    pub(crate) source: Source<'a>,
    pub(crate) base_dir: &'a Path,
    pub(crate) env: &'a Environment,
    pub(crate) defaults: Settings,
    pub(crate) hosts: BTreeMap<String, HostEntry<'a>>,
}

/// Checks a tunnel or host name: `[A-Za-z0-9_.-]+`.
pub(crate) fn check_name(
    source: &Source<'_>,
    name: &Spanned<String>,
    key: &Key,
    what: &str,
) -> Result<(), ConfigError> {
    let text = name.get_ref();
    let valid = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if valid {
        Ok(())
    } else {
        Err(source.error(
            &name.span(),
            key,
            format!(
                "{text:?} is not a valid {what} name (expected letters, digits, _, . and - only)"
            ),
        ))
    }
}

impl<'a> Resolver<'a> {
    /// Checks `[defaults]` and every `[hosts]` entry (with its jump chain, whether a tunnel uses
    /// it or not): what each tunnel is then resolved against.
    pub(crate) fn new(
        source: Source<'a>,
        raw: &'a RawFile,
        env: &'a Environment,
        base_dir: &'a Path,
    ) -> Result<Self, ConfigError> {
        let defaults = match &raw.defaults {
            Some(defaults) => {
                let key = Key::root("defaults");
                settings::check(defaults.get_ref().common(), &key, &source, base_dir)?
            }
            None => Settings::default(),
        };
        let mut resolver = Resolver {
            source,
            base_dir,
            env,
            defaults,
            hosts: BTreeMap::new(),
        };
        for (name, host) in raw.hosts.iter().flat_map(|hosts| hosts.get_ref()) {
            let entry = resolver.host_entry(name, host.get_ref())?;
            resolver.hosts.insert(entry.name.clone(), entry);
        }
        resolver.check_host_chains()?;
        Ok(resolver)
    }

    fn host_entry(
        &self,
        name: &Spanned<String>,
        raw: &'a RawHost,
    ) -> Result<HostEntry<'a>, ConfigError> {
        let key = Key::root("hosts").field(name.get_ref());
        check_name(&self.source, name, &key, "host")?;
        let settings = settings::check(raw.common(), &key, &self.source, self.base_dir)?;
        let hostname = match &raw.hostname {
            Some(hostname) => {
                address::host(hostname.get_ref()).map_err(|e| {
                    self.source.error(
                        &hostname.span(),
                        key.field("hostname"),
                        format!("{e} (expected a host name or address, IPv6 without brackets)"),
                    )
                })?;
                hostname.get_ref().clone()
            }
            None => name.get_ref().clone(),
        };
        let port = match &raw.port {
            Some(port) => address::port(&port.get_ref().to_string(), false)
                .map_err(|e| self.source.error(&port.span(), key.field("port"), e))?,
            None => DEFAULT_PORT,
        };
        Ok(HostEntry {
            name: name.get_ref().clone(),
            key,
            hostname,
            port,
            settings,
            raw,
        })
    }

    /// Every `[hosts]` entry's chain must end and must name servers, whether a tunnel uses it
    /// or not.
    fn check_host_chains(&self) -> Result<(), ConfigError> {
        for entry in self.hosts.values() {
            if let Some(list) = entry.jump() {
                let mut stack = vec![(entry.name.as_str(), list.at.clone())];
                self.flatten(&list, &mut stack, &mut Vec::new())?;
            }
        }
        Ok(())
    }

    /// What a `host` or `jump` element names: a `[hosts]` entry, or else `[user@]hostname[:port]`.
    pub(crate) fn named(
        &self,
        text: &Spanned<String>,
        key: &Key,
    ) -> Result<Named<'_>, ConfigError> {
        if let Some(entry) = self.hosts.get(text.get_ref()) {
            return Ok(Named::Entry(entry));
        }
        let spec =
            hostspec::parse(text.get_ref()).map_err(|e| self.source.error(&text.span(), key, e))?;
        Ok(Named::Literal(spec, text.get_ref().clone()))
    }

    /// Appends the hops of `list` to `out`, each `[hosts]` entry preceded by its own chain.
    /// `stack` holds the entries being expanded and where their `jump` was written, to name a
    /// cycle where it starts.
    pub(crate) fn flatten<'s>(
        &'s self,
        list: &JumpList<'_>,
        stack: &mut Vec<(&'s str, Place)>,
        out: &mut Vec<(Named<'s>, Place)>,
    ) -> Result<(), ConfigError> {
        for (index, item) in list.items.iter().enumerate() {
            let place = Place {
                key: list.at.key.index(index),
                span: item.span(),
            };
            let named = self.named(item, &place.key)?;
            if let Named::Entry(entry) = named {
                if let Some(start) = stack.iter().position(|(name, _)| *name == entry.name) {
                    let mut cycle: Vec<&str> = stack.iter().skip(start).map(|(n, _)| *n).collect();
                    cycle.push(&entry.name);
                    let at = stack.get(start).map_or(place.clone(), |(_, at)| at.clone());
                    return Err(self.source.error(
                        &at.span,
                        &at.key,
                        format!(
                            "jump cycle: {} (expected jump hosts that do not lead back to themselves)",
                            cycle.join(" -> ")
                        ),
                    ));
                }
                if let Some(inner) = entry.jump() {
                    stack.push((&entry.name, inner.at.clone()));
                    self.flatten(&inner, stack, out)?;
                    stack.pop();
                }
            }
            out.push((named, place.clone()));
            if out.len() > MAX_HOPS {
                return Err(self.source.error(
                    &list.at.span,
                    &list.at.key,
                    format!(
                        "the jump chain is longer than {MAX_HOPS} hops (expected a shorter chain)"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Builds a hop from a server and the settings sections that apply to it, most specific
    /// first; `[defaults]` and the built-in defaults come after them.
    pub(crate) fn hop(
        &self,
        named: &Named<'_>,
        tunnel: Option<(&Key, &Settings)>,
        at: &Place,
    ) -> Result<Hop, ConfigError> {
        let mut layers: Vec<&Settings> = Vec::new();
        let mut sections: Vec<String> = Vec::new();
        if let Some((key, settings)) = tunnel {
            layers.push(settings);
            sections.push(format!("[{key}]"));
        }
        let (label, hostname, port, user) = match named {
            Named::Entry(entry) => {
                layers.push(&entry.settings);
                sections.push(format!("[{}]", entry.key));
                (entry.name.clone(), entry.hostname.clone(), entry.port, None)
            }
            Named::Literal(spec, label) => (
                label.clone(),
                spec.hostname.clone(),
                spec.port.unwrap_or(DEFAULT_PORT),
                spec.user.clone(),
            ),
        };
        layers.push(&self.defaults);
        sections.push("[defaults]".to_owned());
        let pick = Pick(&layers);

        let identity_files = pick.get(|s| s.identity_files.clone()).unwrap_or_default();
        let use_agent = pick.get(|s| s.use_agent).unwrap_or(false);
        if identity_files.is_empty() && !use_agent {
            let sections = match sections.split_last() {
                Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
                _ => sections.join(""),
            };
            return Err(self.source.error(
                &at.span,
                &at.key,
                format!(
                    "no way to authenticate to {label}: no identity_files and use_agent is not \
                     true (expected identity_files or use_agent = true in {sections})"
                ),
            ));
        }
        Ok(Hop {
            label,
            hostname,
            port,
            user: user
                .or_else(|| pick.get(|s| s.user.clone()))
                .unwrap_or_else(|| self.env.user.clone()),
            identity_files,
            certificate_files: pick
                .get(|s| s.certificate_files.clone())
                .unwrap_or_default(),
            use_agent,
            known_hosts: pick
                .get(|s| s.known_hosts.clone())
                .unwrap_or_else(|| PathBuf::from(DEFAULT_KNOWN_HOSTS)),
            global_known_hosts: pick
                .get(|s| s.global_known_hosts.clone())
                .unwrap_or_else(|| PathBuf::from(DEFAULT_GLOBAL_KNOWN_HOSTS)),
            host_key_policy: pick
                .get(|s| s.host_key_policy)
                .unwrap_or(HostKeyPolicy::Strict),
            // On by default, as OpenSSH turns UpdateHostKeys on for its default
            // UserKnownHostsFile: the learned file is tunneld's own state, and the keys an
            // operator pins go in global_known_hosts, which switches updates off for that host.
            update_host_keys: pick.get(|s| s.update_host_keys).unwrap_or(true),
            connect_timeout: pick
                .get(|s| s.connect_timeout)
                .unwrap_or(DEFAULT_CONNECT_TIMEOUT),
            compression: pick.get(|s| s.compression).unwrap_or(false),
            ciphers: pick.get(|s| s.ciphers.clone()).unwrap_or_default(),
            rekey_limit: pick.get(|s| s.rekey_limit).unwrap_or_default(),
            proxy: pick.get(|s| s.proxy.clone()),
        })
    }
}

/// Settings sections, most specific first: a key is taken from the first section that sets it.
pub(crate) struct Pick<'a>(pub(crate) &'a [&'a Settings]);

impl Pick<'_> {
    pub(crate) fn get<T>(&self, field: impl Fn(&Settings) -> Option<T>) -> Option<T> {
        self.0.iter().find_map(|settings| field(settings))
    }
}
