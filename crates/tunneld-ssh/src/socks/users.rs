//! The users of a SOCKS5 forward with username/password authentication: its `auth_file` of
//! `user:password` lines, and checking a client's credentials against it.
//!
//! The file is private like a key file (neither readable nor writable by group or others).
//! Passwords are never printed: not by `Debug`, not in errors. Only their SHA-256 digests are
//! kept once the file is parsed, which lets every check compare 32 bytes in constant time
//! whatever the lengths of the passwords.

use std::fmt;

use std::path::{Path, PathBuf};

use ring::digest::{SHA256, digest};
use subtle::{Choice, ConstantTimeEq};
use zeroize::Zeroizing;

use super::MAX_NAME;
use crate::private_file::{self, PrivateFileError, PrivateFileKind};

/// A password or another secret: its `Debug` prints nothing of it, it has no `Display`, it is
/// compared in constant time, and its bytes are overwritten when it is dropped (best effort:
/// copies made by whoever had the bytes before are beyond reach).
#[derive(Clone)]
pub struct Secret(Zeroizing<Vec<u8>>);

impl Secret {
    /// Wraps the bytes.
    pub fn new(bytes: Vec<u8>) -> Self {
        Secret(Zeroizing::new(bytes))
    }

    /// The bytes, for checking them; never for printing them.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl PartialEq for Secret {
    /// Compares digests, so that the time taken says nothing about where the secrets differ,
    /// nor whether their lengths do.
    fn eq(&self, other: &Self) -> bool {
        sha256(&self.0).ct_eq(&sha256(&other.0)).into()
    }
}

impl Eq for Secret {}

/// Why an auth file cannot be used. No message ever contains a password.
#[derive(thiserror::Error, Debug)]
pub enum AuthFileError {
    /// The file is missing, unreadable, not private, or not a plausible users file.
    #[error(transparent)]
    File(#[from] PrivateFileError),
    /// A line is not `user:password`.
    #[error("{}:{line}: {problem}", path.display())]
    Line {
        /// The auth file.
        path: PathBuf,
        /// The line number, from 1.
        line: usize,
        /// What is wrong with it.
        problem: LineProblem,
    },
    /// It has no users, so no client could ever connect.
    #[error("{} has no users (expected user:password lines)", path.display())]
    NoUsers {
        /// The auth file.
        path: PathBuf,
    },
}

impl AuthFileError {
    /// Whether retrying cannot help until someone acts (fixes the file or its mode). Only I/O
    /// failures other than "permission denied" may go away by themselves.
    pub fn is_permanent(&self) -> bool {
        match self {
            AuthFileError::File(error) => error.is_permanent(),
            _ => true,
        }
    }
}

/// What is wrong with a line of an auth file. The messages describe the line without quoting
/// it, since it may hold a password.
#[derive(thiserror::Error, Clone, Debug, PartialEq, Eq)]
pub enum LineProblem {
    /// No `:` on the line.
    #[error("expected user:password")]
    NoColon,
    /// Nothing before the `:`.
    #[error("empty user name (expected user:password)")]
    EmptyUser,
    /// Nothing after the `:`.
    #[error("empty password (SOCKS5 passwords are 1 to 255 bytes)")]
    EmptyPassword,
    /// A user name SOCKS5 cannot carry.
    #[error("user name is longer than 255 bytes")]
    UserTooLong,
    /// A password SOCKS5 cannot carry.
    #[error("password is longer than 255 bytes")]
    PasswordTooLong,
    /// A user name that is not UTF-8.
    #[error("user name is not UTF-8")]
    UserNotUtf8,
    /// A user name with spaces or control characters: most likely a mistake (and not quoted,
    /// since a misplaced `:` may have put part of a password in it).
    #[error("user name contains whitespace or control characters")]
    UserCharacters,
    /// The same user twice.
    #[error("user {user:?} is already defined on line {first_line}")]
    Duplicate {
        /// The user.
        user: String,
        /// Where it was first defined.
        first_line: usize,
    },
}

/// The users of an auth file.
pub struct Credentials {
    path: PathBuf,
    users: Vec<User>,
}

struct User {
    name: String,
    line: usize,
    password_digest: [u8; 32],
}

impl fmt::Debug for Credentials {
    // User names only: the digests are as good as the passwords to whoever can guess them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("path", &self.path)
            .field("users", &self.users().collect::<Vec<_>>())
            .finish()
    }
}

