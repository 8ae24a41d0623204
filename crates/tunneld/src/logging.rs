//! Logging: human-readable lines on stderr, filtered by `--log-level` or `RUST_LOG`.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Applied unless the filter names them: russh logs every packet at debug, and its own
/// disconnect reports at info and warn duplicate what tunneld says with more context.
const QUIET_DEPENDENCIES: &[&str] = &["russh=warn", "russh::keys=warn"];

/// Installs the global subscriber. `log` records (russh uses `log`) are bridged into it.
pub(crate) fn init(level: Option<&str>) {
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
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
}
