//! Paths as ssh expands them (`~`, `%d`, `%h`, ...), made absolute for tunneld, which expands
//! neither; and the warning for files that the service cannot read.

use std::path::{Path, PathBuf};

use crate::Local;

/// What `%` tokens of a path stand for, for one host.
pub(crate) struct Tokens<'a> {
    pub(crate) local: &'a Local,
    /// The host name connected to (`%h`).
    pub(crate) hostname: &'a str,
    /// The name on the command line or in the config (`%n`).
    pub(crate) alias: &'a str,
    /// The remote user (`%r`).
    pub(crate) user: &'a str,
    /// The port (`%p`).
    pub(crate) port: u16,
}

/// `%h` (the alias) and `%%` in a `HostName`.
pub(crate) fn percent_h(text: &str, alias: &str) -> String {
    text.replace("%%", "\0")
        .replace("%h", alias)
        .replace('\0', "%")
}

/// A path of ssh_config as the file to read: `~/` and the `%` tokens expanded, relative paths
/// taken from the current directory (ssh's), as tunneld would otherwise take them from the
/// configuration file's.
pub(crate) fn expand(path: &str, tokens: &Tokens<'_>) -> Result<PathBuf, String> {
    let local = tokens.local;
    let path = if path == "~" {
        local.home.display().to_string()
    } else if let Some(rest) = path.strip_prefix("~/") {
        format!("{}/{rest}", local.home.display())
    } else if path.starts_with('~') {
        return Err(format!("{path}: only ~/ is expanded here, not ~user"));
    } else {
        path.to_owned()
    };
    let mut out = String::new();
    let mut chars = path.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('%') => out.push('%'),
            Some('d') => out.push_str(&local.home.display().to_string()),
            Some('u') => out.push_str(&local.user),
            Some('i') => out.push_str(&local.uid.to_string()),
            Some('l') => out.push_str(&local.hostname),
            Some('L') => out.push_str(local.hostname.split('.').next().unwrap_or_default()),
            Some('h') => out.push_str(tokens.hostname),
            Some('n') => out.push_str(tokens.alias),
            Some('r') => out.push_str(tokens.user),
            Some('p') => out.push_str(&tokens.port.to_string()),
            Some(other) => return Err(format!("{path}: %{other} is not expanded by the import")),
            None => return Err(format!("{path}: ends with a lone %")),
        }
    }
    let path = PathBuf::from(out);
    Ok(if path.is_absolute() {
        path
    } else {
        local.cwd.join(path)
    })
}

/// Whether the systemd units' `ProtectHome=yes` hides `path` from the service.
pub(crate) fn under_home(path: &Path, local: &Local) -> bool {
    ["/home", "/root", "/run/user"]
        .iter()
        .any(|dir| path.starts_with(dir))
        || (local.home != Path::new("/") && path.starts_with(&local.home))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local() -> Local {
        Local {
            user: "alice".to_owned(),
            home: PathBuf::from("/home/alice"),
            uid: 1000,
            hostname: "pi.lan".to_owned(),
            cwd: PathBuf::from("/srv"),
        }
    }

    #[test]
    fn tilde_and_tokens() {
        let local = local();
        let tokens = Tokens {
            local: &local,
            hostname: "db.example.com",
            alias: "db",
            user: "admin",
            port: 2222,
        };
        for (path, expected) in [
            ("~/.ssh/id_ed25519", "/home/alice/.ssh/id_ed25519"),
            (
                "%d/.ssh/%r@%h:%p",
                "/home/alice/.ssh/admin@db.example.com:2222",
            ),
            ("/k/%n-%u-%i-%L-%l-100%%", "/k/db-alice-1000-pi-pi.lan-100%"),
            ("keys/db", "/srv/keys/db"),
        ] {
            assert_eq!(expand(path, &tokens), Ok(PathBuf::from(expected)), "{path}");
        }
        assert!(expand("~bob/.ssh/id", &tokens).is_err());
        assert!(expand("/k/%C", &tokens).is_err());
        assert_eq!(percent_h("%h.corp", "db"), "db.corp");
    }

    #[test]
    fn home_directories() {
        let local = local();
        assert!(under_home(Path::new("/home/alice/.ssh/id"), &local));
        assert!(under_home(Path::new("/root/.ssh/id"), &local));
        assert!(!under_home(Path::new("/etc/tunneld/keys/db"), &local));
    }
}
