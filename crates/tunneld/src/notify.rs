//! Telling systemd the truth (sd_notify): READY=1 once every tunnel has finished its first
//! attempt (up, degraded or failed), STATUS= on every change (at most once a second: how many
//! tunnels are up and how many degraded, and why each one that is not up is not), RELOADING=1 /
//! READY=1 around a reload, STOPPING=1, and WATCHDOG=1 only while every tunnel is making
//! progress (a degraded tunnel is).
//! All of it is a no-op when NOTIFY_SOCKET is not set.

use std::time::Duration;

use crate::metrics_state::MetricsState;
use sd_notify::NotifyState;
use tokio::time::Instant;
use tracing::{debug, warn};
use tunneld_supervisor::Report;

/// STATUS= is not sent more often than this.
const STATUS_EVERY: Duration = Duration::from_secs(1);

/// How often a daemon that is not petting the watchdog says why.
const WEDGED_LOG_EVERY: Duration = Duration::from_secs(10);

pub(crate) struct Notifier {
    /// Half of WatchdogSec, when systemd asked for pings.
    ping_every: Option<Duration>,
    last_ping: Instant,
    ready_sent: bool,
    sent_status: String,
    status_at: Option<Instant>,
    reload_error: Option<String>,
    wedged_logged: Option<Instant>,
}

impl Notifier {
    pub(crate) fn from_env() -> Self {
        let ping_every = sd_notify::watchdog_enabled().map(|interval| interval / 2);
        if let Some(every) = ping_every {
            debug!(every = ?every, "watchdog pings enabled");
        }
        Notifier {
            ping_every,
            last_ping: Instant::now(),
            ready_sent: false,
            sent_status: String::new(),
            status_at: None,
            reload_error: None,
            wedged_logged: None,
        }
    }

    /// How often [`Notifier::tick`] must run.
    pub(crate) fn tick_every(&self) -> Duration {
        let base = Duration::from_millis(250);
        self.ping_every.map_or(base, |every| base.min(every / 2))
    }

    /// Called regularly from the main loop, so that a wedged main loop stops the pings too.
    pub(crate) fn tick(&mut self, report: &Report, metrics: &MetricsState) {
        let now = Instant::now();
        let mut status = match &self.reload_error {
            Some(error) => format!(
                "{}; reload failed, still running the previous configuration: {error}",
                report.status
            ),
            None => report.status.clone(),
        };
        if let MetricsState::Failed { address, error } = metrics {
            status.push_str(&format!(
                "; metrics cannot listen on {address}: {error} (retrying)"
            ));
        }
        let ready_now = report.ready && !self.ready_sent;
        let status_due = self.status_at.is_none_or(|at| now - at >= STATUS_EVERY);
        if ready_now {
            // In one datagram, so that systemd never shows "started" with an old STATUS.
            send(&[NotifyState::Ready, NotifyState::Status(&status)]);
            self.ready_sent = true;
            self.sent_status = status;
            self.status_at = Some(now);
        } else if status != self.sent_status && status_due {
            send(&[NotifyState::Status(&status)]);
            self.sent_status = status;
            self.status_at = Some(now);
        }
        if let Some(every) = self.ping_every
            && now - self.last_ping >= every
        {
            if report.healthy() {
                send(&[NotifyState::Watchdog]);
                self.last_ping = now;
                self.wedged_logged = None;
            } else if self
                .wedged_logged
                .is_none_or(|at| now - at >= WEDGED_LOG_EVERY)
            {
                warn!(wedged = %report.wedged.join("; "), "not petting the watchdog: a tunnel is stuck beyond its timeouts");
                self.wedged_logged = Some(now);
            }
        }
    }

    pub(crate) fn reloading(&mut self) {
        let mut states = vec![NotifyState::Reloading];
        // systemd 253+ requires MONOTONIC_USEC with RELOADING=1; older ones ignore it.
        if let Ok(now) = NotifyState::monotonic_usec_now() {
            states.push(now);
        }
        send(&states);
    }

    /// After a reload: `error` is why the new file was refused (the old one keeps running).
    pub(crate) fn reloaded(&mut self, error: Option<String>) {
        self.reload_error = error;
        self.status_at = None;
        send(&[NotifyState::Ready]);
    }

    pub(crate) fn stopping(&mut self) {
        send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
    }
}

fn send(states: &[NotifyState<'_>]) {
    if let Err(err) = sd_notify::notify(states) {
        debug!(error = %err, "sd_notify failed");
    }
}
