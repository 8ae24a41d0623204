use std::fs;
use std::os::unix::fs::PermissionsExt;

use super::*;

const PATH: &str = "/etc/tunneld/socks-users";

fn parse(text: &str) -> Result<Credentials, AuthFileError> {
    Credentials::parse(Path::new(PATH), text.as_bytes())
}

/// The message of the error for `text`, checked to leave out the password `secret`.
#[track_caller]
fn error(text: &str, secret: &str) -> String {
    let message = parse(text).unwrap_err().to_string();
    assert!(!message.contains(secret), "{message}");
    message
}

#[test]
fn users_and_passwords() {
    let credentials =
        parse("alice:correct horse\nbob:pa:ss:word\ncarol:trailing space \n").unwrap();
    assert_eq!(
        credentials.users().collect::<Vec<_>>(),
        ["alice", "bob", "carol"]
    );
    assert!(credentials.verify("alice", b"correct horse"));
    assert!(credentials.verify("bob", b"pa:ss:word"));
    assert!(credentials.verify("carol", b"trailing space "));
    assert!(!credentials.verify("carol", b"trailing space"));
    assert!(!credentials.verify("alice", b"correct horse "));
    assert!(!credentials.verify("alice", b"pa:ss:word"));
    assert!(!credentials.verify("bob", b"pa"));
    assert!(!credentials.verify("mallory", b"correct horse"));
    assert!(!credentials.verify("Alice", b"correct horse"));
    assert!(!credentials.verify("", b""));
}

#[test]
fn line_endings_comments_and_blank_lines() {
    let credentials =
        parse("# users\r\n\r\n  # indented comment\nalice:secret\r\n   \nbob:x").unwrap();
    assert_eq!(credentials.users().collect::<Vec<_>>(), ["alice", "bob"]);
    assert!(credentials.verify("alice", b"secret"));
    assert!(!credentials.verify("alice", b"secret\r"));
    assert!(credentials.verify("bob", b"x"));
    // A '#' after the start of a line is part of the password.
    assert!(parse("dave:#hash").unwrap().verify("dave", b"#hash"));
}

#[test]
fn bad_lines_are_named_by_number_without_their_password() {
    assert_eq!(
        error("# comment\n\nhunter2\n", "hunter2"),
        "/etc/tunneld/socks-users:3: expected user:password"
    );
    assert_eq!(
        error(":hunter2", "hunter2"),
        "/etc/tunneld/socks-users:1: empty user name (expected user:password)"
    );
    assert_eq!(
        error("alice:\n", "\0"),
        "/etc/tunneld/socks-users:1: empty password (SOCKS5 passwords are 1 to 255 bytes)"
    );
    assert_eq!(
        error("al ice:hunter2", "hunter2"),
        "/etc/tunneld/socks-users:1: user name contains whitespace or control characters"
    );
    assert_eq!(
        error(&format!("{}:hunter2", "u".repeat(256)), "hunter2"),
        "/etc/tunneld/socks-users:1: user name is longer than 255 bytes"
    );
    let long = "p".repeat(256);
    assert_eq!(
        error(&format!("ok:fine\nalice:{long}"), &long),
        "/etc/tunneld/socks-users:2: password is longer than 255 bytes"
    );
    assert_eq!(
        error("alice:one\nbob:two\nalice:hunter2\n", "hunter2"),
        "/etc/tunneld/socks-users:3: user \"alice\" is already defined on line 1"
    );
    let not_utf8 = Credentials::parse(Path::new(PATH), b"\xFFalice:hunter2").unwrap_err();
    assert_eq!(
        not_utf8.to_string(),
        "/etc/tunneld/socks-users:1: user name is not UTF-8"
    );
}

#[test]
fn the_longest_names_socks_can_carry_are_accepted() {
    let (user, password) = ("u".repeat(255), "p".repeat(255));
    let credentials = parse(&format!("{user}:{password}")).unwrap();
    assert!(credentials.verify(&user, password.as_bytes()));
}

#[test]
fn a_file_without_users_is_an_error() {
    for text in ["", "\n", "# nobody yet\n"] {
        assert_eq!(
            error(text, "\0"),
            "/etc/tunneld/socks-users has no users (expected user:password lines)"
        );
    }
}

#[test]
fn nothing_prints_a_password() {
    let credentials = parse("alice:hunter2\n").unwrap();
    let debug = format!("{credentials:?}");
    assert_eq!(
        debug,
        "Credentials { path: \"/etc/tunneld/socks-users\", users: [\"alice\"] }"
    );
    let secret = Secret::new(b"hunter2".to_vec());
    assert_eq!(format!("{secret:?}"), "Secret(..)");
    assert_eq!(secret, Secret::new(b"hunter2".to_vec()));
    assert_ne!(secret, Secret::new(b"hunter3".to_vec()));
    assert_ne!(secret, Secret::new(b"hunter".to_vec()));
}

fn write(dir: &Path, mode: u32, text: &str) -> PathBuf {
    let path = dir.join("users");
    fs::write(&path, text).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
    path
}

#[test]
fn loading_a_private_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), 0o600, "alice:hunter2\n");
    let credentials = Credentials::load(&path).unwrap();
    assert!(credentials.verify("alice", b"hunter2"));
    assert_eq!(credentials.path(), path);
    fs::set_permissions(&path, fs::Permissions::from_mode(0o400)).unwrap();
    assert!(Credentials::load(&path).is_ok());
}

#[test]
fn a_file_others_can_read_or_write_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    for (mode, word) in [
        (0o640, "readable"),
        (0o604, "readable"),
        (0o620, "writable"),
    ] {
        let path = write(dir.path(), mode, "alice:hunter2\n");
        let error = Credentials::load(&path).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "{} is {word} by group/others; refusing to use it",
                path.display()
            )
        );
        assert!(error.is_permanent());
    }
}

#[test]
fn missing_files_and_directories_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let error = Credentials::load(&missing).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!("{} does not exist", missing.display())
    );
    assert!(error.is_permanent());

    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700)).unwrap();
    let error = Credentials::load(dir.path()).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "{} is not a users file: not a regular file",
            dir.path().display()
        )
    );
}

#[test]
fn bad_lines_in_a_loaded_file_name_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), 0o600, "alice:one\nbroken\n");
    assert_eq!(
        Credentials::load(&path).unwrap_err().to_string(),
        format!("{}:2: expected user:password", path.display())
    );
}
