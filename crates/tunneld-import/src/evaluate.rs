//! What OpenSSH makes of a config for one host: the option lines that apply to it, in the
//! order read, after `Host` and `Match` blocks and `Include`s. The first value of an option
//! wins, as in ssh; [`Options`] keeps every applied line and its readers take the first.
//! Nothing is executed: a `Match exec` (and every criterion that cannot be judged without the
//! network or a second pass) leaves its block undecided, and its lines are kept aside to be
//! shown, not applied.

use std::path::Path;

use crate::files::{Files, Line};
use crate::{ImportError, Local, pattern};

/// OpenSSH's limit on nested `Include`s (`READCONF_MAX_DEPTH`).
const MAX_DEPTH: usize = 16;

/// The option lines that apply to one host.
#[derive(Clone, Debug, Default)]
pub(crate) struct Options {
    /// Lines that apply, in the order ssh reads them.
    pub(crate) applied: Vec<Line>,
    /// Lines of blocks whose condition was not judged, with the reason.
    pub(crate) undecided: Vec<(String, Line)>,
    /// `Include` arguments that named no file.
    pub(crate) empty_includes: Vec<String>,
}

impl Options {
    /// The first applied line of `keyword` (lowercase): the value ssh uses.
    pub(crate) fn first(&self, keyword: &str) -> Option<&Line> {
        self.applied.iter().find(|line| line.lower == keyword)
    }

    /// Every applied line of `keyword`, for the options that add up (`LocalForward`).
    pub(crate) fn all<'a>(&'a self, keyword: &'a str) -> impl Iterator<Item = &'a Line> + 'a {
        self.applied
            .iter()
            .filter(move |line| line.lower == keyword)
    }

    /// The first argument of the first `keyword` line.
    pub(crate) fn value(&self, keyword: &str) -> Option<&str> {
        self.first(keyword)
            .and_then(|line| line.args.first())
            .map(String::as_str)
    }
}

/// Whether a block applies.
#[derive(Clone, Debug, PartialEq)]
enum Active {
    Yes,
    No,
    Undecided(String),
}

impl Active {
    fn and(self, other: Active) -> Active {
        match (self, other) {
            (Active::No, _) | (_, Active::No) => Active::No,
            (Active::Undecided(why), _) | (_, Active::Undecided(why)) => Active::Undecided(why),
            (Active::Yes, Active::Yes) => Active::Yes,
        }
    }
}

/// The options of `config` for the host `alias`, after `preset` (values from a command line,
/// which come first and so win).
pub(crate) fn evaluate(
    files: &mut Files,
    config: &Path,
    alias: &str,
    local: &Local,
    preset: Vec<Line>,
) -> Result<Options, ImportError> {
    let mut options = Options {
        applied: preset,
        ..Options::default()
    };
    let walk = Walk { alias, local };
    walk.file(files, config, Active::Yes, &mut options, 0)?;
    Ok(options)
}

/// The names of `Host` lines without wildcards or negation, in the order of the files (with
/// their `Include`s): the hosts that an import of the whole file considers.
pub(crate) fn host_names(files: &mut Files, config: &Path) -> Result<Vec<String>, ImportError> {
    let mut names = Vec::new();
    collect_names(files, config, &mut names, 0)?;
    Ok(names)
}

fn collect_names(
    files: &mut Files,
    path: &Path,
    names: &mut Vec<String>,
    depth: usize,
) -> Result<(), ImportError> {
    for line in files.lines(path)?.iter() {
        match line.lower.as_str() {
            "host" => {
                for name in &line.args {
                    if pattern::is_plain(name) && !names.contains(name) {
                        names.push(name.clone());
                    }
                }
            }
            "include" if depth < MAX_DEPTH => {
                for arg in &line.args {
                    for included in files.include(arg, line)? {
                        collect_names(files, &included, names, depth + 1)?;
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

struct Walk<'a> {
    alias: &'a str,
    local: &'a Local,
}

impl Walk<'_> {
    /// One file, entered in the state `outer` of the line that included it.
    fn file(
        &self,
        files: &mut Files,
        path: &Path,
        outer: Active,
        options: &mut Options,
        depth: usize,
    ) -> Result<(), ImportError> {
        let lines = files.lines(path)?;
        let mut active = outer.clone();
        for line in lines.iter() {
            match line.lower.as_str() {
                "host" => {
                    let here = if pattern::host_line(self.alias, &line.args) {
                        Active::Yes
                    } else {
                        Active::No
                    };
                    active = outer.clone().and(here);
                }
                "match" => active = outer.clone().and(self.criteria(line, options)?),
                "include" => {
                    if depth >= MAX_DEPTH {
                        return Err(ImportError::Line {
                            at: line.at.clone(),
                            message: format!(
                                "Include nested more than {MAX_DEPTH} deep (a file that \
                                 includes itself?)"
                            ),
                        });
                    }
                    for arg in &line.args {
                        let found = files.include(arg, line)?;
                        if found.is_empty() && active == Active::Yes {
                            options
                                .empty_includes
                                .push(format!("{} ({})", arg, line.at));
                        }
                        for included in found {
                            self.file(files, &included, active.clone(), options, depth + 1)?;
                        }
                    }
                }
                _ => match &active {
                    Active::Yes => options.applied.push(line.clone()),
                    Active::No => {}
                    Active::Undecided(why) => options.undecided.push((why.clone(), line.clone())),
                },
            }
        }
        Ok(())
    }

    /// A `Match` line's criteria, all of which must hold.
    fn criteria(&self, line: &Line, options: &Options) -> Result<Active, ImportError> {
        if line.args.is_empty() {
            return Err(ImportError::Line {
                at: line.at.clone(),
                message: "Match needs criteria (all, host, originalhost, user, ...)".to_owned(),
            });
        }
        let mut result = Active::Yes;
        let mut args = line.args.iter();
        let error = |message: String| ImportError::Line {
            at: line.at.clone(),
            message,
        };
        while let Some(word) = args.next() {
            let lower = word.to_ascii_lowercase();
            let (negated, criterion) = match lower.strip_prefix('!') {
                Some(rest) => (true, rest),
                None => (false, lower.as_str()),
            };
            let mut list = || {
                args.next()
                    .ok_or_else(|| error(format!("Match {criterion} needs an argument")))
            };
            let verdict = match criterion {
                "all" => Active::Yes,
                "host" => {
                    let host = match options.value("hostname") {
                        Some(name) => crate::paths::percent_h(name, self.alias),
                        None => self.alias.to_owned(),
                    };
                    known(pattern::list(&host, list()?))
                }
                "originalhost" => known(pattern::list(self.alias, list()?)),
                "user" => {
                    let user = options.value("user").unwrap_or(&self.local.user);
                    known(pattern::list(user, list()?))
                }
                "localuser" => known(pattern::list(&self.local.user, list()?)),
                "exec" => {
                    let command = list()?;
                    Active::Undecided(format!("Match exec {command:?} is never run by the import"))
                }
                "canonical" | "final" | "localnetwork" | "tagged" => {
                    if criterion != "canonical" && criterion != "final" {
                        list()?;
                    }
                    Active::Undecided(format!("Match {criterion} is not judged by the import"))
                }
                other => return Err(error(format!("Match {other}: unknown criterion"))),
            };
            let verdict = match (negated, verdict) {
                (true, Active::Yes) => Active::No,
                (true, Active::No) => Active::Yes,
                (_, verdict) => verdict,
            };
            result = result.and(verdict);
        }
        Ok(result)
    }
}

fn known(matched: bool) -> Active {
    if matched { Active::Yes } else { Active::No }
}

#[cfg(test)]
mod tests;
