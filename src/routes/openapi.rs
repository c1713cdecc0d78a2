//! `GET /openapi.json`: the OpenAPI 3.1 description of the agent API, the passkey ceremonies,
//! the push subscriptions, and the gateway's health and public keys. Their routes are registered
//! through utoipa-axum's router from the same `#[utoipa::path]` annotations the description is
//! generated from, and the bodies are `handsign_protocol`'s types, so the description cannot
//! drift from what is served.

use std::sync::Arc;

use axum::routing::get;
use axum::{Json, Router};
use utoipa::openapi::{InfoBuilder, OpenApi, OpenApiBuilder};
use utoipa_axum::router::OpenApiRouter;

use crate::routes::{agents, approve, public, push, webauthn};
use crate::state::AppState;

/// Where the description is served.
pub const PATH: &str = "/openapi.json";

/// The described routes, and the description of exactly them.
pub fn described() -> (Router<AppState>, OpenApi) {
    let info = InfoBuilder::new()
        .title("Handsign")
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some(
            "Passkey approvals for AI agents: the agent API (every call carries a DPoP proof, \
             RFC 9449, EdDSA), the passkey ceremonies, the logged-in person's push \
             subscriptions (session cookie), and the gateway's health and public keys (JWKS). \
             Errors are `ErrorBody`. See docs/protocol.md.",
        ))
        .build();
    OpenApiRouter::with_openapi(OpenApiBuilder::new().info(info).build())
        .merge(agents::router())
        .merge(approve::api())
        .merge(webauthn::router())
        .merge(push::router())
        .merge(public::api())
        .split_for_parts()
}

/// The described routes with the description served at [`PATH`].
pub fn router() -> Router<AppState> {
    let (router, description) = described();
    let description = Arc::new(description);
    router.route(
        PATH,
        get(move || {
            let description = description.clone();
            async move { Json(description.as_ref().clone()) }
        }),
    )
}
