//! Small helpers shared by the tests: polling with a deadline, payloads, ports, files, tracing.

use std::fs::{self, OpenOptions};
use std::future::Future;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tempfile::TempDir;

pub use crate::ports::free_port;
pub use crate::procfs::{fd_count, rss_kib};

/// How often the polling helpers re-check their condition.
pub const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Polls `cond` every [`POLL_INTERVAL`] until it returns true (then true) or `timeout` has passed
/// (then false). The condition is always checked at least once.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// Async [`wait_until`]: awaits `cond()` every [`POLL_INTERVAL`] without blocking the runtime.
pub async fn wait_until_async<F, Fut>(timeout: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if cond().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// `n` pseudo-random bytes, the same for the same `seed` (xorshift64*: payloads only need to be
/// incompressible and reproducible, not secure).
pub fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    // A zero state would stay zero forever.
    let mut state = seed ^ 0x9E37_79B9_7F4A_7C15;
    if state == 0 {
        state = 1;
    }
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(n);
    out
}

/// `127.0.0.1:port`.
pub fn localhost(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

/// Writes `contents` to `path` (created or truncated) and sets its permission bits to `mode`,
/// whatever the umask.
pub fn write_file(path: &Path, contents: impl AsRef<[u8]>, mode: u32) {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    file.write_all(contents.as_ref())
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

/// A temporary directory for one test, removed on drop.
#[derive(Debug)]
pub struct TestDir {
    dir: TempDir,
}

impl TestDir {
    /// Creates a fresh directory under the system temp dir (`$TMPDIR` or `/tmp`).
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("tunneld-test-")
            .tempdir()
            .expect("create temp dir");
        Self { dir }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `path()/name`.
    pub fn join(&self, name: impl AsRef<Path>) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes `contents` to `path()/name` with mode 0644 and returns its path.
    pub fn write(&self, name: impl AsRef<Path>, contents: impl AsRef<[u8]>) -> PathBuf {
        self.write_mode(name, contents, 0o644)
    }

    /// Writes `contents` to `path()/name` with permission bits `mode` and returns its path.
    pub fn write_mode(
        &self,
        name: impl AsRef<Path>,
        contents: impl AsRef<[u8]>,
        mode: u32,
    ) -> PathBuf {
        let path = self.join(name);
        write_file(&path, contents, mode);
        path
    }

    /// Keeps the directory on disk after the test (for a post-mortem) and returns its path.
    pub fn keep(self) -> PathBuf {
        self.dir.keep()
    }
}

impl Default for TestDir {
    fn default() -> Self {
        Self::new()
    }
}

/// Installs a tracing subscriber that writes through the test harness's captured output, filtered
/// by `RUST_LOG` (default `info`). Repeated calls, from any test, are harmless.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Fails when a subscriber is already installed, which is exactly the repeated-call case.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        // Read in CI logs, not terminals.
        .with_ansi(false)
        .try_init();
}

/// Writes `payload` to `stream`, shuts down its write half, and returns everything read back
/// until EOF: one round trip through an echo server, however far away.
pub async fn echo_all(stream: tokio::net::TcpStream, payload: Vec<u8>) -> Vec<u8> {
    try_echo_all(stream, payload).await.unwrap()
}

/// [`echo_all`] with an error instead of a panic, so that a caller can retry while a tunnel
/// reconnects.
pub async fn try_echo_all(
    stream: tokio::net::TcpStream,
    payload: Vec<u8>,
) -> std::io::Result<Vec<u8>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut reader, mut writer) = stream.into_split();
    let writing = tokio::spawn(async move {
        writer.write_all(&payload).await?;
        writer.shutdown().await
    });
    let mut back = Vec::new();
    reader.read_to_end(&mut back).await?;
    writing.await.map_err(std::io::Error::other)??;
    Ok(back)
}

/// Writes `payload` to `stream` and reads as many bytes back, leaving the connection open: one
/// exchange with an echo server on a connection that carries on. `None` if that took longer
/// than `timeout`; panics on an I/O error.
pub async fn exchange(
    stream: &mut tokio::net::TcpStream,
    payload: &[u8],
    timeout: Duration,
) -> Option<Vec<u8>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    tokio::time::timeout(timeout, async {
        stream.write_all(payload).await.unwrap();
        let mut back = vec![0u8; payload.len()];
        stream.read_exact(&mut back).await.unwrap();
        back
    })
    .await
    .ok()
}

/// A blocking echo round trip through `127.0.0.1:port` (the client sends EOF, then reads to the
/// end); an error instead of a panic, so that a caller can retry while a tunnel reconnects.
pub fn try_echo(port: u16, payload: &[u8], timeout: Duration) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut stream = std::net::TcpStream::connect(localhost(port))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(payload)?;
    stream.shutdown(std::net::Shutdown::Write)?;
    let mut back = Vec::new();
    stream.read_to_end(&mut back)?;
    Ok(back)
}
