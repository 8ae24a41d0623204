//! A reload, asked for by SIGHUP or on the control socket: read the file again, restart only
//! what changed, and say what happened.

use std::path::Path;

use tracing::{error, info, warn};
use tunneld_config::ConfigError;
use tunneld_control::{ErrorKind, ReloadReply, VERSION, encode_reply};
use tunneld_supervisor::{Applied, Supervisor};

use crate::control::server;
use crate::control::{Env, placement};
use crate::metrics::Endpoint;

/// What a reload did.
pub(crate) enum Outcome {
    /// The file was valid and applied.
    Applied {
        applied: Applied,
        /// Changes that wait for a restart, in words.
        needs_restart: Vec<String>,
    },
    /// The file is invalid: nothing changed.
    Refused(ConfigError),
}

impl Outcome {
    /// The error for STATUS=, if the file was refused.
    pub(crate) fn error(&self) -> Option<String> {
        match self {
            Outcome::Applied { .. } => None,
            Outcome::Refused(err) => Some(err.to_string()),
        }
    }

    /// The control socket's answer.
    pub(crate) fn reply_line(self) -> String {
        match self {
            Outcome::Applied {
                applied,
                needs_restart,
            } => encode_reply(&ReloadReply {
                version: VERSION,
                added: applied.added,
                removed: applied.removed,
                restarted: applied.restarted,
                unchanged: applied.unchanged,
                needs_restart,
            }),
            Outcome::Refused(err) => server::error(ErrorKind::Config, err.to_string()),
        }
    }
}

/// Reads the file at `path` again and restarts only what changed. An invalid file changes
/// nothing. `asked_by` says who asked (for the log: "reloading (SIGHUP)"); `served` is where the
/// control socket is, which only a restart can move.
pub(crate) async fn reload(
    path: &Path,
    asked_by: &str,
    served: &Path,
    supervisor: &mut Supervisor,
    metrics: &Endpoint,
) -> Outcome {
    info!(config = %path.display(), "reloading ({asked_by})");
    let config = match tunneld_config::load(path) {
        Ok(config) => config,
        Err(err) => {
            error!("reload failed, keeping the running configuration: {err}");
            return Outcome::Refused(err);
        }
    };
    let mut needs_restart = Vec::new();
    if let Ok(wanted) = placement(&config, &Env::current())
        && wanted.socket != served
    {
        let change = format!(
            "control_socket: still served at {}; restart tunneld to serve it at {}",
            served.display(),
            wanted.socket.display()
        );
        warn!("reload: {change}");
        needs_restart.push(change);
    }
    let applied = supervisor.apply(&config).await;
    // Moved without a restart; the endpoint logs where it went, or why it could not.
    metrics.listen_on(config.daemon.metrics_listen);
    info!(
        added = ?applied.added,
        removed = ?applied.removed,
        restarted = ?applied.restarted,
        "reloaded"
    );
    Outcome::Applied {
        applied,
        needs_restart,
    }
}