impl Credentials {
    /// Reads and parses an auth file. It must be a regular file (symlinks are followed), be
    /// neither readable nor writable by group or others, and hold at least one user. Blocking
    /// file I/O.
    pub fn load(path: &Path) -> Result<Credentials, AuthFileError> {
        // The whole file, passwords included: wiped when dropped, like a `Secret`.
        let bytes = Zeroizing::new(private_file::read(path, PrivateFileKind::SocksUsers)?);
        Credentials::parse(path, &bytes)
    }

    /// Parses the text of an auth file; `path` is for messages. Lines are `user:password`,
    /// split at the first `:` (so passwords may contain `:`, user names may not); the password
    /// is every byte after it, up to the end of the line (`\n` or `\r\n`), spaces included.
    /// Blank lines and lines starting with `#` (after spaces) are skipped.
    pub fn parse(path: &Path, text: &[u8]) -> Result<Credentials, AuthFileError> {
        let mut users: Vec<User> = Vec::new();
        for (index, line) in text.split(|&byte| byte == b'\n').enumerate() {
            let number = index + 1;
            let at = |problem| AuthFileError::Line {
                path: path.to_owned(),
                line: number,
                problem,
            };
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let content = line.trim_ascii_start();
            if content.is_empty() || content.starts_with(b"#") {
                continue;
            }
            let (name, password) = parse_line(line).map_err(at)?;
            if let Some(first) = users.iter().find(|user| user.name == name) {
                return Err(at(LineProblem::Duplicate {
                    user: name,
                    first_line: first.line,
                }));
            }
            users.push(User {
                name,
                line: number,
                password_digest: sha256(password),
            });
        }
        if users.is_empty() {
            return Err(AuthFileError::NoUsers {
                path: path.to_owned(),
            });
        }
        Ok(Credentials {
            path: path.to_owned(),
            users,
        })
    }

    /// Whether `user` may connect with `password`. Takes the same time whatever the password
    /// and whether or not the user exists: every user is compared, and every password digest.
    pub fn verify(&self, user: &str, password: &[u8]) -> bool {
        let offered = sha256(password);
        let mut granted = Choice::from(0);
        for known in &self.users {
            let name_matches = Choice::from(u8::from(known.name == user));
            granted |= name_matches & known.password_digest.ct_eq(&offered);
        }
        granted.into()
    }

    /// The user names, in the order of the file.
    pub fn users(&self) -> impl Iterator<Item = &str> {
        self.users.iter().map(|user| user.name.as_str())
    }

    /// The file they came from.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Splits and checks one `user:password` line (not blank, not a comment, no line ending).
fn parse_line(line: &[u8]) -> Result<(String, &[u8]), LineProblem> {
    let colon = line
        .iter()
        .position(|&byte| byte == b':')
        .ok_or(LineProblem::NoColon)?;
    let (name, password) = (
        line.get(..colon).unwrap_or_default(),
        line.get(colon + 1..).unwrap_or_default(),
    );
    if name.is_empty() {
        return Err(LineProblem::EmptyUser);
    }
    if name.len() > MAX_NAME {
        return Err(LineProblem::UserTooLong);
    }
    let name = std::str::from_utf8(name).map_err(|_| LineProblem::UserNotUtf8)?;
    if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(LineProblem::UserCharacters);
    }
    if password.is_empty() {
        return Err(LineProblem::EmptyPassword);
    }
    if password.len() > MAX_NAME {
        return Err(LineProblem::PasswordTooLong);
    }
    Ok((name.to_owned(), password))
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0; 32];
    out.copy_from_slice(digest(&SHA256, bytes).as_ref());
    out
}

#[cfg(test)]
mod tests;
