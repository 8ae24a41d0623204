//! The control socket (docs/control.md): where it is, the server inside `tunneld run`, and the
//! commands that talk to it (`tunneld status`, `reconnect`, `reload`). The protocol itself is
//! `tunneld_control`.

pub(crate) mod client;
mod human;
pub(crate) mod server;
mod status;

use std::path::{Path, PathBuf};

use tunneld_config::Config;

/// Where root's daemons put their sockets (the units' `RuntimeDirectory=tunneld`).
const SYSTEM_DIR: &str = "/run/tunneld";

/// The socket's file name for a configuration file: `<stem>.sock`, so that `tunneld@db`
/// (`/etc/tunneld/db.toml`) and `tunneld@web` share the directory without clashing.
fn file_name(config_path: &Path) -> PathBuf {
    let stem = config_path
        .file_stem()
        .map_or_else(|| "tunneld".into(), |s| s.to_os_string());
    let mut name = stem;
    name.push(".sock");
    PathBuf::from(name)
}

/// Where the daemon serving `config` puts its socket, and the directory it may create for it
/// (with its mode) when that is missing.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Placement {
    pub(crate) socket: PathBuf,
    pub(crate) create_dir: Option<(PathBuf, u32)>,
}

/// The environment that decides the placement: systemd's `$RUNTIME_DIRECTORY`,
/// `$XDG_RUNTIME_DIR`, and whether we run as root.
#[derive(Debug, Clone, Default)]
pub(crate) struct Env {
    pub(crate) runtime_directory: Option<PathBuf>,
    pub(crate) xdg_runtime_dir: Option<PathBuf>,
    pub(crate) root: bool,
}

impl Env {
    pub(crate) fn current() -> Env {
        let var = |name: &str| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        Env {
            // systemd separates several directories with ':'; ours is the first.
            runtime_directory: var("RUNTIME_DIRECTORY").and_then(|dirs| {
                let text = dirs.to_string_lossy().into_owned();
                text.split(':').find(|d| !d.is_empty()).map(PathBuf::from)
            }),
            xdg_runtime_dir: var("XDG_RUNTIME_DIR"),
            root: nix::unistd::geteuid().is_root(),
        }
    }
}

/// Where `tunneld run` serves `config`: `[daemon] control_socket`; else, under systemd,
/// `$RUNTIME_DIRECTORY/<stem>.sock`; else `/run/tunneld/<stem>.sock` for root and
/// `$XDG_RUNTIME_DIR/tunneld/<stem>.sock` for other users.
pub(crate) fn placement(config: &Config, env: &Env) -> Result<Placement, String> {
    if let Some(socket) = &config.daemon.control_socket {
        return Ok(Placement {
            socket: socket.clone(),
            create_dir: None,
        });
    }
    let name = file_name(&config.path);
    if let Some(dir) = &env.runtime_directory {
        return Ok(Placement {
            socket: dir.join(name),
            create_dir: None,
        });
    }
    if env.root {
        // The group may reach the sockets (0660) through the directory, others not.
        return Ok(Placement {
            socket: Path::new(SYSTEM_DIR).join(name),
            create_dir: Some((PathBuf::from(SYSTEM_DIR), 0o750)),
        });
    }
    match &env.xdg_runtime_dir {
        Some(dir) => {
            let dir = dir.join("tunneld");
            Ok(Placement {
                socket: dir.join(name),
                create_dir: Some((dir, 0o700)),
            })
        }
        None => Err(
            "nowhere to put the control socket: XDG_RUNTIME_DIR is not set (set [daemon] \
             control_socket in the configuration)"
                .to_owned(),
        ),
    }
}

/// Where a client looks for the daemon of the configuration at `config_path`, in this order:
/// the file's `[daemon] control_socket` (when the file can be read), `/run/tunneld/<stem>.sock`,
/// `$XDG_RUNTIME_DIR/tunneld/<stem>.sock`. Also says why the file could not be read, if so.
pub(crate) fn candidates(
    config_path: &Path,
    config: Result<&Config, String>,
    env: &Env,
) -> (Vec<PathBuf>, Option<String>) {
    let mut paths = Vec::new();
    let mut note = None;
    match config {
        Ok(config) => paths.extend(config.daemon.control_socket.clone()),
        Err(err) => note = Some(err),
    }
    let name = file_name(config_path);
    paths.push(Path::new(SYSTEM_DIR).join(&name));
    if let Some(dir) = &env.xdg_runtime_dir {
        paths.push(dir.join("tunneld").join(&name));
    }
    paths.dedup();
    (paths, note)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(path: &str, socket: Option<&str>) -> Config {
        Config {
            path: PathBuf::from(path),
            daemon: tunneld_config::Daemon {
                control_socket: socket.map(PathBuf::from),
                metrics_listen: None,
            },
            tunnels: Vec::new(),
        }
    }

    #[test]
    fn the_socket_is_placed_by_the_file_the_service_manager_and_the_user() {
        let db = config("/etc/tunneld/db.toml", None);
        let systemd = Env {
            runtime_directory: Some("/run/tunneld".into()),
            xdg_runtime_dir: Some("/run/user/0".into()),
            root: true,
        };
        let root = Env {
            runtime_directory: None,
            ..systemd.clone()
        };
        let user = Env {
            root: false,
            xdg_runtime_dir: Some("/run/user/1000".into()),
            ..root.clone()
        };
        let at = |c: &Config, e: &Env| placement(c, e).map(|p| (p.socket, p.create_dir));
        assert_eq!(at(&db, &systemd), Ok(("/run/tunneld/db.sock".into(), None)));
        assert_eq!(
            at(&db, &root),
            Ok((
                "/run/tunneld/db.sock".into(),
                Some(("/run/tunneld".into(), 0o750))
            ))
        );
        assert_eq!(
            at(&db, &user),
            Ok((
                "/run/user/1000/tunneld/db.sock".into(),
                Some(("/run/user/1000/tunneld".into(), 0o700))
            ))
        );
        let lost = Env {
            xdg_runtime_dir: None,
            ..user.clone()
        };
        assert!(at(&db, &lost).is_err_and(|e| e.contains("XDG_RUNTIME_DIR")));
        let pinned = config("/etc/tunneld/db.toml", Some("/srv/db.sock"));
        assert_eq!(at(&pinned, &systemd), Ok(("/srv/db.sock".into(), None)));

        let (paths, note) = candidates(Path::new("/etc/tunneld/db.toml"), Ok(&pinned), &user);
        let expected: Vec<PathBuf> = vec![
            "/srv/db.sock".into(),
            "/run/tunneld/db.sock".into(),
            "/run/user/1000/tunneld/db.sock".into(),
        ];
        assert_eq!((paths, note), (expected, None));
    }
}
