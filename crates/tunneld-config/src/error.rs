//! Configuration errors that point at the line: `PATH:LINE:COLUMN: KEY: problem (expected)`.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::findings::Location;

/// Why a configuration file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read (missing, unreadable, not UTF-8).
    #[error("{}: cannot read: {error}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        error: std::io::Error,
    },
    /// The file was read but is not a valid configuration.
    #[error("{}:{line}:{column}: {}{message}", .path.display(), KeyPrefix(.key))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line of the offending text.
        line: usize,
        /// 1-based column of the offending text, in characters.
        column: usize,
        /// The dotted key the problem is about (`tunnels.db.local[0]`); empty for a TOML syntax
        /// error that is not about one key.
        key: String,
        /// What is wrong, and in parentheses what was expected.
        message: String,
    },
}

impl ConfigError {
    /// The file the error is about.
    pub fn path(&self) -> &Path {
        match self {
            ConfigError::Read { path, .. } | ConfigError::Invalid { path, .. } => path,
        }
    }

    /// The 1-based line of the problem; `None` when the file could not be read.
    pub fn line(&self) -> Option<usize> {
        match self {
            ConfigError::Read { .. } => None,
            ConfigError::Invalid { line, .. } => Some(*line),
        }
    }

    /// The 1-based column (in characters) of the problem; `None` when the file could not be read.
    pub fn column(&self) -> Option<usize> {
        match self {
            ConfigError::Read { .. } => None,
            ConfigError::Invalid { column, .. } => Some(*column),
        }
    }

    /// The dotted key the problem is about; `None` when the file could not be read, empty for a
    /// TOML syntax error.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Read { .. } => None,
            ConfigError::Invalid { key, .. } => Some(key),
        }
    }

    /// What is wrong, without the position and key.
    pub fn message(&self) -> String {
        match self {
            ConfigError::Read { error, .. } => format!("cannot read: {error}"),
            ConfigError::Invalid { message, .. } => message.clone(),
        }
    }
}

struct KeyPrefix<'a>(&'a str);

impl fmt::Display for KeyPrefix<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            Ok(())
        } else {
            write!(f, "{}: ", self.0)
        }
    }
}

/// The text being parsed and its path: turns byte spans into positioned errors.
#[derive(Clone, Copy)]
pub(crate) struct Source<'a> {
    pub(crate) path: &'a Path,
    pub(crate) text: &'a str,
}

impl Source<'_> {
    /// Where `span` starts, for a finding about `key`.
    pub(crate) fn location(&self, span: &Range<usize>, key: impl fmt::Display) -> Location {
        let (line, column) = line_column(self.text, span.start);
        Location {
            line,
            column,
            key: key.to_string(),
        }
    }

    /// An error about `key` at the start of `span`.
    pub(crate) fn error(
        &self,
        span: &Range<usize>,
        key: impl fmt::Display,
        message: impl Into<String>,
    ) -> ConfigError {
        let (line, column) = line_column(self.text, span.start);
        ConfigError::Invalid {
            path: self.path.to_path_buf(),
            line,
            column,
            key: key.to_string(),
            message: message.into(),
        }
    }
}

/// 1-based line and column (in characters) of byte offset `at`, clamped to the text.
pub(crate) fn line_column(text: &str, at: usize) -> (usize, usize) {
    let mut at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    let before = text.get(..at).unwrap_or_default();
    let line_start = before.rfind('\n').map_or(0, |nl| nl + 1);
    let line = before.matches('\n').count() + 1;
    let column = before.get(line_start..).unwrap_or_default().chars().count() + 1;
    (line, column)
}

/// A dotted key path as written in messages: `tunnels.db.local[0]`, `tunnels."my db"`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Key(String);

impl Key {
    /// A top-level key.
    pub(crate) fn root(name: &str) -> Key {
        Key::default().field(name)
    }

    /// `self.name`, quoting `name` when it is not a bare TOML key.
    pub(crate) fn field(&self, name: &str) -> Key {
        let mut path = self.0.clone();
        if !path.is_empty() {
            path.push('.');
        }
        let bare = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if bare {
            path.push_str(name);
        } else {
            path.push_str(&format!("{name:?}"));
        }
        Key(path)
    }

    /// `self[index]`.
    pub(crate) fn index(&self, index: usize) -> Key {
        Key(format!("{}[{index}]", self.0))
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_in_characters() {
        let text = "a = 1\nb = \"é\" x\n";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 4), (1, 5));
        assert_eq!(line_column(text, 6), (2, 1));
        // After the two-byte é, the column counts one character.
        let x = text.find('x').unwrap();
        assert_eq!(line_column(text, x), (2, 9));
        // Out of range and inside a character: clamped, never a panic.
        assert_eq!(line_column(text, 1000), (3, 1));
        assert_eq!(line_column(text, x - 3), (2, 6));
        assert_eq!(line_column("", 5), (1, 1));
    }

    #[test]
    fn keys() {
        let db = Key::root("tunnels").field("db");
        assert_eq!(
            db.field("local").index(0).to_string(),
            "tunnels.db.local[0]"
        );
        assert_eq!(
            Key::root("tunnels").field("my db").to_string(),
            "tunnels.\"my db\""
        );
        assert_eq!(
            Key::root("hosts").field("db.internal").to_string(),
            "hosts.\"db.internal\""
        );
    }

    #[test]
    fn display() {
        let source = Source {
            path: Path::new("db.toml"),
            text: "x\ny = 1\n",
        };
        let err = source.error(&(4..5), Key::root("y"), "bad");
        assert_eq!(err.to_string(), "db.toml:2:3: y: bad");
        assert_eq!(
            (err.line(), err.column(), err.key()),
            (Some(2), Some(3), Some("y"))
        );
        let err = source.error(&(0..1), "", "syntax");
        assert_eq!(err.to_string(), "db.toml:1:1: syntax");
    }
}
