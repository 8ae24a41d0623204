//! `tunneld run`: every tunnel in the foreground until SIGTERM/SIGINT; SIGHUP reloads, SIGUSR1
//! reconnects every tunnel.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};
use tunneld_control::{ErrorKind, ReconnectReply, VERSION, encode_reply};
use tunneld_supervisor::Supervisor;

use crate::EXIT_CONFIG;
use crate::control::server::{self, Ask};
use crate::control::{self, Env};
use crate::metrics::Endpoint;
use crate::notify::Notifier;
use crate::reload::reload;

/// How long tunnels, listeners and forwarded connections get to finish after SIGTERM. The
/// contract is a clean stop within 2 s; leave room for the runtime itself.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(1500);

pub(crate) fn run(path: &Path) -> ExitCode {
    let config = match tunneld_config::load(path) {
        Ok(config) => config,
        Err(err) => {
            error!("invalid configuration: {err}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    raise_open_file_limit();
    // This thread runs the control socket, the metrics server, systemd's notifications and
    // reloads; the tunnels run on threads of their own (tunneld-supervisor's `threads.rs`).
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            error!("cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(serve(path, config));
    // Whatever is still running (a blocking known_hosts read) must not hold the exit.
    runtime.shutdown_timeout(Duration::from_millis(200));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            error!("{err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(path: &Path, config: tunneld_config::Config) -> anyhow::Result<()> {
    let mut terminate = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    let mut hangup = signal(SignalKind::hangup()).context("installing SIGHUP handler")?;
    // autossh's habit: SIGUSR1 drops every connection and connects again now.
    let mut user1 = signal(SignalKind::user_defined1()).context("installing SIGUSR1 handler")?;

    // Before anything else: a second daemon for the same socket must not touch the listeners.
    let placement = control::placement(&config, &Env::current()).map_err(anyhow::Error::msg)?;
    let control_socket = server::bind(&placement)?;
    let served = control_socket.path().to_path_buf();

    let shutdown = CancellationToken::new();
    info!(
        config = %path.display(),
        tunnels = config.tunnels.len(),
        version = env!("CARGO_PKG_VERSION"),
        "starting"
    );
    let mut supervisor = Supervisor::start(&config, shutdown.clone());
    // Where metrics are served, as the metrics server publishes it; shown by `tunneld status`
    // and in STATUS=.
    let (metrics, metrics_state) = Endpoint::start(
        config.daemon.metrics_listen,
        supervisor.viewer(),
        shutdown.clone(),
    );
    let (asks_tx, mut asks) = mpsc::channel(4);
    let control_task = tokio::spawn(control_socket.serve(
        supervisor.viewer(),
        metrics_state.clone(),
        asks_tx,
        shutdown.clone(),
    ));
    let mut notifier = Notifier::from_env();
    let mut ticker = tokio::time::interval(notifier.tick_every());
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    loop {
        tokio::select! {
            _ = terminate.recv() => { info!("SIGTERM: stopping"); break; }
            _ = interrupt.recv() => { info!("SIGINT: stopping"); break; }
            _ = hangup.recv() => {
                notifier.reloading();
                let outcome = reload(path, "SIGHUP", &served, &mut supervisor, &metrics).await;
                notifier.reloaded(outcome.error());
            }
            Some(ask) = asks.recv() => match ask {
                Ask::Reconnect { tunnels, reply } => {
                    let line = match supervisor.reconnect(&tunnels) {
                        Ok(reconnected) => encode_reply(&ReconnectReply {
                            version: VERSION,
                            reconnected,
                        }),
                        Err(unknown) => server::error(ErrorKind::UnknownTunnel, unknown.to_string()),
                    };
                    let _ = reply.send(line);
                }
                Ask::Reload { reply } => {
                    notifier.reloading();
                    let outcome = reload(path, "control socket", &served, &mut supervisor, &metrics).await;
                    notifier.reloaded(outcome.error());
                    let _ = reply.send(outcome.reply_line());
                }
            },
            _ = user1.recv() => {
                info!("SIGUSR1: reconnecting every tunnel");
                // An empty list is every tunnel, which cannot name an unknown one.
                let _ = supervisor.reconnect(&[]);
            }
            _ = ticker.tick() => notifier.tick(&supervisor.report(), &metrics_state.borrow()),
        }
    }
    notifier.stopping();
    if !supervisor.shutdown(SHUTDOWN_GRACE).await {
        warn!("stopping anyway");
    }
    // Stopped with the supervisor's token; it removes its socket.
    let _ = control_task.await;
    info!("stopped");
    Ok(())
}

/// A daemon that forwards many connections needs many descriptors; the soft limit is often
/// 1024 while the hard limit is far higher. Raise it as far as we may.
fn raise_open_file_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => info!(from = soft, to = hard, "raised the open file limit"),
            Err(err) => warn!(soft, hard, error = %err, "cannot raise the open file limit"),
        },
        Ok(_) => {}
        Err(err) => warn!(error = %err, "cannot read the open file limit"),
    }
}
