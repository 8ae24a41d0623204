//! The whole import: each host's options, its jump hosts as `[hosts]` entries (through
//! `ProxyJump`, or a `ProxyCommand` that is `ssh -W %h:%p HOST`), and the tables in the order
//! they are needed.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use crate::command;
use crate::evaluate::{self, Options};
use crate::files::{Files, Line, quote};
use crate::map::{self, list};
use crate::render::{self, Item, Table, toml_string};
use crate::{Import, ImportError, Local};

mod jumps;

use jumps::proxy_line;

/// Longer chains than this are refused, as tunneld refuses them.
const MAX_HOPS: usize = 32;

/// Where a host's options come from.
enum Source {
    /// An ssh_config file and its includes.
    Config { files: Files, path: PathBuf },
    /// A command line only: nothing but what it says.
    Command,
}

/// What makes a `[hosts]` entry: the alias, the option lines given before the config (a jump's
/// `user@` and `:port`), and whether the host's own jump hosts are left out (it is a later hop
/// of a chain, for which ssh ignores them).
type EntryKey = (String, Vec<Vec<String>>, bool);

struct Builder<'a> {
    source: Source,
    local: &'a Local,
    header: Vec<String>,
    tables: Vec<Table>,
    /// `[hosts]` entries made, by alias and the option lines given before the config.
    entries: HashMap<EntryKey, String>,
    /// Entries being made: a jump back to one of them is a cycle.
    making: HashSet<EntryKey>,
    host_names: HashSet<String>,
    warnings: Vec<String>,
    tunnels: usize,
}

pub(crate) fn from_config(
    config: &Path,
    hosts: &[String],
    local: &Local,
) -> Result<Import, ImportError> {
    let mut files = Files::new(&local.home);
    let all = hosts.is_empty();
    let names = if all {
        evaluate::host_names(&mut files, config)?
    } else {
        hosts.to_vec()
    };
    let mut builder = Builder::new(
        Source::Config {
            files,
            path: config.to_path_buf(),
        },
        local,
    );
    builder.header.push(format!(
        "Imported by tunneld import-ssh-config from {} and its Includes (ssh without -F \
         also reads /etc/ssh/ssh_config; it was not read).",
        config.display()
    ));
    let mut without_forwards = Vec::new();
    for alias in &names {
        let options = builder.options(alias, Vec::new())?;
        for include in &options.empty_includes {
            let note = format!("Include {include}: matched no file");
            if !builder.header.contains(&note) {
                builder.header.push(note);
            }
        }
        let mapped = map::host(alias, &options, local);
        if !mapped.forward_lines && all {
            without_forwards.push(alias.clone());
            continue;
        }
        builder.tunnel(alias, &options, mapped, None, Vec::new())?;
    }
    // Hosts that became jump hosts are there after all.
    without_forwards.retain(|alias| {
        ![false, true].iter().any(|skip| {
            builder
                .entries
                .contains_key(&(alias.clone(), Vec::new(), *skip))
        })
    });
    if !without_forwards.is_empty() {
        builder.header.push(format!(
            "Not imported, no forwards: {} (name them after the command to get their [hosts] \
             entries)",
            without_forwards.join(", ")
        ));
    }
    Ok(builder.finish())
}

pub(crate) fn from_command(
    args: &[String],
    name: Option<&str>,
    local: &Local,
) -> Result<Import, ImportError> {
    let command = command::parse(args).map_err(ImportError::Command)?;
    let mut builder = Builder::new(Source::Command, local);
    builder.header.push(format!(
        "Imported by tunneld import-ssh-command from: {}",
        args.iter()
            .map(|arg| quote(arg))
            .collect::<Vec<_>>()
            .join(" ")
    ));
    builder.header.push(
        "No ssh_config was read: options that ~/.ssh/config gives this host are not here \
         (tunneld import-ssh-config imports them)."
            .to_owned(),
    );
    if let Some(name) = name
        && (name.is_empty() || !name.chars().all(valid_name_char))
    {
        return Err(ImportError::Command(format!(
            "--name {name:?}: expected letters, digits, _, . and - only"
        )));
    }
    let mut notes = command.notes.clone();
    if let Some(stdio) = &command.stdio {
        notes.push(format!(
            "-W {stdio}: not imported: that is ssh as a ProxyCommand, not a tunnel"
        ));
    }
    let options = builder.options(&command.host, command.lines.clone())?;
    let mapped = map::host(&command.host, &options, local);
    builder.tunnel(&command.host, &options, mapped, name, notes)?;
    Ok(builder.finish())
}

fn valid_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')
}

/// A name tunneld takes: other characters become `-`.
fn sanitise(alias: &str) -> String {
    let name: String = alias
        .chars()
        .map(|c| if valid_name_char(c) { c } else { '-' })
        .collect();
    if name.is_empty() {
        "host".to_owned()
    } else {
        name
    }
}

impl<'a> Builder<'a> {
    fn new(source: Source, local: &'a Local) -> Self {
        Builder {
            source,
            local,
            header: Vec::new(),
            tables: Vec::new(),
            entries: HashMap::new(),
            making: HashSet::new(),
            host_names: HashSet::new(),
            warnings: Vec::new(),
            tunnels: 0,
        }
    }

