//! `GET /metrics` over HTTP/1.1, served by hyper with bounds: a few connections at once, small
//! request heads that must arrive quickly, and a cap on each connection's life. A scraper that
//! misbehaves costs a bounded amount and never touches the tunnels.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{ALLOW, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus::{Encoder, Registry, TextEncoder};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::debug;

/// Scrapers served at once; more wait in the kernel's backlog.
const MAX_CONNECTIONS: usize = 16;
/// The most a request head may take (hyper's smallest read buffer is 8 KiB).
const MAX_HEAD: usize = 8 * 1024;
/// How long a request head may take to arrive, and how long a kept-alive connection may sit
/// idle before its next request.
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest any one connection lives, whatever it does.
const CONNECTION_LIMIT: Duration = Duration::from_secs(60);

/// Serves `listener` until `stop` is cancelled.
pub(crate) async fn serve(listener: TcpListener, registry: Arc<Registry>, stop: CancellationToken) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let connections = TaskTracker::new();
    loop {
        let slot = tokio::select! {
            () = stop.cancelled() => break,
            slot = slots.clone().acquire_owned() => slot,
        };
        let Ok(slot) = slot else { break };
        let accepted = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(err) => {
                debug!(error = %err, "metrics: accept failed");
                // Out of descriptors, most likely: give the tunnels the chance to close some.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let registry = registry.clone();
        let stop = stop.clone();
        connections.spawn(async move {
            let _slot = slot;
            let service = service_fn(move |request| {
                let registry = registry.clone();
                async move { Ok::<_, Infallible>(respond(&request, &registry)) }
            });
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT)
                .max_buf_size(MAX_HEAD)
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                () = stop.cancelled() => {}
                served = tokio::time::timeout(CONNECTION_LIMIT, connection) => match served {
                    Ok(Ok(())) => {}
                    Ok(Err(err)) => debug!(client = %peer, error = %err, "metrics: connection failed"),
                    Err(_) => debug!(client = %peer, "metrics: connection closed after its time limit"),
                },
            }
        });
    }
    connections.close();
    connections.wait().await;
}

/// The answer to one request: the metrics for `GET /metrics`, 404 elsewhere, 405 for any other
/// method.
fn respond(request: &Request<Incoming>, registry: &Registry) -> Response<Full<Bytes>> {
    if request.uri().path() != "/metrics" {
        return plain(
            StatusCode::NOT_FOUND,
            "not found: metrics are at /metrics\n",
        );
    }
    if request.method() != Method::GET {
        let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "only GET\n");
        response
            .headers_mut()
            .insert(ALLOW, hyper::header::HeaderValue::from_static("GET"));
        return response;
    }
    let encoder = TextEncoder::new();
    let mut body = Vec::new();
    if let Err(err) = encoder.encode(&registry.gather(), &mut body) {
        return plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("encoding the metrics failed: {err}\n"),
        );
    }
    let mut response = Response::new(Full::new(Bytes::from(body)));
    if let Ok(value) = encoder.format_type().parse() {
        response.headers_mut().insert(CONTENT_TYPE, value);
    }
    response
}

fn plain(status: StatusCode, text: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(text.to_owned())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
