//! Targets to put behind a tunnel: a TCP echo server, a minimal HTTP server, a closed port.

use std::net::{Ipv4Addr, SocketAddr, TcpListener as StdListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::background::Background;

/// Binds 127.0.0.1:0 now, so the address is known (and connectable) before the first task runs.
pub(crate) fn bind_localhost() -> (StdListener, SocketAddr) {
    let listener = StdListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
    listener.set_nonblocking(true).expect("set_nonblocking");
    let addr = listener.local_addr().expect("local_addr");
    (listener, addr)
}

/// Accepts connections forever, handing each to `serve` on a task of its own.
async fn accept_loop<F, Fut>(listener: StdListener, accepted: Counter, serve: F)
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::from_std(listener).expect("register listener");
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                accepted.add(1);
                tokio::spawn(serve(stream));
            }
            // Out of descriptors or an aborted handshake: the next accept may succeed.
            Err(_) => tokio::task::yield_now().await,
        }
    }
}

/// What every server here has: its address, the count of connections it accepted, and the
/// runtime that serves them (stopped, with every connection closed, on drop).
#[derive(Debug)]
struct Listening {
    addr: SocketAddr,
    accepted: Counter,
    _runtime: Background,
}

impl Listening {
    /// Binds 127.0.0.1:0 and serves each connection with `serve`, on a runtime thread `name`.
    fn start<F, Fut>(name: &str, serve: F) -> Self
    where
        F: Fn(TcpStream) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let (listener, addr) = bind_localhost();
        let accepted = Counter::default();
        let runtime = Background::new(name);
        runtime.spawn(accept_loop(listener, accepted.clone(), serve));
        Self {
            addr,
            accepted,
            _runtime: runtime,
        }
    }
}

/// `addr`, `port` and `connections_total`, the accessors every server has, from its `listening`
/// field.
macro_rules! listening_accessors {
    () => {
        /// The address it listens on.
        pub fn addr(&self) -> SocketAddr {
            self.listening.addr
        }

        /// The port it listens on.
        pub fn port(&self) -> u16 {
            self.listening.addr.port()
        }

        /// Connections accepted so far.
        pub fn connections_total(&self) -> u64 {
            self.listening.accepted.get()
        }
    };
}

/// A counter shared between a server's connections and the test.
#[derive(Debug, Clone, Default)]
struct Counter(Arc<AtomicU64>);

impl Counter {
    fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A TCP echo server on 127.0.0.1: echoes each connection until EOF, then shuts down its write
/// half. Serves any number of concurrent connections; stops on drop.
#[derive(Debug)]
pub struct EchoServer {
    listening: Listening,
}

impl EchoServer {
    /// Starts the server; it accepts as soon as this returns.
    pub fn start() -> Self {
        let listening = Listening::start("echo-server", |mut stream| async move {
            let (mut reader, mut writer) = stream.split();
            if tokio::io::copy(&mut reader, &mut writer).await.is_ok() {
                let _ = writer.shutdown().await;
            }
        });
        Self { listening }
    }

    listening_accessors!();
}

/// A minimal HTTP/1.1 server on 127.0.0.1 that answers every request with `200 OK` and the same
/// body, with keep-alive (until the client sends `Connection: close` or closes).
#[derive(Debug)]
pub struct HttpServer {
    listening: Listening,
    requests: Counter,
}

impl HttpServer {
    /// Starts the server with the body every response carries.
    pub fn start(body: Vec<u8>) -> Self {
        let requests = Counter::default();
        let body: Arc<[u8]> = body.into();
        let counter = requests.clone();
        let listening = Listening::start("http-server", move |stream| {
            serve_http(stream, body.clone(), counter.clone())
        });
        Self {
            listening,
            requests,
        }
    }

    listening_accessors!();

    /// `http://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr())
    }

    /// Requests answered so far.
    pub fn requests_total(&self) -> u64 {
        self.requests.get()
    }
}

async fn serve_http(mut stream: TcpStream, body: Arc<[u8]>, requests: Counter) {
    let _ = stream.set_nodelay(true);
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        // Request bodies are not expected (GET only); anything after the head is the next request.
        let head_end = loop {
            if let Some(pos) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                break pos + 4;
            }
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => pending.extend_from_slice(&buf[..n]),
            }
        };
        let head = String::from_utf8_lossy(&pending[..head_end]).to_ascii_lowercase();
        pending.drain(..head_end);
        let close = head.contains("\r\nconnection: close");
        let response_head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n{}\r\n",
            body.len(),
            if close { "Connection: close\r\n" } else { "" }
        );
        requests.add(1);
        if stream.write_all(response_head.as_bytes()).await.is_err()
            || stream.write_all(&body).await.is_err()
        {
            return;
        }
        if close {
            let _ = stream.shutdown().await;
            return;
        }
    }
}

