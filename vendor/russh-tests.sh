#!/usr/bin/env bash
# Runs the vendored russh's own unit tests (vendor/russh/PATCHES.md says what they cover).
#
# The crate cannot run them where it is: it is not a workspace member, and the manifest
# published on crates.io misses three of the dev-dependencies its tests use (tempfile,
# env_logger, tokio's "process"). So it is copied to a temporary directory, made a workspace
# of its own with those added, and tested there against the workspace's Cargo.lock.
#   vendor/russh-tests.sh [TEST FILTER]
# CARGO_TARGET_DIR is used with "/russh-tests" appended (default: target/russh-tests).
set -euo pipefail
cd "$(dirname "$0")/.."
copy=$(mktemp -d)
trap 'rm -rf "$copy"' EXIT
cp -r vendor/russh "$copy/russh"
cp Cargo.lock "$copy/russh/"
cat >> "$copy/russh/Cargo.toml" <<'TOML'

[workspace]

[dev-dependencies]
tempfile = "3"
env_logger = "0.11"
tokio = { version = "1", features = ["full"] }
TOML
target="${CARGO_TARGET_DIR:-$PWD/target}/russh-tests"
cd "$copy/russh"
CARGO_TARGET_DIR="$target" cargo test --quiet --lib -- "$@"
