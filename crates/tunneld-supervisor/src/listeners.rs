//! The listeners of a tunnel's `local` and `dynamic` forwards: bound once, before the first
//! connection, and kept across reconnects, so that no other program can take a port while the
//! tunnel is down.
//!
//! By default each address of each forward is bound on its own: what binds serves at once, and
//! what does not is retried in the background while the tunnel connects and serves the rest
//! ([`bind_each`]). With `exit_on_forward_failure`, every listener must bind before the tunnel
//! connects ([`bind_all`]), as with OpenSSH's ExitOnForwardFailure.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, UnixListener};
use tokio_util::task::TaskTracker;
use tracing::{Instrument, info, warn};
use tunneld_config::{BindAddress, DynamicForward, Listen, LocalForward, Tunnel};
use tunneld_ssh::TunnelError;
use tunneld_ssh::forward::listen::{self, ListenAddress};
use tunneld_ssh::forward::socket_file::{self, SocketFile};
use tunneld_ssh::forward::{ForwardContext, ForwardCounters, serve_dynamic, serve_local};
use tunneld_ssh::socks::users::Credentials;

use crate::backoff::{jitter_below, jitter_unit};
use crate::board::Board;
use crate::counters::TunnelCounters;
use crate::retries::{Retries, Say};
use crate::state::ListenerState;

/// Between two attempts to bind a port that another program holds, or an address that is not
/// on this machine (yet). A bind costs nothing and bothers nobody, and the holder may go at any
/// moment (an `ssh -L` closed, a previous tunneld still stopping, an address that DHCP has not
/// given yet), so the port is won back within a second and a half of being free.
const RETRY_IN_USE: Duration = Duration::from_millis(1500);

/// One forward that listens here, with its counters.
#[derive(Clone)]
pub(crate) struct Listening {
    forward: Forward,
    counters: Arc<ForwardCounters>,
}

#[derive(Clone)]
enum Forward {
    Local(Arc<LocalForward>),
    Dynamic(Arc<DynamicForward>),
}

impl Listening {
    fn spec(&self) -> &str {
        match &self.forward {
            Forward::Local(f) => &f.spec,
            Forward::Dynamic(f) => &f.spec,
        }
    }

    /// The TCP address it listens on; `None` for a Unix socket.
    fn address(&self) -> Option<(&BindAddress, u16)> {
        match &self.forward {
            Forward::Local(f) => match &f.listen {
                Listen::Port { bind, port } => Some((bind, *port)),
                Listen::Socket { .. } => None,
            },
            Forward::Dynamic(f) => Some((&f.bind, f.port)),
        }
    }

    /// Binds the Unix socket it listens on, when it does.
    fn bind_socket(&self) -> Option<Result<Bound, TunnelError>> {
        let Forward::Local(f) = &self.forward else {
            return None;
        };
        let Listen::Socket { path, mode } = &f.listen else {
            return None;
        };
        let bound = socket_file::bind(path, *mode).map_err(|err| socket_file::failed(path, err));
        Some(bound.map(|(listener, file)| Bound::Unix(listener, file)))
    }

    /// Checks what the forward needs besides its port: the users file of an authenticated
    /// SOCKS forward must be usable, or every login would fail.
    async fn check(&self) -> Result<(), TunnelError> {
        let Forward::Dynamic(forward) = &self.forward else {
            return Ok(());
        };
        let Some(path) = forward.auth_file.clone() else {
            return Ok(());
        };
        tokio::task::spawn_blocking(move || Credentials::load(&path).map(drop))
            .await
            .map_err(|source| TunnelError::TaskFailed {
                what: "checking the SOCKS users file",
                source,
            })??;
        Ok(())
    }

