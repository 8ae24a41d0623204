//! The files of an ssh_config, each read and split once: the file named, and what its
//! `Include` lines name (relative to `~/.ssh`, globs expanded in sorted order, as OpenSSH does
//! for a user's configuration).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use crate::ImportError;
use crate::lexer;

/// One option line of a file.
#[derive(Clone, Debug)]
pub(crate) struct Line {
    /// Where it is: `PATH:LINE`.
    pub(crate) at: String,
    /// The keyword as written (`LocalForward`).
    pub(crate) keyword: String,
    /// The keyword in lowercase: ssh_config keywords are case-insensitive.
    pub(crate) lower: String,
    /// The arguments, unquoted.
    pub(crate) args: Vec<String>,
}

impl Line {
    /// The line as ssh_config would read it again.
    pub(crate) fn text(&self) -> String {
        let args: Vec<String> = self.args.iter().map(|arg| quote(arg)).collect();
        format!("{} {}", self.keyword, args.join(" "))
    }
}

/// An argument as ssh_config reads it back: quoted when it holds blanks or quotes.
pub(crate) fn quote(arg: &str) -> String {
    if arg.is_empty() || arg.contains(|c: char| c.is_whitespace() || c == '"' || c == '#') {
        format!("\"{}\"", arg.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        arg.to_owned()
    }
}

/// The files read so far, by path.
pub(crate) struct Files {
    home: PathBuf,
    read: HashMap<PathBuf, Rc<Vec<Line>>>,
}

impl Files {
    /// Files whose `~` and relative `Include`s are resolved against `home`.
    pub(crate) fn new(home: &Path) -> Files {
        Files {
            home: home.to_path_buf(),
            read: HashMap::new(),
        }
    }

    /// The option lines of `path`.
    pub(crate) fn lines(&mut self, path: &Path) -> Result<Rc<Vec<Line>>, ImportError> {
        if let Some(lines) = self.read.get(path) {
            return Ok(Rc::clone(lines));
        }
        let text = std::fs::read_to_string(path).map_err(|error| ImportError::Read {
            path: path.to_path_buf(),
            error,
        })?;
        let mut lines = Vec::new();
        for (number, line) in text.lines().enumerate() {
            let at = format!("{}:{}", path.display(), number + 1);
            match lexer::split_line(line) {
                Ok(None) => {}
                Ok(Some((keyword, args))) => lines.push(Line {
                    at,
                    lower: keyword.to_ascii_lowercase(),
                    keyword,
                    args,
                }),
                Err(message) => return Err(ImportError::Line { at, message }),
            }
        }
        let lines = Rc::new(lines);
        self.read.insert(path.to_path_buf(), Rc::clone(&lines));
        Ok(lines)
    }

    /// The files that one argument of `Include` names, in the order OpenSSH reads them. A
    /// pattern that matches nothing names nothing, as in OpenSSH.
    pub(crate) fn include(&self, arg: &str, line: &Line) -> Result<Vec<PathBuf>, ImportError> {
        let path = if let Some(rest) = arg.strip_prefix("~/") {
            self.home.join(rest)
        } else if arg.starts_with('/') {
            PathBuf::from(arg)
        } else if arg.starts_with('~') {
            return Err(ImportError::Line {
                at: line.at.clone(),
                message: format!("Include {arg}: only ~/ is expanded, not ~user"),
            });
        } else {
            self.home.join(".ssh").join(arg)
        };
        let pattern = path.to_string_lossy().into_owned();
        let error = |message: String| ImportError::Line {
            at: line.at.clone(),
            message: format!("Include {arg}: {message}"),
        };
        let mut found = Vec::new();
        for entry in glob::glob(&pattern).map_err(|err| error(err.to_string()))? {
            found.push(entry.map_err(|err| error(err.to_string()))?);
        }
        found.sort();
        Ok(found)
    }
}
