//! The gate's own listener: how many callers may hold a connection, and how long a caller may
//! take to send a request.
//!
//! A local caller that opens connections and sends nothing, or sends a request slowly, would
//! otherwise hold the gate's file descriptors and tasks for as long as it likes. So:
//!
//! - at most `max_connections` are open; the gate accepts no other until one closes (callers
//!   beyond it wait in the kernel's listen backlog);
//! - a request's line and headers must arrive within `header_read_timeout_seconds`, counted
//!   from connecting or, on a kept-alive connection, from the previous answer (hyper's
//!   `header_read_timeout`, which also bounds idle kept-alive connections);
//! - a request's body must arrive within `body_read_timeout_seconds` of its headers; a late
//!   body is refused `400` and its connection closed.
//!
//! A call held open while a person decides is bounded by `hold_seconds`, not by these.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use bytes::Bytes;
use http::Request;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::Sleep;
use tower::ServiceExt as _;

use crate::config::GateFile;
use crate::gate::Gate;

/// The bounds of the gate's listener (from the gate file).
#[derive(Debug, Clone, Copy)]
pub struct ListenerLimits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub body_read_timeout: Duration,
}

impl ListenerLimits {
    pub fn of(file: &GateFile) -> Self {
        ListenerLimits {
            max_connections: file.max_connections.get(),
            header_read_timeout: file.header_read_timeout_seconds.secs(),
            body_read_timeout: file.body_read_timeout_seconds.secs(),
        }
    }
}

/// Serves `gate` on `listener` within `limits` until `shutdown` completes, then finishes the
/// calls in flight.
pub async fn serve(
    listener: TcpListener,
    gate: &Gate,
    limits: ListenerLimits,
    shutdown: impl Future<Output = ()>,
) {
    serve_router(listener, gate.router(), limits, shutdown).await;
}

/// Serves `router` (the gate's, or the MCP gate's endpoint) within `limits`, as [`serve`].
pub async fn serve_router(
    mut listener: TcpListener,
    router: axum::Router,
    limits: ListenerLimits,
    shutdown: impl Future<Output = ()>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        // A permit first: at the cap, new callers wait in the backlog, unaccepted.
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => permit,
            () = &mut shutdown => break,
        };
        let Ok(permit) = permit else { break };
        // axum's `Listener` skips connections that failed before they were accepted, and waits
        // a second on other errors (out of file descriptors) instead of stopping the gate.
        let (stream, peer) = tokio::select! {
            accepted = axum::serve::Listener::accept(&mut listener) => accepted,
            () = &mut shutdown => break,
        };
        let router = router.clone();
        let body_timeout = limits.body_read_timeout;
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            let mut request = request.map(|body| Deadline::new(body, body_timeout));
            request
                .extensions_mut()
                .insert(ConnectInfo::<SocketAddr>(peer));
            router.clone().oneshot(request)
        });
        let connection = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// A request body that fails once it has not fully arrived by its deadline.
struct Deadline<B> {
    inner: B,
    deadline: Pin<Box<Sleep>>,
    timeout: Duration,
}

impl<B> Deadline<B> {
    fn new(inner: B, timeout: Duration) -> Self {
        Deadline {
            inner,
            deadline: Box::pin(tokio::time::sleep(timeout)),
            timeout,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the body did not arrive within {0} seconds")]
struct BodyTimedOut(u64);

impl<B> Body for Deadline<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|frame| frame.map_err(Into::into)));
        }
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => {
                let seconds = self.timeout.as_secs();
                Poll::Ready(Some(Err(BodyTimedOut(seconds).into())))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
