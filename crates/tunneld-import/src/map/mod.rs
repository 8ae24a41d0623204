//! One host's options as tunneld keys: a `[hosts.NAME]` table's lines and a tunnel's forwards.
//! Every applied option is either mapped or shown as a comment that says why it is not.

use std::collections::HashSet;
use std::path::PathBuf;

use crate::evaluate::Options;
use crate::files::Line;
use crate::paths::{self, Tokens};
use crate::render::{Item, toml_string};
use crate::{Local, NOT_DONE};

/// The identity files ssh tries when a host names none, in ssh's order.
const DEFAULT_IDENTITIES: &[&str] = &[
    "id_rsa",
    "id_ecdsa",
    "id_ecdsa_sk",
    "id_ed25519",
    "id_ed25519_sk",
    "id_xmss",
    "id_dsa",
];

/// Keywords mapped here that tunneld-config's table of equivalents does not pair with a key:
/// their values need more than a change of form.
const MAPPED_HERE: &[&str] = &[
    "proxycommand",
    "stricthostkeychecking",
    "gatewayports",
    "clearallforwardings",
];

/// Whether this module maps `keyword` (lowercase).
fn mapped(keyword: &str) -> bool {
    MAPPED_HERE.contains(&keyword) || tunneld_config::ssh_config_key(keyword).is_some()
}

/// What ssh users look for that tunneld leaves out on purpose, with the reason in a few words.
const DELIBERATE: &[(&str, &str)] = &[
    (
        "forwardx11",
        "X11 forwarding: a headless daemon has no display",
    ),
    (
        "forwardx11trusted",
        "X11 forwarding: a headless daemon has no display",
    ),
    ("forwardagent", "agent forwarding: use jump hosts instead"),
    (
        "passwordauthentication",
        "password login: tunneld runs unattended, with keys",
    ),
    (
        "kbdinteractiveauthentication",
        "keyboard-interactive login: tunneld runs unattended",
    ),
    (
        "challengeresponseauthentication",
        "keyboard-interactive login: tunneld runs unattended",
    ),
    (
        "controlmaster",
        "a ControlMaster shared with interactive sessions",
    ),
    (
        "controlpath",
        "a ControlMaster shared with interactive sessions",
    ),
    (
        "controlpersist",
        "a ControlMaster shared with interactive sessions",
    ),
];

/// Option values that ask for what tunneld always does: said, not flagged.
const ALREADY: &[(&str, &str)] = &[
    ("sessiontype", "none"),
    ("requesttty", "no"),
    ("stdinnull", "yes"),
    ("forkafterauthentication", "yes"),
    ("batchmode", "yes"),
    ("identitiesonly", "yes"),
    ("forwardagent", "no"),
    ("forwardx11", "no"),
    ("passwordauthentication", "no"),
    ("kbdinteractiveauthentication", "no"),
];

/// One host, mapped.
#[derive(Default)]
pub(crate) struct Mapped {
    /// Lines of its `[hosts.NAME]` table.
    pub(crate) host: Vec<Item>,
    /// Lines of its `[tunnels.NAME]` table: forwards and their comments.
    pub(crate) forwards: Vec<Item>,
    /// Whether any forward was mapped.
    pub(crate) has_forwards: bool,
    /// Whether the host has forward lines at all, taken or not.
    pub(crate) forward_lines: bool,
    /// Warnings, also written as comments.
    pub(crate) warnings: Vec<String>,
}

/// Maps `options` of the host `alias` (the builder has done `ProxyJump`).
pub(crate) fn host(alias: &str, options: &Options, local: &Local) -> Mapped {
    let mut out = Mapped::default();
    let hostname = options
        .value("hostname")
        .map_or_else(|| alias.to_owned(), |name| paths::percent_h(name, alias))
        .to_lowercase();
    out.set("hostname", toml_string(&hostname));
    let mut port = 22;
    if let Some(line) = options.first("port") {
        match one(line)
            .and_then(|p| p.parse::<u16>().ok())
            .filter(|p| *p > 0)
        {
            Some(p) => {
                port = p;
                out.set("port", p.to_string());
            }
            None => out.unmapped(line, "not a port number"),
        }
    }
    let user = options.value("user").unwrap_or(&local.user).to_owned();
    out.set("user", toml_string(&user));
    let tokens = Tokens {
        local,
        hostname: &hostname,
        alias,
        user: &user,
        port,
    };
    out.identities(options, &tokens);
    out.paths(options.all("certificatefile"), "certificatefile", &tokens);
    out.settings(options, &tokens);
    out.all_forwards(options);
    out.rest(options);
    out
}

impl Mapped {
    fn key(&mut self, key: &str, value: String) {
        self.host.push(Item::Key(key.to_owned(), value));
    }

    /// The value of ssh_config's `keyword`, under the key tunneld-config pairs with it (the
    /// same table explains ssh_config lines pasted into a tunneld file).
    pub(super) fn set(&mut self, keyword: &str, value: String) {
        match tunneld_config::ssh_config_key(keyword) {
            Some(key) => self.key(key, value),
            None => self.note(format!("{keyword}: no tunneld key (a bug of the import)")),
        }
    }

    fn note(&mut self, text: String) {
        self.host.push(Item::Comment(text));
    }

    fn unmapped(&mut self, line: &Line, why: &str) {
        self.note(format!(
            "{} ({}): not imported: {why}",
            line.text(),
            line.at
        ));
    }

