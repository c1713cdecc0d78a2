//! Documents anyone may read: health, readiness and the gateway's public keys.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};

use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/.well-known/jwks.json", get(jwks))
        .route("/favicon.ico", get(no_favicon))
}

/// The process is up.
async fn healthz() -> &'static str {
    "ok\n"
}

/// The gateway can serve: its store answers.
async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    match state.store.ping().await {
        Ok(()) => (StatusCode::OK, "ready\n".to_owned()),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {e}\n")),
    }
}

/// Browsers ask for it on every page; there is none, and saying so plainly keeps their logs clean.
async fn no_favicon() -> impl IntoResponse {
    (
        StatusCode::NO_CONTENT,
        [(header::CACHE_CONTROL, "public, max-age=86400")],
    )
}

async fn jwks(State(state): State<AppState>) -> impl IntoResponse {
    (
        // Short, so that a rotation reaches verifiers quickly.
        [(header::CACHE_CONTROL, "public, max-age=60")],
        Json(state.keyring.jwks()),
    )
}
