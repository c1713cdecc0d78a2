//! HTTP routes, one module per audience: agents (`/v1`), the person deciding (`/approve`),
//! passkey ceremonies (`/webauthn`), and the gateway's public documents (health, JWKS, the
//! OpenAPI description).

pub mod agents;
pub mod approve;
pub mod dashboard;
pub mod openapi;
pub mod public;
pub mod push;
pub mod webauthn;

use axum::http::{HeaderMap, StatusCode, header};
use handsign_protocol::api::ErrorCode;
use handsign_protocol::base64url;
use serde::de::DeserializeOwned;
use webauthn_rs::prelude::{AuthenticationResult, Passkey, PublicKeyCredential};

use crate::domain::{PasskeyRecord, UserId};
use crate::error::ApiError;
use crate::state::AppState;

/// Parses a JSON request body, saying what was wrong when it cannot.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(
            ErrorCode::InvalidJson,
            format!("the request body is not valid: {e}"),
        )
    })
}

/// Refuses a browser request that does not come from the gateway's own origin: state-changing
/// browser endpoints must not be reachable from another site's page.
pub fn require_same_origin(headers: &HeaderMap, origin: &str) -> Result<(), ApiError> {
    match headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        Some(sent) if sent == origin => Ok(()),
        Some(sent) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::BadOrigin,
            format!("requests must come from {origin}, not {sent}"),
        )),
        None => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::BadOrigin,
            format!("requests must come from {origin} and carry an Origin header"),
        )),
    }
}

/// webauthn-rs's view of `user`'s passkeys: what a ceremony for that user may use.
pub async fn passkeys_of(state: &AppState, user: &UserId) -> Result<Vec<Passkey>, ApiError> {
    Ok(state
        .store
        .passkeys(user)
        .await?
        .into_iter()
        .map(|record| record.passkey)
        .collect())
}

/// After webauthn-rs accepted an assertion: the stored passkey it was made with, which must be
/// `user`'s (found by credential id; the `userHandle` a client sends is never trusted), saved with
/// its new counter and time of use.
pub async fn record_passkey_use(
    state: &AppState,
    user: &UserId,
    credential: &PublicKeyCredential,
    result: &AuthenticationResult,
    now: i64,
) -> Result<PasskeyRecord, ApiError> {
    let credential_id = base64url::encode(&credential.raw_id);
    let mut passkey = match state.store.passkey(&credential_id).await? {
        Some(passkey) if passkey.user == *user => passkey,
        _ => {
            return Err(ApiError::forbidden(
                ErrorCode::PasskeyRefused,
                format!("this passkey is not one of {user}'s"),
            ));
        }
    };
    passkey.passkey.update_credential(result);
    passkey.last_used_at = Some(now);
    state.store.update_passkey(&passkey).await?;
    Ok(passkey)
}
