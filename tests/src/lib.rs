//! The harness of tunneld's end-to-end tests: a real OpenSSH sshd per test, a chaos proxy that
//! breaks links on demand, target servers, an ssh-agent, and the tunneld binary as a child
//! process. See `docs/testing.md`.
//!
//! Everything listens and connects on 127.0.0.1 only, on ports the kernel picks (or, for a
//! program that must be told its port first, on one from [`free_port`]), and waits for
//! conditions with a deadline instead of sleeping.

// Test code: a failed unwrap is a failed test, with its location.
#![allow(clippy::unwrap_used)]

pub mod agent;
mod background;
pub mod chaos;
pub mod config;
pub mod keys;
pub mod ports;
pub mod procfs;
pub mod servers;
pub mod sshd;
pub mod sshd_config;
pub mod state;
pub mod tunneld;
pub mod util;

pub use agent::SshAgent;
pub use chaos::{ChaosProxy, Mode};
pub use config::{HostEntry, host_entry, known_hosts_file};
pub use keys::{KeyKind, KeyPair};
pub use procfs::{accepted_from, accepted_on, descendants, process_state};
pub use servers::{ClosedPort, EchoServer, HttpServer};
pub use servers::{ReplyServer, SilentServer, SourceServer};
pub use sshd::{Sshd, SshdBuilder};
pub use sshd_config::openssh_version;
pub use state::{Failure, backing_off, connection_id, is_backing_off, up_with_new_connection};
pub use tunneld::{TunneldProcess, tunneld_bin, without_test_package_env};
pub use util::{
    TestDir, echo_all, exchange, fd_count, free_port, init_tracing, localhost, random_bytes,
    rss_kib, try_echo, try_echo_all, wait_until, wait_until_async, write_file,
};
pub mod nspawn;
pub mod service;
