//! Reading known_hosts files into lines, each remembering its file and line number.

use std::io;
use std::path::Path;
use std::str::FromStr;

use russh::keys::ssh_key::known_hosts::Entry;

use super::{HostKeyError, HostsFile, Line};

/// The usable lines of the file at `path`: none when it is missing, an error when it exists
/// but cannot be read.
pub(super) fn read_lines(path: &Path, file: HostsFile) -> Result<Vec<Line>, HostKeyError> {
    match std::fs::read(path) {
        Ok(content) => Ok(parse_lines(path, file, &content)),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(error) => Err(HostKeyError::Read {
            path: path.to_owned(),
            error,
        }),
    }
}

/// Parses known_hosts content (bytes, so that one line of stray binary or Latin-1 costs only
/// that line). `path` is for messages.
pub(super) fn parse_lines(path: &Path, file: HostsFile, content: &[u8]) -> Vec<Line> {
    let mut lines = Vec::new();
    // Split on '\n' ourselves (rather than `Entry`'s own iterator) to keep line numbers.
    for (index, raw) in content.split(|&byte| byte == b'\n').enumerate() {
        let number = index + 1;
        match parse_line(raw) {
            Ok(None) => {}
            Ok(Some(entry)) => lines.push(Line {
                file,
                number,
                marker: entry.marker().copied(),
                hosts: entry.host_patterns().clone(),
                key: entry.public_key().key_data().clone(),
            }),
            Err(reason) => tracing::warn!(
                known_hosts = %path.display(),
                line = number,
                "{}:{number}: skipping malformed known_hosts line: {reason}",
                path.display()
            ),
        }
    }
    lines
}

/// One line: `Ok(None)` for a blank line or a comment, `Err(reason)` when malformed.
fn parse_line(raw: &[u8]) -> Result<Option<Entry>, String> {
    let text = std::str::from_utf8(raw).map_err(|_| "not UTF-8 text".to_owned())?;
    // trim() also drops the '\r' of a file edited on Windows.
    let text = text.trim();
    if text.is_empty() || text.starts_with('#') {
        return Ok(None);
    }
    // ssh-key's parser splits fields on single spaces only; OpenSSH accepts any run of spaces
    // and tabs. Rejoining changes only whitespace inside the key comment, which is unused.
    let fields: Vec<&str> = text.split_ascii_whitespace().collect();
    let needed = if text.starts_with('@') { 4 } else { 3 };
    if fields.len() < needed {
        return Err("expected [@marker] hosts keytype base64-key [comment]".to_owned());
    }
    Entry::from_str(&fields.join(" "))
        .map(Some)
        .map_err(|error| error.to_string())
}
