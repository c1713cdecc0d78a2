//! Browser sessions: a random cookie whose hash is stored, set after a passkey ceremony.
//!
//! The cookie is HttpOnly (no script reads it), SameSite=Strict (no other site's page sends it),
//! and Secure whenever the gateway is served over https.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use handsign_protocol::api::ErrorCode;
use sha2::{Digest as _, Sha256};

use crate::domain::{SessionRecord, UserId, random_bytes};
use crate::error::ApiError;
use crate::state::AppState;

const COOKIE: &str = "handsign_session";
/// How long a login lasts.
pub const SESSION_SECS: i64 = 12 * 3600;

/// Starts a session for `user`; returns the `Set-Cookie` value.
pub async fn start(state: &AppState, user: &UserId) -> Result<HeaderValue, ApiError> {
    let secret =
        handsign_protocol::base64url::encode(random_bytes::<32>().map_err(ApiError::internal)?);
    state
        .store
        .put_session(&SessionRecord {
            id_sha256: hash(&secret),
            user: user.clone(),
            expires_at: state.clock.now() + SESSION_SECS,
        })
        .await?;
    cookie(state, &secret, SESSION_SECS)
}

/// Ends the session this request carries, if any: deletes it from the store and returns the
/// `Set-Cookie` value that clears the cookie. A browser whose session already ended is logged
/// out all the same.
pub async fn end(state: &AppState, headers: &HeaderMap) -> Result<HeaderValue, ApiError> {
    if let Some(secret) = cookie_value(headers) {
        state.store.delete_session(&hash(secret)).await?;
    }
    cookie(state, "", 0)
}

fn cookie(state: &AppState, value: &str, max_age: i64) -> Result<HeaderValue, ApiError> {
    set_cookie(state.public.url.scheme() == "https", value, max_age)
}

/// The `Set-Cookie` value: `Secure` whenever the gateway is served over https.
fn set_cookie(https: bool, value: &str, max_age: i64) -> Result<HeaderValue, ApiError> {
    let secure = if https { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
    ))
    .map_err(ApiError::internal)
}

fn hash(secret: &str) -> String {
    handsign_protocol::base64url::encode(Sha256::digest(secret.as_bytes()))
}

fn cookie_value(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(COOKIE)?.strip_prefix('='))
}

/// A logged-in user.
#[derive(Debug, Clone)]
pub struct SessionUser(pub UserId);

impl FromRequestParts<AppState> for SessionUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let not_logged_in =
            || ApiError::unauthorized(ErrorCode::LoginRequired, "log in with a passkey first");
        let secret = cookie_value(&parts.headers).ok_or_else(not_logged_in)?;
        let session = state
            .store
            .session(&hash(secret), state.clock.now())
            .await?
            .ok_or_else(not_logged_in)?;
        Ok(SessionUser(session.user))
    }
}

/// The logged-in user, if any; a store failure is still an error, not "logged out".
impl axum::extract::OptionalFromRequestParts<AppState> for SessionUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Option<Self>, ApiError> {
        match <SessionUser as FromRequestParts<AppState>>::from_request_parts(parts, state).await {
            Ok(user) => Ok(Some(user)),
            Err(e) if e.code == ErrorCode::LoginRequired => Ok(None),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_secure_over_https_only() {
        let https = set_cookie(true, "v", 60).unwrap();
        assert_eq!(
            https,
            "handsign_session=v; Path=/; HttpOnly; SameSite=Strict; Max-Age=60; Secure"
        );
        let http = set_cookie(false, "v", 60).unwrap();
        assert!(!http.to_str().unwrap().contains("Secure"));
    }
}