    /// Serves `listener` until cancelled, as a task of `tracker`.
    fn serve(&self, listener: impl Into<Bound>, tracker: &TaskTracker, ctx: &ForwardContext) {
        let counters = self.counters.clone();
        let serving: Pin<Box<dyn Future<Output = ()> + Send>> =
            match (listener.into(), &self.forward) {
                (Bound::Tcp(listener), forward) => {
                    if let Ok(addr) = listener.local_addr() {
                        info!(forward = %self.spec(), listen = %addr, "listening");
                        self.counters.listening(addr);
                    }
                    match forward {
                        Forward::Local(f) => {
                            Box::pin(serve_local(listener, f.clone(), counters, ctx.clone()))
                        }
                        Forward::Dynamic(f) => {
                            Box::pin(serve_dynamic(listener, f.clone(), counters, ctx.clone()))
                        }
                    }
                }
                (Bound::Unix(listener, file), Forward::Local(f)) => {
                    info!(forward = %self.spec(), listen = %file.path().display(), "listening");
                    self.counters
                        .listening_on(file.path().display().to_string());
                    let serving = serve_local(listener, f.clone(), counters, ctx.clone());
                    // The socket file goes when the forward stops serving (stop, reload).
                    Box::pin(async move {
                        serving.await;
                        drop(file);
                    })
                }
                // Never made: `bind_socket` binds sockets for local forwards only.
                (Bound::Unix(..), Forward::Dynamic(_)) => return,
            };
        tracker.spawn(serving.in_current_span());
    }
}

/// A bound listener.
pub(crate) enum Bound {
    Tcp(TcpListener),
    Unix(UnixListener, SocketFile),
}

impl From<TcpListener> for Bound {
    fn from(listener: TcpListener) -> Self {
        Bound::Tcp(listener)
    }
}

/// The tunnel's listening forwards: its local forwards, then its dynamic ones (the order of
/// the listeners in its state), each with its counters.
pub(crate) fn of(tunnel: &Tunnel, counters: &TunnelCounters) -> Vec<Listening> {
    let locals = tunnel.local.iter().cloned().map(Arc::new);
    let socks = tunnel.dynamic.iter().cloned().map(Arc::new);
    locals
        .map(Forward::Local)
        .chain(socks.map(Forward::Dynamic))
        .enumerate()
        .map(|(index, forward)| Listening {
            forward,
            counters: counters.listener(index),
        })
        .collect()
}

/// Binds every address of every forward, or none, and serves them all.
pub(crate) async fn bind_all(
    forwards: &[Listening],
    tracker: &TaskTracker,
    ctx: &ForwardContext,
) -> Result<(), TunnelError> {
    let mut bound = Vec::new();
    for forward in forwards {
        forward.check().await?;
        if let Some(socket) = forward.bind_socket() {
            bound.push((forward, socket?));
            continue;
        }
        if let Some((bind, port)) = forward.address() {
            for listener in listen::bind(bind, port).await? {
                bound.push((forward, Bound::Tcp(listener)));
            }
        }
    }
    for (forward, listener) in bound {
        forward.serve(listener, tracker, ctx);
    }
    Ok(())
}

/// Binds what it can of each forward and serves it. Each forward that is not bound on every
/// address is marked as retrying on `board` and retried in the background (a task of `tracker`,
/// until `ctx` is cancelled) with the pause that [`pause_after`] gives.
pub(crate) async fn bind_each(
    forwards: Vec<Listening>,
    board: &Arc<Board>,
    tracker: &TaskTracker,
    ctx: &ForwardContext,
    backoff_max: Duration,
    binder: Arc<dyn Binder>,
) {
    for (index, forward) in forwards.into_iter().enumerate() {
        let (bound, left) = bind_left(&forward, Left::All, binder.as_ref()).await;
        for listener in bound {
            forward.serve(listener, tracker, ctx);
        }
        if let Some((left, err)) = left {
            // Before the tunnel connects, so that it never says "up" for a moment first.
            let reason = err.to_string();
            board.set_listener(index, ListenerState::Retrying { reason });
            let keeper = Keeper {
                forward,
                index,
                board: board.clone(),
                tracker: tracker.clone(),
                ctx: ctx.clone(),
                backoff_max,
                binder: binder.clone(),
            };
            tracker.spawn(keeper.run(left, err).in_current_span());
        }
    }
}

/// How long to wait before binding again after `err`: soon for a port in use or an address
/// not (yet) on this machine ([`RETRY_IN_USE`]); about `backoff_max` for anything else (a port
/// below 1024 without the capability, a users file or a bind address name that does not work),
/// which needs someone to change something. Both 80-100 % of their value, at most
/// `backoff_max`.
pub(crate) fn pause_after(err: &TunnelError, backoff_max: Duration, unit: f64) -> Duration {
    let soon = matches!(
        err,
        TunnelError::Listen { source, .. }
            if matches!(
                source.kind(),
                std::io::ErrorKind::AddrInUse | std::io::ErrorKind::AddrNotAvailable
            )
    );
    let pause = if soon { RETRY_IN_USE } else { backoff_max };
    jitter_below(pause.min(backoff_max), unit)
}

