//! Logging: to the journal, natively and with structured fields, under systemd; otherwise
//! human-readable lines on stderr. Filtered by `--log-level` or `RUST_LOG`.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Applied unless the filter names them: russh logs every packet at debug, and its own
/// disconnect reports at info and warn duplicate what tunneld says with more context.
const QUIET_DEPENDENCIES: &[&str] = &["russh=warn", "russh::keys=warn"];

/// Installs the global subscriber. `log` records (russh uses `log`) are bridged into it.
///
/// Under systemd (JOURNAL_STREAM set, so stderr goes to the journal) events go to journald
/// directly: fields become journal fields (`TUNNEL=db`, `PEER=`, `FORWARD=`, `ERROR=`,
/// `ERROR_KIND=`), so `journalctl -u tunneld@db TUNNEL=db` works. If the journal socket is not
/// there, stderr it is.
pub(crate) fn init(level: Option<&str>) {
    let filter = filter(level);
    let registry = tracing_subscriber::registry().with(filter);
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        match tracing_journald::layer() {
            Ok(journal) => {
                let journal = journal
                    .with_field_prefix(None)
                    .with_syslog_identifier("tunneld".to_string());
                registry.with(journal).init();
                return;
            }
            Err(err) => eprintln!("tunneld: journald is not reachable ({err}); logging to stderr"),
        }
    }
    registry
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::stderr().is_terminal())
                .with_target(false),
        )
        .init();
}

fn filter(level: Option<&str>) -> EnvFilter {
    let spec = level
        .map(str::to_string)
        .or_else(|| std::env::var("RUST_LOG").ok())
        .unwrap_or_else(|| "info".to_string());
    let mut filter = EnvFilter::try_new(&spec).unwrap_or_else(|err| {
        eprintln!("tunneld: ignoring log filter {spec:?}: {err}");
        EnvFilter::new("info")
    });
    for directive in QUIET_DEPENDENCIES {
        let target = directive.split('=').next().unwrap_or_default();
        if !spec.contains(target)
            && let Ok(directive) = directive.parse()
        {
            filter = filter.add_directive(directive);
        }
    }
    filter
}
