//! The command line (docs/configuration.md is the contract).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// The configuration file read when `--config` is not given.
pub(crate) const DEFAULT_CONFIG: &str = "/etc/tunneld/tunneld.toml";

/// tunneld keeps SSH tunnels (local, remote and dynamic forwards) up, unattended, and reports
/// their health to systemd.
#[derive(Debug, Parser)]
#[command(name = "tunneld", version, about, long_about = None)]
pub(crate) struct Cli {
    /// Log level or filter (error, warn, info, debug, trace, or a RUST_LOG-style filter).
    /// Overrides RUST_LOG.
    #[arg(long, global = true, value_name = "LEVEL")]
    pub(crate) log_level: Option<String>,

    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run every tunnel of the file in the foreground until SIGTERM or SIGINT; SIGHUP reloads.
    Run {
        /// The configuration file.
        #[arg(long, short, default_value = DEFAULT_CONFIG, value_name = "PATH")]
        config: PathBuf,
    },
    /// Validate the file (syntax, types, semantics, key and certificate files) and print one line per tunnel;
    /// with --connect, also connect each tunnel once.
    ///
    /// --connect tries each forward too, binding nothing and writing nothing (known_hosts
    /// included), so it can run beside the live daemon. Exit status: 78 for an invalid file;
    /// with --connect, 1 when some tunnel or forward failed.
    Check {
        /// The configuration file.
        #[arg(long, short, default_value = DEFAULT_CONFIG, value_name = "PATH")]
        config: PathBuf,
        /// Connect each tunnel through its jump hosts: host keys, authentication, a channel to
        /// each local forward's target, each remote port asked for and given back.
        #[arg(long)]
        connect: bool,
        /// With --connect: the running daemon's control socket, asked which remote ports it
        /// holds, instead of finding it from the configuration.
        #[arg(long, value_name = "PATH", requires = "connect")]
        socket: Option<PathBuf>,
        /// With --connect: only these tunnels.
        #[arg(value_name = "TUNNEL", requires = "connect")]
        tunnels: Vec<String>,
    },
    /// Create the missing ed25519 identity files that the tunnels name, and print, for each
    /// server (jump hosts too), the authorized_keys line that allows the key what the tunnel
    /// needs there and nothing more.
    Keygen {
        /// The configuration file.
        #[arg(long, short, default_value = DEFAULT_CONFIG, value_name = "PATH")]
        config: PathBuf,
        /// Who owns the keys created (their uid and primary group); required when root
        /// creates a key [default: the user running keygen].
        #[arg(long, value_name = "USER")]
        owner: Option<String>,
        /// Only these tunnels [default: every tunnel].
        #[arg(value_name = "TUNNEL")]
        tunnels: Vec<String>,
    },
    /// Show each tunnel and forward of the running daemon. Exit status: 0 when every tunnel is
    /// up, 1 when some is not, 3 when no daemon answers.
    Status {
        #[command(flatten)]
        daemon: Daemon,
        /// Print one JSON object (docs/control.md) instead of lines.
        #[arg(long)]
        json: bool,
        /// Only these tunnels.
        #[arg(value_name = "TUNNEL")]
        tunnels: Vec<String>,
    },
    /// Drop the named tunnels' connections and connect them again now (SIGUSR1 does it for
    /// all). Listeners stay bound.
    Reconnect {
        #[command(flatten)]
        daemon: Daemon,
        /// Every tunnel.
        #[arg(long, conflicts_with = "tunnels")]
        all: bool,
        /// The tunnels.
        #[arg(value_name = "TUNNEL", required_unless_present = "all")]
        tunnels: Vec<String>,
    },
    /// Read the configuration file again, as SIGHUP does, and say what changed. Exit status 78,
    /// and nothing changed, when the file is invalid.
    Reload {
        #[command(flatten)]
        daemon: Daemon,
    },
    /// Print tunneld's TOML for the hosts of an OpenSSH client config; what cannot be mapped
    /// becomes a comment.
    ImportSshConfig {
        /// The OpenSSH client config [default: ~/.ssh/config of the invoking user].
        #[arg(long, short, value_name = "PATH")]
        file: Option<PathBuf>,
        /// Hosts to import [default: every host that a Host line names without wildcards and
        /// that has forwards].
        #[arg(value_name = "HOST")]
        hosts: Vec<String>,
    },
    /// Print tunneld's TOML for an ssh or autossh command line, given after `--` (or as one
    /// quoted line, an `ExecStart=` line too); what cannot be mapped becomes a comment.
    #[command(name = "import-ssh-command")]
    ImportSshLine {
        /// The tunnel's name [default: the destination's host, with characters other than
        /// A-Z a-z 0-9 _ . - replaced by -].
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
        /// The command line: ssh or autossh, its options and the destination.
        #[arg(
            value_name = "SSH_COMMAND",
            required = true,
            trailing_var_arg = true,
            allow_hyphen_values = true
        )]
        command: Vec<String>,
    },
}

