//! The process's budget of file descriptors, kept so that a daemon full of forwarded connections
//! can still reconnect a tunnel.
//!
//! A forwarded connection costs one descriptor here (the client's socket for `local` and
//! `dynamic`, the target's for `remote`); a listener one; a tunnel's SSH connection one (the
//! sessions to jump hosts after the first run inside channels). Those are counted in one atomic,
//! which is cheap at any number of connections, where reading `/proc/self/fd` is not. Forwarded
//! connections may only take descriptors while fewer than `RLIMIT_NOFILE - reserve` are counted;
//! the reserve is left for what is not counted: a reconnect (the staggered connect attempts,
//! the DNS lookup, reading the key and known_hosts), a reload reading the configuration, the
//! log, the runtime's own descriptors. So at the limit the clients wait, and tunnels still come
//! back.
//!
//! The same budget bounds memory: each forwarded connection holds at most its channel window
//! plus its pipe buffer (forward/pipe.rs), so the daemon holds at most the budget times that.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use nix::sys::resource::{RLIM_INFINITY, Resource, getrlimit};
use tokio::sync::Notify;
use tokio::time::Instant;
use tracing::{info, warn};

/// Descriptors left to what is not counted. 64 covers a reconnect of several tunnels at once
/// (each staggered connect may hold up to 16 sockets for a moment) besides the runtime's own.
pub const RESERVE: u64 = 64;

/// How often, at most, the limit is reported.
const LOG_EVERY: Duration = Duration::from_secs(60);

static HELD: AtomicUsize = AtomicUsize::new(0);
static FREED: Notify = Notify::const_new();
static REPORTS: Mutex<Reports> = Mutex::new(Reports {
    last: None,
    suppressed: 0,
    announce_resume: false,
});

/// One counted descriptor, given back when dropped.
#[derive(Debug)]
pub struct Slot(());

impl Drop for Slot {
    fn drop(&mut self) {
        HELD.fetch_sub(1, Ordering::Relaxed);
        FREED.notify_waiters();
    }
}

/// The budget was spent when a forwarded connection asked for a descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exhausted {
    /// Descriptors counted (forwarded connections, listeners, SSH connections).
    pub held: usize,
    /// The soft `RLIMIT_NOFILE`.
    pub limit: u64,
    /// Descriptors kept back for reconnects and the rest.
    pub reserve: u64,
}

/// The soft `RLIMIT_NOFILE`, read afresh (a syscall, cheap), so that a limit raised at start
/// (or by a test) counts.
pub fn limit() -> u64 {
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, _)) if soft != RLIM_INFINITY => soft,
        _ => u64::MAX,
    }
}

/// The reserve under `limit`: [`RESERVE`], or half of a tiny limit, so that a process started
/// with a few dozen descriptors still forwards something.
pub fn reserve(limit: u64) -> u64 {
    RESERVE.min(limit / 2)
}

/// How many descriptors are counted now.
pub fn held() -> usize {
    HELD.load(Ordering::Relaxed)
}

/// A descriptor for a forwarded connection, if the budget allows one.
pub fn try_take() -> Result<Slot, Exhausted> {
    let limit = limit();
    let reserve = reserve(limit);
    let budget = usize::try_from(limit - reserve).unwrap_or(usize::MAX);
    HELD.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |held| {
        (held < budget).then_some(held + 1)
    })
    .map(|_| Slot(()))
    .map_err(|held| Exhausted {
        held,
        limit,
        reserve,
    })
}

/// A descriptor that is counted but never refused: a listener or an SSH connection, which the
/// forwarded connections must leave room for.
pub fn hold() -> Slot {
    HELD.fetch_add(1, Ordering::Relaxed);
    Slot(())
}

/// Waits until some counted descriptor is given back, or `at_most` passes (the limit may also
/// rise, or uncounted descriptors close). Never a busy loop, never a long stall.
pub async fn freed(at_most: Duration) {
    let _ = tokio::time::timeout(at_most, FREED.notified()).await;
}

/// Rate-limits the report of the limit across the whole process: one line a minute, however
/// many listeners hit it, with how many were left out since the last one.
struct Reports {
    /// When the limit was last reported.
    last: Option<Instant>,
    /// Reports left out since.
    suppressed: u64,
    /// Whether the last report still awaits its "accepting again".
    announce_resume: bool,
}

/// Reports that `listen` (a listener, or a remote forward's target) found the budget spent, or
/// the kernel out of descriptors (`error`).
pub fn report_exhausted(listen: &str, exhausted: Exhausted, error: Option<&std::io::Error>) {
    let mut reports = REPORTS.lock().unwrap_or_else(PoisonError::into_inner);
    let now = Instant::now();
    if reports.last.is_some_and(|t| now - t < LOG_EVERY) {
        reports.suppressed += 1;
        return;
    }
    let suppressed = reports.suppressed;
    reports.last = Some(now);
    reports.suppressed = 0;
    reports.announce_resume = true;
    drop(reports);
    let Exhausted {
        held,
        limit,
        reserve,
    } = exhausted;
    let error = error.map(ToString::to_string);
    warn!(
        listen,
        limit,
        in_use = held,
        reserve,
        suppressed,
        error,
        "open file limit reached (RLIMIT_NOFILE {limit}, {reserve} kept for reconnects): new \
         clients wait until forwarded connections close; raise LimitNOFILE= in the service \
         unit, or ulimit -n"
    );
}

/// Reports that `listen` accepts again after `paused` at the limit: after a report that was
/// logged, and once its minute has passed, with the reports suppressed meanwhile, so that a limit
/// reached again and again is summed up even if it is not reached once more.
pub fn report_resumed(listen: &str, paused: Duration) {
    let mut reports = REPORTS.lock().unwrap_or_else(PoisonError::into_inner);
    let due = reports.last.is_none_or(|t| Instant::now() - t >= LOG_EVERY);
    let summary_due = due && reports.suppressed > 0;
    if !(reports.announce_resume || summary_due) {
        return;
    }
    reports.announce_resume = false;
    let suppressed = std::mem::take(&mut reports.suppressed);
    drop(reports);
    info!(
        listen,
        paused_secs = format!("{:.1}", paused.as_secs_f64()),
        suppressed,
        "accepting again: forwarded connections closed"
    );
}
