//! What `tunneld check` prints about a hop's user certificates: notes and warnings with the
//! tunnel's line, problems on stderr (they fail the check).

use std::path::Path;

use tunneld_config::{Hop, Tunnel};
use tunneld_ssh::certificate::{ReportLevel, check_hop};

/// Prints the reports about `hop`'s certificates; returns how many are problems.
pub(super) fn report(
    config: &Path,
    tunnel: &Tunnel,
    hop_name: &str,
    hop: &Hop,
    credentials_dir: Option<&Path>,
) -> usize {
    let mut problems = 0;
    for report in check_hop(hop, credentials_dir) {
        match report.level {
            ReportLevel::Note => println!("  note: {hop_name}: {}", report.message),
            ReportLevel::Warning => println!("  warning: {hop_name}: {}", report.message),
            ReportLevel::Problem => {
                problems += 1;
                eprintln!(
                    "{}: tunnels.{}: {hop_name}: {}",
                    config.display(),
                    tunnel.name,
                    report.message
                );
            }
        }
    }
    problems
}