/// Which running daemon a command asks.
#[derive(Debug, clap::Args)]
pub(crate) struct Daemon {
    /// The configuration file of the daemon to ask: its control socket is found from it.
    #[arg(long, short, default_value = DEFAULT_CONFIG, value_name = "PATH")]
    pub(crate) config: PathBuf,
    /// The daemon's control socket, instead of finding it from the configuration.
    #[arg(long, value_name = "PATH", conflicts_with = "config")]
    pub(crate) socket: Option<PathBuf>,
}

impl Daemon {
    /// Where to find it.
    pub(crate) fn target(self) -> crate::control::client::Target {
        use crate::control::client::Target;
        match self.socket {
            Some(socket) => Target::Socket(socket),
            None => Target::Config(self.config),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use clap::CommandFactory;

    use super::Cli;

    /// What the generated pages cannot know: where the files are, the exit status, and where
    /// the rest of the documentation lives. roff, appended to `tunneld.8`.
    const TAIL: &str = r#".SH FILES
.TP
.I /etc/tunneld/NAME.toml
The tunnels of the service \fBtunneld@NAME\fR (\fB/etc/tunneld/tunneld.toml\fR for \fBtunneld.service\fR).
.TP
.I /etc/tunneld/keys/
Private keys, owned by the \fBtunneld\fR user, mode 0600.
.TP
.I /etc/tunneld/known_hosts
Host keys you pinned (\fBglobal_known_hosts\fR); tunneld never writes it.
.TP
.I /var/lib/tunneld/known_hosts
Host keys learned with \fBhost_key_policy = "accept-new"\fR (\fBknown_hosts\fR).
.SH EXIT STATUS
0 after a clean stop or for a valid file; 78 when the configuration is missing, unreadable or
invalid (systemd does not restart on it); 1 for any other fatal error. \fBtunneld check \-\-connect\fR
exits 1 when some tunnel or forward fails to connect. \fBtunneld status\fR exits
1 when some tunnel is not up; \fBstatus\fR, \fBreconnect\fR and \fBreload\fR exit 3 when no daemon
answers, and 2 when it refuses the request (an unknown tunnel).
.SH SEE ALSO
\fBtunneld-run\fR(8), \fBtunneld-check\fR(8), \fBtunneld-keygen\fR(8), \fBtunneld-status\fR(8),
\fBtunneld-reconnect\fR(8),
\fBtunneld-reload\fR(8), \fBsystemctl\fR(1), \fBjournalctl\fR(1), \fBssh_config\fR(5).
The configuration reference, troubleshooting guide and examples are in
\fI/usr/share/doc/tunneld/\fR.
"#;

    /// The manual pages as this command line renders them: `tunneld.8`, and one page per
    /// subcommand (`tunneld-run.8`, `tunneld-check.8`).
    fn pages() -> Vec<(String, String)> {
        // The page's name (`tunneld-check`) and its synopsis's command (`tunneld check`).
        let render = |command: clap::Command, name: String, bin: String| {
            let mut page = Vec::new();
            clap_mangen::Man::new(command.display_name(name.clone()).bin_name(bin))
                .section("8")
                .manual("System Manager's Manual")
                .render(&mut page)
                .expect("render a manual page");
            (name, String::from_utf8(page).expect("roff is UTF-8"))
        };
        let cli = Cli::command();
        let (name, mut main) = render(cli.clone(), "tunneld".to_owned(), "tunneld".to_owned());
        main.push_str(TAIL);
        let mut pages = vec![(name, main)];
        for sub in cli.get_subcommands().filter(|s| s.get_name() != "help") {
            let name = sub.get_name();
            pages.push(render(
                sub.clone(),
                format!("tunneld-{name}"),
                format!("tunneld {name}"),
            ));
        }
        pages
    }

    /// `packaging/man/*.8` are what this command line renders (the Debian package installs
    /// them). After changing the command line or the version,
    /// `TUNNELD_BLESS=1 cargo test -p tunneld man_pages` writes them anew.
    #[test]
    fn man_pages_are_current() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../packaging/man");
        let bless = std::env::var_os("TUNNELD_BLESS").is_some();
        for (name, page) in pages() {
            let path = dir.join(format!("{name}.8"));
            if bless {
                std::fs::create_dir_all(&dir).expect("create packaging/man");
                std::fs::write(&path, &page).expect("write a manual page");
            }
            let committed = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(
                committed == page,
                "{} is not what the command line renders; run \
                 TUNNELD_BLESS=1 cargo test -p tunneld man_pages and commit it",
                path.display()
            );
        }
    }
}
