//! Every file in `examples/` is a valid configuration (docs/testing.md: match on the extension,
//! not a suffix of the name, and prove that the loop tested something).

#![allow(
    clippy::unwrap_used,
    reason = "helpers of tests; a panic is a failed test"
)]

use std::path::PathBuf;

use tunneld_config::{Environment, parse, parse_with_findings};

#[test]
fn every_example_parses() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let env = Environment {
        user: "runner".to_owned(),
    };
    let mut parsed = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|ext| ext == "toml") {
            let text = std::fs::read_to_string(&path).unwrap();
            let (config, findings) =
                parse_with_findings(&path, &text, &env).unwrap_or_else(|e| panic!("{e}"));
            assert!(!config.tunnels.is_empty(), "{}", path.display());
            // Nothing for `tunneld check` to warn about or refuse, beyond the key files.
            assert_eq!(findings, [], "{}", path.display());
            parsed.push(path);
        }
    }
    assert!(
        parsed.len() >= 7,
        "only {} examples parsed in {}: {parsed:?}",
        parsed.len(),
        dir.display()
    );
}

#[test]
fn the_bastion_example_goes_through_the_bastion() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/c-admin-panel-via-bastion.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let env = Environment {
        user: "runner".to_owned(),
    };
    let config = parse(&path, &text, &env).unwrap();
    let grafana = &config.tunnels[0];
    assert_eq!(grafana.target.hostname, "tools.internal");
    assert_eq!(grafana.target.user, "tunnel");
    let hops: Vec<(&str, &str)> = grafana
        .jump
        .iter()
        .map(|hop| (hop.hostname.as_str(), hop.user.as_str()))
        .collect();
    assert_eq!(hops, [("bastion.example.com", "admin")]);
}