/// How an address is bound: a seam, so that tests can script failures the machine cannot
/// produce (EACCES, for root).
pub(crate) trait Binder: Send + Sync + 'static {
    fn bind(&self, address: &ListenAddress) -> std::io::Result<Option<TcpListener>>;
}

/// The operating system's bind.
pub(crate) struct Os;

impl Binder for Os {
    fn bind(&self, address: &ListenAddress) -> std::io::Result<Option<TcpListener>> {
        address.bind()
    }
}

/// What is left to bind of a forward.
enum Left {
    /// Everything: its check or the resolution of its bind address has not succeeded yet.
    All,
    /// These addresses; the others are bound and serving.
    Addresses(Vec<ListenAddress>),
}

/// Binds what is left of `forward`: the listeners bound now, and what is still left, with the
/// first error.
async fn bind_left(
    forward: &Listening,
    left: Left,
    binder: &dyn Binder,
) -> (Vec<Bound>, Option<(Left, TunnelError)>) {
    if let Some(socket) = forward.bind_socket() {
        return match socket {
            Ok(bound) => (vec![bound], None),
            Err(err) => (Vec::new(), Some((Left::All, err))),
        };
    }
    let addresses = match left {
        Left::Addresses(addresses) => addresses,
        Left::All => {
            let resolved = match (forward.check().await, forward.address()) {
                (Ok(()), Some((bind, port))) => listen::addresses(bind, port).await,
                (Ok(()), None) => Ok(Vec::new()),
                (Err(err), _) => Err(err),
            };
            match resolved {
                Ok(addresses) => addresses,
                Err(err) => return (Vec::new(), Some((Left::All, err))),
            }
        }
    };
    let mut bound = Vec::new();
    let mut still = Vec::new();
    let mut first = None;
    for address in addresses {
        match binder.bind(&address) {
            Ok(listener) => bound.extend(listener.map(Bound::Tcp)),
            Err(err) => {
                first.get_or_insert_with(|| address.failed(err));
                still.push(address);
            }
        }
    }
    (bound, first.map(|err| (Left::Addresses(still), err)))
}

/// Retries one forward's listener until every address of it is bound.
struct Keeper {
    forward: Listening,
    index: usize,
    board: Arc<Board>,
    tracker: TaskTracker,
    ctx: ForwardContext,
    backoff_max: Duration,
    binder: Arc<dyn Binder>,
}

impl Keeper {
    async fn run(self, mut left: Left, mut err: TunnelError) {
        let spec = self.forward.spec().to_owned();
        let mut retries = Retries::new();
        retries.attempt();
        loop {
            let reason = err.to_string();
            let pause = pause_after(&err, self.backoff_max, jitter_unit());
            match retries.failed() {
                Say::First => {
                    warn!(forward = %spec, error = %reason, retry_in = ?pause, "cannot listen; serving the tunnel's other forwards and retrying")
                }
                Say::Summary => {
                    warn!(forward = %spec, error = %reason, waiting_secs = retries.secs(), attempts = retries.attempts(), "still cannot listen; still retrying")
                }
                Say::Nothing => {}
            }
            self.board
                .set_listener(self.index, ListenerState::Retrying { reason });
            tokio::select! {
                () = self.ctx.cancel.cancelled() => return,
                () = tokio::time::sleep(pause) => {}
            }
            retries.attempt();
            let (bound, still) = bind_left(&self.forward, left, self.binder.as_ref()).await;
            for listener in bound {
                self.forward.serve(listener, &self.tracker, &self.ctx);
            }
            match still {
                Some((next, error)) => (left, err) = (next, error),
                None => break,
            }
        }
        info!(forward = %spec, waited_secs = retries.secs(), attempts = retries.attempts(), "listening at last");
        self.board
            .set_listener(self.index, ListenerState::Listening);
    }
}

#[cfg(test)]
mod tests;