    /// Paths that the service could not read under `ProtectHome=yes`: one comment for all of
    /// them, one warning each (the same path in several hosts is one warning).
    fn check_home(&mut self, paths: &[PathBuf], local: &Local, instead: &str) {
        let under: Vec<String> = paths
            .iter()
            .filter(|path| paths::under_home(path, local))
            .map(|path| path.display().to_string())
            .collect();
        let why = "under a home directory, which the systemd units' ProtectHome=yes makes \
                   unreadable to the service";
        for path in &under {
            self.warnings.push(format!(
                "{path} is {why}: copy it to {instead} and change the path"
            ));
        }
        match under.as_slice() {
            [] => {}
            [one] => self.note(format!(
                "warning: {one} is {why}: copy it to {instead} and change this path"
            )),
            many => self.note(format!(
                "warning: {} are {why}: copy them to {instead} and change these paths",
                many.join(", ")
            )),
        }
    }

    fn identities(&mut self, options: &Options, tokens: &Tokens<'_>) {
        let named: Vec<&Line> = options.all("identityfile").collect();
        if !named.is_empty() {
            self.paths(named.into_iter(), "identityfile", tokens);
            return;
        }
        let ssh_dir = tokens.local.home.join(".ssh");
        let found: Vec<String> = DEFAULT_IDENTITIES
            .iter()
            .map(|name| ssh_dir.join(name))
            .filter(|path| path.is_file())
            .map(|path| path.display().to_string())
            .collect();
        if found.is_empty() {
            self.note(format!(
                "no IdentityFile: ssh would try {}/id_* (none exists) and the agent; put this \
                 tunnel's key here (owned by tunneld, mode 0600)",
                ssh_dir.display()
            ));
            let name: String = (tokens.alias.chars())
                .map(|c| {
                    if c.is_ascii_alphanumeric() || "_.-".contains(c) {
                        c
                    } else {
                        '-'
                    }
                })
                .collect();
            let path = format!("/etc/tunneld/keys/{name}");
            self.set("identityfile", list(&[path]));
            return;
        }
        self.note("no IdentityFile: these are the default keys ssh would try".to_owned());
        let found_paths: Vec<PathBuf> = found.iter().map(PathBuf::from).collect();
        self.check_home(&found_paths, tokens.local, "/etc/tunneld/keys/");
        self.set("identityfile", list(&found));
    }

    fn paths<'a>(&mut self, lines: impl Iterator<Item = &'a Line>, keyword: &str, t: &Tokens<'_>) {
        let mut values = Vec::new();
        for line in lines {
            match one(line).map(|path| paths::expand(path, t)) {
                Some(Ok(path)) => values.push(path),
                Some(Err(why)) => self.unmapped(line, &why),
                None => self.unmapped(line, "expected one path"),
            }
        }
        if !values.is_empty() {
            self.check_home(&values, t.local, "/etc/tunneld/keys/");
            let values: Vec<String> = values.iter().map(|p| p.display().to_string()).collect();
            self.set(keyword, list(&values));
        }
    }

    /// Every applied option that nothing above took, once per keyword (ssh reads the first).
    fn rest(&mut self, options: &Options) {
        let mut seen = HashSet::new();
        for line in &options.applied {
            if mapped(&line.lower) || !seen.insert(line.lower.clone()) {
                continue;
            }
            let value = one(line).unwrap_or_default().to_ascii_lowercase();
            if ALREADY.contains(&(line.lower.as_str(), value.as_str())) {
                self.note(format!(
                    "{} ({}): tunneld always works this way",
                    line.text(),
                    line.at
                ));
                continue;
            }
            match DELIBERATE
                .iter()
                .find(|(keyword, _)| *keyword == line.lower)
            {
                Some((_, why)) => self.unmapped(line, &format!("{why}; see {NOT_DONE}")),
                None => self.unmapped(line, "tunneld has no equivalent"),
            }
        }
        for (why, line) in &options.undecided {
            self.unmapped(line, &format!("its block was not judged: {why}"));
        }
    }
}

/// The single argument of a line.
pub(crate) fn one(line: &Line) -> Option<&str> {
    match line.args.as_slice() {
        [arg] => Some(arg),
        _ => None,
    }
}

/// A TOML list of strings.
pub(crate) fn list(values: &[String]) -> String {
    let items: Vec<String> = values.iter().map(|v| toml_string(v)).collect();
    format!("[{}]", items.join(", "))
}

mod forwards;
mod settings;

#[cfg(test)]
mod tests {
    /// Every keyword this module writes under tunneld-config's key has one.
    #[test]
    fn every_keyword_set_has_a_key() {
        for keyword in [
            "hostname",
            "port",
            "user",
            "identityfile",
            "certificatefile",
            "proxyjump",
            "localforward",
            "remoteforward",
            "dynamicforward",
            "serveraliveinterval",
            "serveralivecountmax",
            "connecttimeout",
            "compression",
            "exitonforwardfailure",
            "updatehostkeys",
            "ciphers",
            "userknownhostsfile",
            "globalknownhostsfile",
        ] {
            assert!(super::mapped(keyword), "{keyword}");
            assert!(
                tunneld_config::ssh_config_key(keyword).is_some(),
                "{keyword}"
            );
        }
    }
}
