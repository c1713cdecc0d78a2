//! The gateway's HTTP server: the router, the headers every answer carries, and `run`, which
//! serves an already bound listener until a shutdown signal (so tests start it on port 0).

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use tokio::net::TcpListener;

use crate::config::{PublicUrl, ServeArgs};
use crate::keyring::Keyring;
use crate::metrics::Metrics;
use crate::notify::webhooks::{RetryPolicy, Webhooks};
use crate::notify::webpush::VapidKey;
use crate::notify::{Notifier, PushSettings};
use crate::passkeys::Passkeys;
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

/// Every route of the gateway.
pub fn router(state: AppState) -> Router {
    let max_body = state.limits.max_body_bytes;
    Router::new()
        .merge(routes::public::router())
        .merge(routes::agents::router())
        .merge(routes::approve::router())
        .merge(routes::webauthn::router())
        .merge(routes::push::router())
        .merge(routes::dashboard::router())
        .merge(crate::pages::static_files())
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn(security_headers))
        .with_state(state)
}

async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
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

/// Serves `state` on `listener` until `shutdown` completes, then finishes the requests in flight.
pub async fn run(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Builds the gateway's state from its configuration and storage: signing key, store, events. Every
/// use of `store` by the gateway goes through an [`InstrumentedStore`] that records it in the
/// state's metrics.
pub async fn open(args: &ServeArgs, storage: &Storage) -> anyhow::Result<AppState> {
    let metrics = Arc::new(Metrics::new(instrumented::OPERATIONS));
    let store: Arc<dyn Store> = Arc::new(InstrumentedStore::new(
        storage.store.clone(),
        metrics.clone(),
    ));
    let public = Arc::new(PublicUrl::parse(&args.public_url).map_err(anyhow::Error::msg)?);
    let keyring = Keyring::load_or_create(storage).await?;
    let passkeys = Passkeys::new(&public)?;
    let http = crate::http_client::new()?;
    let subject = match &args.push_subject {
        Some(subject) => subject.clone(),
        None if public.url.scheme() == "https" => public.origin.clone(),
        None => "mailto:handsign@localhost".to_owned(),
    };
    let events = storage.events.clone();
    let notifier = Notifier::new(
        store.clone(),
        public.clone(),
        PushSettings {
            vapid: VapidKey::load_or_create(storage).await?,
            subject,
            allow_http_endpoints: args.danger_allow_http_push_endpoints,
        },
        http.clone(),
        Webhooks::new(http, args.webhooks.webhooks.clone(), RetryPolicy::default()),
        events.clone(),
    );
    Ok(AppState {
        store,
        keyring: Arc::new(keyring),
        passkeys: Arc::new(passkeys),
        public,
        limits: Arc::new(args.limits.clone()),
        token_lifetime: args.token_lifetime,
        events,
        notifier,
        metrics,
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
