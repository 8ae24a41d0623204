use std::path::{Path, PathBuf};

use super::*;

fn local(home: &Path) -> Local {
    Local {
        user: "alice".to_owned(),
        home: home.to_path_buf(),
        uid: 1000,
        hostname: "pi".to_owned(),
        cwd: PathBuf::from("/"),
    }
}

/// `home/.ssh/NAME` for each (NAME, TEXT); the path of the first.
fn files(home: &Path, files: &[(&str, &str)]) -> PathBuf {
    for (name, text) in files {
        let path = home.join(".ssh").join(name);
        std::fs::create_dir_all(path.parent().unwrap_or(home)).unwrap_or_default();
        std::fs::write(&path, text).unwrap_or_default();
    }
    home.join(".ssh").join(files[0].0)
}

fn applied(config: &Path, alias: &str, home: &Path) -> Vec<String> {
    let mut files = Files::new(home);
    let options = evaluate(&mut files, config, alias, &local(home), Vec::new())
        .unwrap_or_else(|err| panic!("{err}"));
    options.applied.iter().map(Line::text).collect()
}

#[test]
fn include_keeps_the_scope_of_the_line_that_includes() {
    let home = tempfile::tempdir().unwrap_or_else(|err| panic!("{err}"));
    let config = files(
        home.path(),
        &[
            (
                "config",
                "Host db\n  Include d/*.conf\n  Port 1\nHost *\n  Port 2\n",
            ),
            ("d/a.conf", "User a\nHost *\n  Compression yes\n"),
            ("d/b.conf", "User b\n"),
        ],
    );
    assert_eq!(
        applied(&config, "db", home.path()),
        ["User a", "Compression yes", "User b", "Port 1", "Port 2"]
    );
    // Not in the including block: nothing of the file applies, not even its own `Host *`.
    assert_eq!(applied(&config, "web", home.path()), ["Port 2"]);
}

#[test]
fn match_criteria() {
    let home = tempfile::tempdir().unwrap_or_else(|err| panic!("{err}"));
    let config = files(
        home.path(),
        &[(
            "config",
            "Host db\n  HostName db.corp\n\
             Match host *.corp !localuser bob\n  Port 1\n\
             Match originalhost db user alice\n  Port 2\n\
             Match all\n  User x\n\
             Match !host *.corp\n  Port 3\n",
        )],
    );
    assert_eq!(
        applied(&config, "db", home.path()),
        ["HostName db.corp", "Port 1", "Port 2", "User x"]
    );
    assert_eq!(applied(&config, "web", home.path()), ["User x", "Port 3"]);
}

#[test]
fn errors_name_the_file_and_line() {
    let home = tempfile::tempdir().unwrap_or_else(|err| panic!("{err}"));
    let config = files(home.path(), &[("loop", "Host *\nInclude loop\n")]);
    let mut f = Files::new(home.path());
    let err = evaluate(&mut f, &config, "db", &local(home.path()), Vec::new())
        .err()
        .map(|err| err.to_string());
    assert_eq!(
        err,
        Some(format!(
            "{}:2: Include nested more than 16 deep (a file that includes itself?)",
            config.display()
        ))
    );
    for (text, message) in [
        ("Match colour red\n", "1: Match colour: unknown criterion"),
        ("\n\nMatch host\n", "3: Match host needs an argument"),
        ("User \"x\n", "1: unterminated quote"),
    ] {
        let config = files(home.path(), &[("bad", text)]);
        let mut f = Files::new(home.path());
        let err = evaluate(&mut f, &config, "db", &local(home.path()), Vec::new())
            .err()
            .map(|err| err.to_string());
        assert_eq!(
            err,
            Some(format!("{}:{message}", config.display())),
            "{text}"
        );
    }
}
