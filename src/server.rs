//! The gateway's HTTP server: the router, the headers every answer carries, the listener, and
//! `run`, which serves an already bound listener until a shutdown signal (so tests start it on
//! port 0).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::Router;
use axum::body::Body;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Request, header};
use axum::response::Response;
use axum::serve::Listener;
use futures_util::FutureExt as _;
use hyper::body::{Body as _, Incoming};
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpSocket};
use tower::util::Oneshot;
use tower::{Service, ServiceBuilder, ServiceExt as _};

use crate::approvals::Approvals;
use crate::clock::Clock;
use crate::config::{ConnectionLimits, PublicUrl, ServeArgs};
use crate::connections::{AnswerBody, Connections, RequestBody, Slot};
use crate::deliveries::{DRAIN_BOUND, Deliveries};
use crate::keyring::Keyring;
use crate::metrics::{Metrics, MetricsAccess};
use crate::notify::vapid::VapidKey;
use crate::notify::webhooks::{RetryPolicy, Webhooks};
use crate::notify::{Notifier, PushSettings};
use crate::passkeys::Passkeys;
use crate::rate::PeerAddress;
use crate::routes;
use crate::state::AppState;
use crate::storage::Storage;
use crate::store::Store;
use crate::store::instrumented::{self, InstrumentedStore};

/// The Content-Security-Policy of every answer: the gateway's own scripts and styles only, no
/// inline code, no framing, forms and connections to the gateway only.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
     connect-src 'self'; manifest-src 'self'; form-action 'self'; frame-ancestors 'none'; \
     base-uri 'none'";

/// Every route of the gateway; `/metrics` too unless it has a listener of its own.
fn router(state: AppState) -> Router {
    let router = Router::new()
        .merge(routes::public::router())
        .merge(routes::openapi::router())
        .merge(routes::approve::router())
        .merge(routes::dashboard::router())
        .merge(crate::pages::static_files())
        .fallback(crate::pages::error::not_found);
    let router = if state.metrics_access.own_listener {
        router
    } else {
        router.merge(routes::public::metrics_router())
    };
    router.with_state(state)
}

/// `router`, the request body limit, and the headers every answer carries. The layers wrap the
/// router as a whole: `Router::layer` would wrap each route, and each such layer boxes a future
/// of its own for every request, which thousands of waiting long polls would each hold.
fn gateway(
    router: Router,
    max_body: usize,
) -> impl Service<
    Request<RequestBody<Incoming>>,
    Response = Response,
    Error = Infallible,
    Future: Send + Unpin,
> + Clone
+ Send
+ 'static {
    ServiceBuilder::new()
        .map_response(security_headers)
        .layer(DefaultBodyLimit::max(max_body))
        .service(router)
}

fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    let fixed: [(HeaderName, &str); 5] = [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (
            HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        ),
    ];
    for (name, value) in fixed {
        headers.insert(name, HeaderValue::from_static(value));
    }
    // Pages and API answers carry decisions and tokens: never cached unless a route says so.
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

/// How many connections the kernel queues for the gateway before it accepts them (capped by
/// `net.core.somaxconn`). Beyond the usual 128, so that thousands of agents connecting at once
/// (after a restart, or in a burst of new requests) are queued rather than dropped or answered
/// with SYN cookies and left to retransmit.
pub const LISTEN_BACKLOG: u32 = 4096;