    fn options(&mut self, alias: &str, preset: Vec<Line>) -> Result<Options, ImportError> {
        match &mut self.source {
            Source::Config { files, path } => {
                evaluate::evaluate(files, path, alias, self.local, preset)
            }
            Source::Command => Ok(Options {
                applied: preset,
                ..Options::default()
            }),
        }
    }

    /// A `[hosts]` entry and a `[tunnels]` table for `alias`.
    fn tunnel(
        &mut self,
        alias: &str,
        options: &Options,
        mapped: map::Mapped,
        name: Option<&str>,
        notes: Vec<String>,
    ) -> Result<(), ImportError> {
        let forwards = mapped.forwards.clone();
        let has_forwards = mapped.has_forwards;
        let host = self.entry(alias, Vec::new(), options, mapped, (0, true))?;
        let wanted = name.map_or_else(|| sanitise(alias), str::to_owned);
        let mut name = wanted.clone();
        let mut n = 1;
        while self
            .tables
            .iter()
            .any(|t| t.section == "tunnels" && t.name == name)
        {
            n += 1;
            name = format!("{wanted}-{n}");
        }
        let mut items = vec![Item::Key("host".to_owned(), toml_string(&host))];
        items.extend(notes.into_iter().map(Item::Comment));
        items.extend(forwards);
        if !has_forwards {
            // A tunnel without forwards would fail check: what there is to say goes into the
            // host's entry, as comments.
            items.remove(0);
            items.push(Item::Comment(format!(
                "no [tunnels.{name}]: no forward that tunneld takes; add one with host = {}",
                toml_string(&host)
            )));
            let comments = items.into_iter().map(|item| match item {
                Item::Key(key, value) => Item::Comment(format!("{key} = {value}")),
                comment => comment,
            });
            if let Some(table) = self
                .tables
                .iter_mut()
                .find(|t| t.section == "hosts" && t.name == host)
            {
                table.items.extend(comments);
            }
            return Ok(());
        }
        self.tunnels += 1;
        self.tables.push(Table {
            section: "tunnels",
            name,
            items,
        });
        Ok(())
    }

    /// The `[hosts]` entry for `alias` with `preset` lines, made once; its name.
    fn entry(
        &mut self,
        alias: &str,
        preset: Vec<Line>,
        options: &Options,
        mut mapped: map::Mapped,
        (depth, own_jump): (usize, bool),
    ) -> Result<String, ImportError> {
        let proxy = proxy_line(options);
        let skip_jump = !own_jump && proxy.is_some();
        let key = (
            alias.to_owned(),
            preset
                .iter()
                .map(|line| line.args.clone())
                .collect::<Vec<_>>(),
            skip_jump,
        );
        if let Some(name) = self.entries.get(&key) {
            return Ok(name.clone());
        }
        if !self.making.insert(key.clone()) {
            return Err(ImportError::Line {
                at: options
                    .first("proxyjump")
                    .map_or_else(String::new, |l| l.at.clone()),
                message: format!("jump cycle through {alias}"),
            });
        }
        let jumps = match proxy {
            Some(line) if skip_jump => (
                Vec::new(),
                vec![format!(
                    "{} ({}): not used here: ssh ignores it for a hop after the first of a chain",
                    line.text(),
                    line.at
                )],
            ),
            _ => self.jumps(options, depth)?,
        };
        if !jumps.0.is_empty() {
            let at = mapped
                .host
                .iter()
                .position(|item| matches!(item, Item::Key(key, _) if key == "user"))
                .map_or(mapped.host.len(), |at| at + 1);
            mapped
                .host
                .insert(at, Item::Key("jump".to_owned(), list(&jumps.0)));
        }
        mapped.host.extend(jumps.1.into_iter().map(Item::Comment));
        let mut name = sanitise(alias);
        let mut n = 1;
        while self.host_names.contains(&name) {
            n += 1;
            name = format!("{}-{n}", sanitise(alias));
        }
        self.host_names.insert(name.clone());
        self.warnings.extend(mapped.warnings);
        self.tables.push(Table {
            section: "hosts",
            name: name.clone(),
            items: mapped.host,
        });
        self.making.remove(&key);
        self.entries.insert(key, name.clone());
        Ok(name)
    }

    fn finish(self) -> Import {
        let mut header = self.header;
        header.push(
            "Host keys: ssh trusts those of ~/.ssh/known_hosts; tunneld reads \
             /etc/tunneld/known_hosts (keys you pin) and /var/lib/tunneld/known_hosts (keys it \
             learned). ssh-keygen -F HOSTNAME -f ~/.ssh/known_hosts prints a server's lines."
                .to_owned(),
        );
        header.push(format!(
            "Check it with: tunneld check --config FILE. Comments mark what ssh does that \
             tunneld does not; see {}.",
            crate::NOT_DONE
        ));
        let mut warnings = self.warnings;
        let mut seen = HashSet::new();
        warnings.retain(|warning| seen.insert(warning.clone()));
        Import {
            toml: render::document(&header, &self.tables),
            warnings,
            tunnels: self.tunnels,
        }
    }
}
