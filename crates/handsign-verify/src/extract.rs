//! The [`Approved`] extractor: the handler's view of the approval it runs under.

use std::ops::Deref;

use axum::Json;
use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use handsign_protocol::token::ApprovalClaims;

use handsign_protocol::api::ErrorCode;

/// The verified claims of the token the request was accepted with: who approved (`sub`), which
/// agent acted (`act.sub`), the approval id (`approval`, which leads to the receipt), and the
/// action and `params_sha256` this request matched.
///
/// Only the [`ApprovalLayer`](crate::ApprovalLayer) puts claims in a request, after every check
/// passed and the token was consumed. On a route without the layer this extractor refuses the
/// request with `500 approval_layer_missing` rather than let the handler run unapproved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approved(pub ApprovalClaims);

impl Deref for Approved {
    type Target = ApprovalClaims;

    fn deref(&self) -> &ApprovalClaims {
        &self.0
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Approved {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        match parts.extensions.get::<ApprovalClaims>() {
            Some(claims) => Ok(Approved(claims.clone())),
            None => {
                tracing::error!(
                    path = %parts.uri.path(),
                    "a handler asked for Approved on a route without the approval layer"
                );
                Err((
                    StatusCode::INTERNAL_SERVER_ERROR,
                    Json(serde_json::json!({
                        "error": ErrorCode::ApprovalLayerMissing,
                        "message": "this route is not configured to check approvals",
                    })),
                )
                    .into_response())
            }
        }
    }
}
