//! A TCP proxy that breaks the link between a client and a server on demand, with nothing but
//! loopback: pass, black-hole, freeze, delay, reset, stop accepting.
//!
//! Modes apply at once to every current connection and to every later one; switching back to
//! [`Mode::Pass`] resumes forwarding on the same sockets.

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use socket2::SockRef;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::background::Background;
use crate::servers::bind_localhost;

/// What the proxy does with the bytes of its connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Forward everything.
    Pass,
    /// A dead link that sends no RST: keep both sockets open and keep reading from both sides
    /// (so TCP still ACKs), but silently drop the bytes. FIN and RST from either side are held
    /// back too, and delivered once the mode changes. Bytes dropped here are lost for good.
    BlackHole,
    /// Stop reading from both sides, so the kernel's buffers fill, the receive window closes and
    /// the senders' writes get stuck. Nothing is lost: leaving the mode delivers it all. A
    /// connection that carried a lot of traffic before may have grown buffers of tens of MiB
    /// (`net.ipv4.tcp_rmem`), so push more than that to see a writer block.
    Freeze,
    /// Forward each chunk once this long has passed since it was read: latency, not a rate
    /// limit, up to 64 chunks of at most 64 KiB in flight per direction.
    Delay(Duration),
}

/// A TCP proxy on 127.0.0.1 in front of `target`, running on a runtime thread of its own so it
/// can be used from sync and async tests alike. Dropping it closes every connection (FIN).
#[derive(Debug)]
pub struct ChaosProxy {
    addr: SocketAddr,
    target: SocketAddr,
    shared: Arc<Shared>,
    control: mpsc::UnboundedSender<Control>,
    _runtime: Background,
}

#[derive(Debug)]
struct Shared {
    mode: watch::Sender<Mode>,
    total: AtomicU64,
    open: Mutex<HashMap<u64, Conn>>,
}

#[derive(Debug)]
struct Conn {
    reset: CancellationToken,
    /// This connection's own mode: it follows the proxy's mode until pinned.
    mode: watch::Sender<Mode>,
    pinned: bool,
    /// Disconnected once the connection's task has ended and closed its sockets.
    done: std::sync::mpsc::Receiver<()>,
}

#[derive(Debug)]
enum Control {
    Accepting(bool, std::sync::mpsc::Sender<()>),
}

/// The listen backlog while accepting, restored after a pause.
const BACKLOG: i32 = 1024;

