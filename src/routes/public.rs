//! Documents anyone may read: health, readiness and the gateway's public keys; and the metrics,
//! which the operator may serve on their own listener or behind a bearer token.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use handsign_protocol::api::ErrorCode;
use handsign_protocol::keys::Jwks;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::error::ApiError;
use crate::metrics;
use crate::state::AppState;

/// Health, readiness and the public keys, each registered with its OpenAPI description
/// (`tag = "gateway"`).
pub fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(jwks))
}

/// What browsers ask for on their own.
pub fn router() -> Router<AppState> {
    Router::new().route("/favicon.ico", get(no_favicon))
}

/// `GET /metrics`: on the gateway's listener, or alone on the metrics listener.
pub fn metrics_router() -> Router<AppState> {
    Router::new().route("/metrics", get(metrics))
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "gateway",
    responses((status = 200, description = "`ok`", content_type = "text/plain", body = String)))]
async fn healthz() -> &'static str {
    "ok\n"
}

/// The gateway can serve: its store answers.
#[utoipa::path(get, path = "/readyz", tag = "gateway",
    responses((status = 200, description = "`ready`: the store answers", content_type = "text/plain", body = String),
        (status = 503, description = "`not ready: ` and why", content_type = "text/plain", body = String)))]
async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    match state.store.ping().await {
        Ok(()) => (StatusCode::OK, "ready\n".to_owned()),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {e}\n")),
    }
}

/// The gateway's metrics (see [`crate::metrics`]): counts and durations only, labelled by fixed
/// enumerations, so the page names no one; with a metrics token, only for requests carrying it.
/// The pending requests are counted in the store now; when it cannot count, that one gauge is
/// left out and the rest still served.
async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if !state.metrics_access.allows(&headers) {
        let mut refused = ApiError::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::MetricsTokenRequired,
            "the metrics need the operator's metrics token: Authorization: Bearer TOKEN",
        )
        .into_response();
        refused.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            axum::http::HeaderValue::from_static("Bearer"),
        );
        return refused;
    }
    let pending = match state.store.pending_count(state.clock.now()).await {
        Ok(pending) => Some(pending),
        Err(error) => {
            tracing::warn!(%error, "metrics: the store could not count pending requests");
            None
        }
    };
    match state.metrics.encode(pending) {
        Ok(text) => ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], text).into_response(),
        Err(error) => ApiError::internal(error).into_response(),
    }
}

/// Browsers ask for it on every page; there is none, and saying so plainly keeps their logs clean.
async fn no_favicon() -> impl IntoResponse {
    (
        StatusCode::NO_CONTENT,
        [(header::CACHE_CONTROL, "public, max-age=86400")],
    )
}

/// The keys approval tokens and receipts are signed with (RFC 7517), for verifiers.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "gateway",
    responses((status = 200, description = "the current signing key first; cacheable for 60 seconds", body = Jwks)))]
async fn jwks(
    State(state): State<AppState>,
) -> ([(header::HeaderName, &'static str); 1], Json<Jwks>) {
    (
        // Short, so that a rotation reaches verifiers quickly.
        [(header::CACHE_CONTROL, "public, max-age=60")],
        Json(state.keyring.jwks()),
    )
}
