//! Quiet attempts: while a tunnel keeps failing the same way, the steps of each new attempt
//! ("connecting", "authenticated" at a jump host) would repeat in the log every few seconds.
//! The supervisor marks such an attempt quiet, and those lines go to debug instead of info.

use std::future::Future;

tokio::task_local! {
    static QUIET: bool;
}

/// Runs `attempt` with its step lines at debug when `quiet`, at info otherwise.
pub async fn quietly<F: Future>(quiet: bool, attempt: F) -> F::Output {
    QUIET.scope(quiet, attempt).await
}

/// Whether the attempt being made is quiet (false outside [`quietly`]).
pub(crate) fn is_quiet() -> bool {
    QUIET.try_with(|quiet| *quiet).unwrap_or(false)
}

/// A line about a step of an attempt: `step!(info, ...)` or `step!(warn, ...)`, at debug in a
/// quiet attempt.
macro_rules! step {
    (info, $($arg:tt)+) => {
        if $crate::quiet::is_quiet() {
            tracing::debug!($($arg)+)
        } else {
            tracing::info!($($arg)+)
        }
    };
    (warn, $($arg:tt)+) => {
        if $crate::quiet::is_quiet() {
            tracing::debug!($($arg)+)
        } else {
            tracing::warn!($($arg)+)
        }
    };
}
pub(crate) use step;