/// The gateway's listener on `address`, with [`LISTEN_BACKLOG`].
pub fn listen(address: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match address {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    // As `TcpListener::bind` does: a restarted gateway listens again at once, even while
    // connections of the one before linger in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Serves `state` on `listener` until `shutdown` completes, then finishes the requests in flight
/// and the notifications being delivered (for at most [`DRAIN_BOUND`]).
///
/// HTTP/1.1 only. Agents, browsers and proxies reach the gateway over plain HTTP/1.1 (browsers
/// speak HTTP/2 only over TLS, which a proxy in front ends), and hyper's HTTP/1 connection keeps
/// less state than its automatic HTTP/1 and HTTP/2 builder (what `axum::serve` uses): with
/// 10,000 agents long-polling, 16.9 against 22.8 KiB per waiting poll (BENCHMARKS.md).
pub async fn run(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = state.connection_limits.clone();
    let max_body = state.limits.max_body_bytes;
    let deliveries = state.deliveries.clone();
    serve(
        listener,
        gateway(router(state), max_body),
        &limits,
        shutdown,
    )
    .await?;
    // After the requests: they may still have started deliveries.
    deliveries.drain(DRAIN_BOUND).await;
    Ok(())
}

/// Connections the metrics listener keeps open at most: enough for a few scrapers, and within
/// the open files `--max-connections` leaves over by default.
const METRICS_MAX_CONNECTIONS: u64 = 16;

/// Serves `/metrics` alone on `listener` (`--metrics-listen`), until `shutdown` completes.
pub async fn run_metrics(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = ConnectionLimits {
        max_connections: Some(METRICS_MAX_CONNECTIONS),
        ..(*state.connection_limits).clone()
    };
    let max_body = state.limits.max_body_bytes;
    let router = routes::public::metrics_router().with_state(state);
    serve(listener, gateway(router, max_body), &limits, shutdown).await
}

/// Serves `service` on `listener` within `limits` (see [`crate::connections`]) until `shutdown`
/// completes, then finishes the requests in flight.
async fn serve<S>(
    mut listener: TcpListener,
    service: S,
    limits: &ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    S: Service<Request<RequestBody<Incoming>>, Response = Response, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + Unpin,
{
    let connections = Connections::new(limits);
    let sweeper = tokio::spawn(connections.clone().sweep());
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        // axum's `Listener` skips connections that failed before they were accepted, and waits
        // a second on other errors (out of file descriptors) instead of stopping the gateway.
        let (stream, peer) = tokio::select! {
            accepted = Listener::accept(&mut listener) => accepted,
            () = &mut shutdown => break,
        };
        let slot = tokio::select! {
            slot = connections.admit() => slot,
            () = &mut shutdown => break,
        };
        let guard = slot.guard();
        let connection = http1::Builder::new().serve_connection(
            TokioIo::new(stream),
            ConnectionService {
                service: service.clone(),
                slot: slot.clone(),
                peer: PeerAddress(peer.ip()),
            },
        );
        // A combinator, not an async block: a block awaiting the connection would hold it twice
        // (what it captured and what it awaits), 800 bytes more for each connection.
        let task = tokio::spawn(graceful.watch(connection).map(move |served| {
            drop(guard);
            if let Err(e) = served {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        }));
        slot.serving(task.abort_handle());
    }
    drop(listener);
    // Idle connections close now; each request in flight is answered, then its connection closes.
    graceful.shutdown().await;
    sweeper.abort();
    Ok(())
}

/// The gateway's service as one connection sees it: it tells the connection's [`Slot`] when a
/// request arrives, when its body has been read and when its answer has been sent.
#[derive(Clone)]
struct ConnectionService<S> {
    service: S,
    slot: Slot,
    /// The connection's TCP peer, put in every request's extensions (for limits per client).
    peer: PeerAddress,
}

impl<S> hyper::service::Service<Request<Incoming>> for ConnectionService<S>
where
    S: Service<Request<RequestBody<Incoming>>, Response = Response, Error = Infallible> + Clone,
    S::Future: Unpin,
{
    type Response = http::Response<AnswerBody<Body>>;
    type Error = Infallible;
    type Future = Answer<Oneshot<S, Request<RequestBody<Incoming>>>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let complete = request.body().is_end_stream();
        self.slot.request_started(complete);
        let slot = (!complete).then(|| self.slot.clone());
        let mut request = request.map(|body| RequestBody::new(body, slot));
        request.extensions_mut().insert(self.peer);
        Answer {
            answer: self.service.clone().oneshot(request),
            slot: self.slot.clone(),
        }
    }
}

/// The answer to one request, whose body tells the connection when it has been sent.
struct Answer<F> {
    answer: F,
    slot: Slot,
}

impl<F> Future for Answer<F>
where
    F: Future<Output = Result<Response, Infallible>> + Unpin,
{
    type Output = Result<http::Response<AnswerBody<Body>>, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let answer = std::task::ready!(Pin::new(&mut self.answer).poll(cx));
        let slot = self.slot.clone();
        Poll::Ready(answer.map(|response| response.map(|body| AnswerBody::new(body, slot))))
    }
}

/// Builds the gateway's state from its configuration and storage: signing key, store, events. Every
/// use of `store` by the gateway goes through an [`InstrumentedStore`] that records it in the
/// state's metrics. Everything that reads the time reads `clock`.
pub async fn open(args: &ServeArgs, storage: &Storage, clock: Clock) -> anyhow::Result<AppState> {
    let metrics = Arc::new(Metrics::new(instrumented::OPERATIONS));
    let store: Arc<dyn Store> = Arc::new(InstrumentedStore::new(
        storage.store.clone(),
        metrics.clone(),
    ));
    let public = Arc::new(PublicUrl::parse(&args.public_url()?).map_err(anyhow::Error::msg)?);
    let keyring = Keyring::load_or_create(storage).await?;
    let passkeys = Passkeys::new(&public)?;
    let http = crate::http_client::new()?;
    let subject = match &args.push_subject {
        Some(subject) => subject.clone(),
        None if public.url.scheme() == "https" => public.origin.clone(),
        None => "mailto:handsign@localhost".to_owned(),
    };
    let events = storage.events.clone();
    let deliveries = Deliveries::new();
    let notifier = Notifier::new(
        store.clone(),
        public.clone(),
        PushSettings {
            vapid: VapidKey::load_or_create(storage).await?,
            subject,
            allow_http_endpoints: args.danger_allow_http_push_endpoints,
            allow_private_endpoints: args.danger_allow_private_push_endpoints,
            max_devices_per_user: args.max_devices_per_user,
            http: crate::http_client::for_push(args.danger_allow_private_push_endpoints)?,
        },
        Webhooks::new(http, args.webhooks.webhooks.clone(), RetryPolicy::default()),
        events.clone(),
        deliveries.clone(),
        clock.clone(),
    );
    let approvals = Approvals::new(store.clone(), events.clone(), notifier.clone());
    Ok(AppState {
        approvals,
        store,
        keyring: Arc::new(keyring),
        passkeys: Arc::new(passkeys),
        public,
        limits: Arc::new(args.limits.clone()),
        connection_limits: Arc::new(args.connections.clone()),
        token_lifetime: args.token_lifetime,
        clock,
        events,
        notifier,
        deliveries,
        metrics,
        metrics_access: Arc::new(MetricsAccess::from_args(&args.metrics)?),
    })
}

/// A future that resolves on Ctrl-C (SIGINT) or SIGTERM. The handlers are installed now, not at
/// the first poll, so a signal that arrives as soon as the gateway says it listens still shuts it
/// down gracefully.
pub fn shutdown_signal() -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {},
            _ = terminate.recv() => {},
        }
        tracing::info!("shutting down");
    })
}