/// A port on 127.0.0.1 where nothing listens: connecting gets "connection refused". It comes from
/// [`free_port`](crate::ports::free_port): no other test is handed it, and the kernel does not
/// give it out as a connection's local port.
#[derive(Debug, Clone, Copy)]
pub struct ClosedPort {
    port: u16,
}

impl ClosedPort {
    /// Finds such a port.
    pub fn new() -> Self {
        Self {
            port: crate::ports::free_port(),
        }
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:port`.
    pub fn addr(&self) -> SocketAddr {
        crate::util::localhost(self.port)
    }
}

impl Default for ClosedPort {
    fn default() -> Self {
        Self::new()
    }
}

/// A target that speaks first and hangs up: writes its reply to each connection as soon as it is
/// accepted, then closes it, so the target side always closes first. Never reads.
#[derive(Debug)]
pub struct ReplyServer {
    listening: Listening,
}

impl ReplyServer {
    /// Starts the server with the reply every connection gets.
    pub fn start(reply: Vec<u8>) -> Self {
        let reply: Arc<[u8]> = reply.into();
        let listening = Listening::start("reply-server", move |mut stream| {
            let reply = reply.clone();
            async move {
                if stream.write_all(&reply).await.is_ok() {
                    let _ = stream.shutdown().await;
                }
            }
        });
        Self { listening }
    }

    listening_accessors!();
}

/// A target that streams pseudo-random bytes to each connection for as long as it can write
/// (until the peer goes away). Never reads.
#[derive(Debug)]
pub struct SourceServer {
    listening: Listening,
    sent: Counter,
    ended: Counter,
}

impl SourceServer {
    /// Starts the server.
    pub fn start() -> Self {
        let (sent, ended) = (Counter::default(), Counter::default());
        let chunk: Arc<[u8]> = crate::util::random_bytes(64 * 1024, 0x5eed).into();
        let (sent_counter, ended_counter) = (sent.clone(), ended.clone());
        let listening = Listening::start("source-server", move |mut stream| {
            let (chunk, sent, ended) = (chunk.clone(), sent_counter.clone(), ended_counter.clone());
            async move {
                while let Ok(n) = stream.write(&chunk).await {
                    if n == 0 {
                        break;
                    }
                    sent.add(n as u64);
                }
                ended.add(1);
            }
        });
        Self {
            listening,
            sent,
            ended,
        }
    }

    listening_accessors!();

    /// Bytes written so far, over every connection.
    pub fn bytes_sent(&self) -> u64 {
        self.sent.get()
    }

    /// Connections whose stream has ended (a write failed: the peer went away).
    pub fn connections_ended(&self) -> u64 {
        self.ended.get()
    }
}

/// A target that never says anything and never hangs up: reads (and discards) each connection
/// until EOF, then keeps its own half open for as long as the server runs.
#[derive(Debug)]
pub struct SilentServer {
    listening: Listening,
    received: Counter,
    eofs: Counter,
}

impl SilentServer {
    /// Starts the server.
    pub fn start() -> Self {
        let (received, eofs) = (Counter::default(), Counter::default());
        let (received_counter, eof_counter) = (received.clone(), eofs.clone());
        let listening = Listening::start("silent-server", move |mut stream| {
            let (received, eofs) = (received_counter.clone(), eof_counter.clone());
            async move {
                let mut buf = [0u8; 8192];
                loop {
                    match stream.read(&mut buf).await {
                        Ok(0) => {
                            eofs.add(1);
                            break;
                        }
                        Ok(n) => received.add(n as u64),
                        Err(_) => break,
                    }
                }
                // Our half stays open: the stream lives as long as this never-ending task.
                std::future::pending::<()>().await;
                drop(stream);
            }
        });
        Self {
            listening,
            received,
            eofs,
        }
    }

    listening_accessors!();

    /// Bytes received so far, over every connection.
    pub fn bytes_received(&self) -> u64 {
        self.received.get()
    }

    /// Connections whose peer has sent EOF (which this server never answers).
    pub fn eofs_seen(&self) -> u64 {
        self.eofs.get()
    }
}