impl ChaosProxy {
    /// Starts a proxy in [`Mode::Pass`] that forwards each accepted connection to `target`.
    pub fn start(target: SocketAddr) -> Self {
        let (listener, addr) = bind_localhost();
        let shared = Arc::new(Shared {
            mode: watch::Sender::new(Mode::Pass),
            total: AtomicU64::new(0),
            open: Mutex::new(HashMap::new()),
        });
        let (control, commands) = mpsc::unbounded_channel();
        let runtime = Background::new("chaos-proxy");
        runtime.spawn(accept_loop(listener, target, shared.clone(), commands));
        Self {
            addr,
            target,
            shared,
            control,
            _runtime: runtime,
        }
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The port clients connect to.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The address connections are forwarded to.
    pub fn target(&self) -> SocketAddr {
        self.target
    }

    /// Switches every current and future connection to `mode`. Once this returns, no byte read
    /// afterwards is handled by the previous mode.
    pub fn set_mode(&self, mode: Mode) {
        // Under the lock, so that a connection being accepted now gets either the old mode and
        // this update, or the new mode; and synchronously, so that the promise above holds.
        let open = self.shared.open.lock().unwrap();
        self.shared.mode.send_replace(mode);
        for conn in open.values() {
            if !conn.pinned {
                conn.mode.send_replace(mode);
            }
        }
    }

    /// Switches only the connections open now to `mode` and keeps them there, whatever later
    /// [`ChaosProxy::set_mode`] calls say; later connections follow the proxy's mode. This is
    /// how a test black-holes the old SSH connection while a new one gets through.
    pub fn pin_existing(&self, mode: Mode) {
        let mut open = self.shared.open.lock().unwrap();
        for conn in open.values_mut() {
            conn.pinned = true;
            conn.mode.send_replace(mode);
        }
    }

    /// The current mode.
    pub fn mode(&self) -> Mode {
        *self.shared.mode.borrow()
    }

    /// Closes every current connection with an RST on both sides (SO_LINGER 0, then close) and
    /// returns once they are closed. Later connections are not affected.
    pub fn reset_all(&self) {
        let conns: Vec<Conn> = {
            let mut open = self.shared.open.lock().unwrap();
            open.drain().map(|(_, conn)| conn).collect()
        };
        for conn in &conns {
            conn.reset.cancel();
        }
        for conn in conns {
            let _ = conn.done.recv_timeout(Duration::from_secs(10));
        }
    }

    /// Stops or resumes accepting connections; returns once the change is in effect.
    ///
    /// Stopping does not close the listener (a closed port answers SYNs with RST, "connection
    /// refused", which killing the server already gives): the proxy stops calling accept(),
    /// shrinks the listen backlog to its minimum and fills the accept queue with one connection
    /// of its own. The kernel then drops further SYNs, so a client's connect() hangs in SYN-SENT
    /// and retransmits, as with a host that vanished or a firewall that drops. On resume they
    /// complete at the next SYN retransmission (the first one after a second). Connections
    /// already established are not affected.
    pub fn set_accepting(&self, accepting: bool) {
        let (ack, acked) = std::sync::mpsc::channel();
        self.control
            .send(Control::Accepting(accepting, ack))
            .expect("chaos proxy task is running");
        acked
            .recv_timeout(Duration::from_secs(10))
            .expect("chaos proxy acknowledges");
    }

    /// Connections accepted so far.
    pub fn connections_total(&self) -> u64 {
        self.shared.total.load(Ordering::Relaxed)
    }

    /// Connections currently open (accepted and not yet closed).
    pub fn connections_open(&self) -> usize {
        self.shared.open.lock().unwrap().len()
    }
}

async fn accept_loop(
    listener: StdListener,
    target: SocketAddr,
    shared: Arc<Shared>,
    mut commands: mpsc::UnboundedReceiver<Control>,
) {
    let listener = TcpListener::from_std(listener).expect("register listener");
    // While paused: the proxy's own connection that occupies the accept queue.
    let mut plug: Option<Option<TcpStream>> = None;
    // Its server side, dropped when accepted after a resume.
    let mut plug_peer: Option<SocketAddr> = None;
    loop {
        tokio::select! {
            accepted = listener.accept(), if plug.is_none() => {
                let Ok((stream, peer)) = accepted else {
                    tokio::task::yield_now().await;
                    continue;
                };
                if plug_peer == Some(peer) {
                    plug_peer = None;
                    continue;
                }
                spawn_connection(stream, target, &shared);
            }
            command = commands.recv() => {
                let Some(Control::Accepting(accepting, ack)) = command else { return };
                if !accepting && plug.is_none() {
                    plug = Some(pause(&listener).await);
                } else if accepting && let Some(stream) = plug.take() {
                    let _ = SockRef::from(&listener).listen(BACKLOG);
                    plug_peer = stream.and_then(|s| s.local_addr().ok());
                }
                let _ = ack.send(());
            }
        }
    }
}

/// Shrinks the backlog and fills the accept queue with a connection of our own (`None` if the
/// queue was already full, or the kernel drops even the first SYN).
async fn pause(listener: &TcpListener) -> Option<TcpStream> {
    let addr = listener.local_addr().ok()?;
    SockRef::from(listener)
        .listen(0)
        .expect("shrink listen backlog");
    tokio::time::timeout(Duration::from_millis(500), TcpStream::connect(addr))
        .await
        .ok()?
        .ok()
}

fn spawn_connection(client: TcpStream, target: SocketAddr, shared: &Arc<Shared>) {
    let id = shared.total.fetch_add(1, Ordering::Relaxed);
    let reset = CancellationToken::new();
    let (done_tx, done) = std::sync::mpsc::channel::<()>();
    let mode = {
        let mut open = shared.open.lock().unwrap();
        let (conn_mode, mode) = watch::channel(*shared.mode.borrow());
        open.insert(
            id,
            Conn {
                reset: reset.clone(),
                mode: conn_mode,
                pinned: false,
                done,
            },
        );
        mode
    };
    let shared = shared.clone();
    tokio::spawn(async move {
        serve(client, target, mode, reset).await;
        shared.open.lock().unwrap().remove(&id);
        drop(done_tx);
    });
}

async fn serve(
    mut client: TcpStream,
    target: SocketAddr,
    mode: watch::Receiver<Mode>,
    reset: CancellationToken,
) {
    let connected = tokio::select! {
        result = TcpStream::connect(target) => result.ok(),
        () = reset.cancelled() => None,
    };
    let Some(mut server) = connected else {
        // The closest a proxy that has already accepted can come to "connection refused".
        abort(&client);
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let graceful = {
        let (client_read, client_write) = client.split();
        let (server_read, server_write) = server.split();
        let up = pipe(client_read, server_write, mode.clone());
        let down = pipe(server_read, client_write, mode);
        tokio::select! {
            result = async { tokio::try_join!(up, down) } => result.is_ok(),
            () = reset.cancelled() => false,
        }
    };
    if !graceful {
        abort(&client);
        abort(&server);
    }
}

/// Makes the coming close send an RST instead of a FIN.
fn abort(stream: &TcpStream) {
    let _ = SockRef::from(stream).set_linger(Some(Duration::ZERO));
}

async fn changed(mode: &mut watch::Receiver<Mode>) -> io::Result<()> {
    mode.changed()
        .await
        .map_err(|_| io::Error::other("chaos proxy stopped"))
}

/// Forwards one direction under the current mode. The reader and the writer are decoupled by a
/// small queue so that [`Mode::Delay`] adds latency without limiting the rate.
async fn pipe<R, W>(mut from: R, mut to: W, mode: watch::Receiver<Mode>) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (queue, mut queued) = mpsc::channel::<(Instant, Vec<u8>)>(64);
    let mut read_mode = mode.clone();
    let reading = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            if *read_mode.borrow_and_update() == Mode::Freeze {
                changed(&mut read_mode).await?;
                continue;
            }
            let read = tokio::select! {
                read = from.read(&mut buf) => read,
                result = read_mode.changed() => {
                    result.map_err(|_| io::Error::other("chaos proxy stopped"))?;
                    continue;
                }
            };
            let n = match read {
                Ok(n) if n > 0 => n,
                end => {
                    // A dead link delivers neither FIN nor RST: hold them until it comes back.
                    while matches!(
                        *read_mode.borrow_and_update(),
                        Mode::BlackHole | Mode::Freeze
                    ) {
                        changed(&mut read_mode).await?;
                    }
                    end?;
                    // Dropping the queue makes the writer forward the EOF after the data.
                    return Ok(());
                }
            };
            let current = *read_mode.borrow();
            let due = match current {
                Mode::BlackHole => continue,
                Mode::Delay(delay) => Instant::now() + delay,
                Mode::Pass | Mode::Freeze => Instant::now(),
            };
            if queue.send((due, buf[..n].to_vec())).await.is_err() {
                // The writer failed; try_join reports its error.
                return Ok(());
            }
        }
    };
    let mut write_mode = mode;
    let writing = async move {
        while let Some((due, chunk)) = queued.recv().await {
            tokio::time::sleep_until(due).await;
            // Bytes still in flight when the link dies are stuck or lost like the rest.
            while *write_mode.borrow_and_update() == Mode::Freeze {
                changed(&mut write_mode).await?;
            }
            if *write_mode.borrow() == Mode::BlackHole {
                continue;
            }
            to.write_all(&chunk).await?;
        }
        to.shutdown().await
    };
    tokio::try_join!(reading, writing).map(|_| ())
}
