//! What the middleware answers instead of running the handler, built in one place.
//!
//! A refused token gets `401` with `WWW-Authenticate: Approval error="<code>",
//! error_description="<message>"` and the same as JSON `{"error", "message"}`, so that an agent
//! or a service author can tell which check failed without reading the service's logs. When
//! something the decision depends on is down (the replay store, the gateway's keys) the answer
//! is `503` with `Retry-After`: the middleware fails closed, and does not blame the token.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use handsign_protocol::token::TokenError;

/// The `error` codes the middleware answers with, besides the token checks'
/// [`TokenError::code`]s (`malformed_token`, `wrong_alg`, `wrong_typ`, `unknown_kid`,
/// `bad_signature`, `malformed_claims`, `wrong_issuer`, `wrong_audience`, `expired`,
/// `not_yet_valid`, `lifetime_too_long`, `action_mismatch`, `params_mismatch`).
pub mod codes {
    /// 401: no `Authorization: Approval <token>` header (or another scheme, or several).
    pub const MISSING_TOKEN: &str = "missing_token";
    /// 401: the route's params could not be taken from the request, or are not JSON that RFC
    /// 8785 represents exactly (duplicate keys, imprecise numbers, over the limits).
    pub const INVALID_PARAMS: &str = "invalid_params";
    /// 401: a key-bound token came without a `DPoP` header, or an unbound token came to a
    /// service that accepts key-bound tokens only.
    pub const DPOP_REQUIRED: &str = "dpop_required";
    /// 401: the DPoP proof does not verify for this method, URL, time and token (`ath`).
    pub const INVALID_DPOP: &str = "invalid_dpop";
    /// 401: the DPoP proof is valid but made with another key than the token's `cnf.jkt`.
    pub const DPOP_KEY_MISMATCH: &str = "dpop_key_mismatch";
    /// 401: the DPoP proof was accepted once already (with this token, which is then used up).
    pub const DPOP_REPLAYED: &str = "dpop_replayed";
    /// 401: the token could have been accepted before the replay store's record began (a
    /// store in memory, emptied when the service started), so its single use cannot be
    /// vouched for.
    pub const ISSUED_BEFORE_START: &str = "issued_before_start";
    /// 401: the token was accepted once already.
    pub const TOKEN_REPLAYED: &str = "token_replayed";
    /// 415: the route takes its params from a JSON body, and the request's `Content-Type` is
    /// not JSON (`application/json` or `application/*+json`).
    pub const UNSUPPORTED_MEDIA_TYPE: &str = "unsupported_media_type";
    /// 413: the body is larger than the route's limit.
    pub const BODY_TOO_LARGE: &str = "body_too_large";
    /// 400: the body could not be read (the client broke off), or is not what the route's
    /// handler reads ([`ApprovalLayer::body_parses_as`](crate::ApprovalLayer::body_parses_as)).
    pub const INVALID_BODY: &str = "invalid_body";
    /// 503: the gateway's keys could not be fetched while the token names a key not yet known.
    pub const KEYS_UNAVAILABLE: &str = "keys_unavailable";
    /// 503: the replay store could not be reached, so the token's single use cannot be recorded.
    pub const REPLAY_STORE_UNAVAILABLE: &str = "replay_store_unavailable";
    /// 500: a handler asked for [`Approved`](crate::Approved) on a route without the approval
    /// layer: a mistake in the service's routing, refused rather than run unchecked.
    pub const APPROVAL_LAYER_MISSING: &str = "approval_layer_missing";
}

/// Longest `error_description` put in the header; the JSON body carries the whole message.
const MAX_DESCRIPTION_CHARS: usize = 400;

/// Why a request was not passed to the handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// 401 with `WWW-Authenticate`.
    Unauthorized { code: &'static str, message: String },
    /// 413.
    BodyTooLarge { limit: usize },
    /// 415.
    UnsupportedMediaType { message: String },
    /// 400.
    InvalidBody { message: String },
    /// 503 with `Retry-After`; the message is for the client and never holds internals.
    Unavailable {
        code: &'static str,
        message: &'static str,
        retry_after_secs: u64,
    },
}

impl Refusal {
    pub(crate) fn unauthorized(code: &'static str, message: impl Into<String>) -> Self {
        Refusal::Unauthorized {
            code,
            message: message.into(),
        }
    }

    /// Whether the request was refused because something could not be checked (503), rather
    /// than because a check failed.
    pub(crate) fn is_unavailable(&self) -> bool {
        matches!(self, Refusal::Unavailable { .. })
    }

    pub(crate) fn code(&self) -> &'static str {
        match self {
            Refusal::Unauthorized { code, .. } | Refusal::Unavailable { code, .. } => code,
            Refusal::BodyTooLarge { .. } => codes::BODY_TOO_LARGE,
            Refusal::UnsupportedMediaType { .. } => codes::UNSUPPORTED_MEDIA_TYPE,
            Refusal::InvalidBody { .. } => codes::INVALID_BODY,
        }
    }

    fn message(&self) -> String {
        match self {
            Refusal::Unauthorized { message, .. }
            | Refusal::InvalidBody { message }
            | Refusal::UnsupportedMediaType { message } => message.clone(),
            Refusal::BodyTooLarge { limit } => {
                format!("the request body is larger than this route's limit of {limit} bytes")
            }
            Refusal::Unavailable { message, .. } => (*message).to_owned(),
        }
    }
}

impl From<TokenError> for Refusal {
    fn from(error: TokenError) -> Self {
        Refusal::unauthorized(error.code(), error.to_string())
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let code = self.code();
        let message = self.message();
        let body = Json(serde_json::json!({ "error": code, "message": message }));
        match self {
            Refusal::Unauthorized { .. } => {
                let challenge = format!(
                    "Approval error={}, error_description={}",
                    quoted(code),
                    quoted(&message)
                );
                let challenge = HeaderValue::from_str(&challenge)
                    .unwrap_or_else(|_| HeaderValue::from_static("Approval"));
                (
                    StatusCode::UNAUTHORIZED,
                    [(header::WWW_AUTHENTICATE, challenge)],
                    body,
                )
                    .into_response()
            }
            Refusal::BodyTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, body).into_response(),
            Refusal::UnsupportedMediaType { .. } => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, body).into_response()
            }
            Refusal::InvalidBody { .. } => (StatusCode::BAD_REQUEST, body).into_response(),
            Refusal::Unavailable {
                retry_after_secs, ..
            } => (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, HeaderValue::from(retry_after_secs))],
                body,
            )
                .into_response(),
        }
    }
}

/// `value` as an HTTP quoted-string (RFC 9110 section 5.6.4): quotes and backslashes escaped,
/// characters a header cannot carry (controls, non-ASCII) replaced by `?`, and cut to
/// [`MAX_DESCRIPTION_CHARS`], so that no message (some quote what the client sent) can break
/// out of the parameter or make the header invalid.
fn quoted(value: &str) -> String {
    let mut out = String::with_capacity(value.len().min(MAX_DESCRIPTION_CHARS) + 8);
    out.push('"');
    for (i, c) in value.chars().enumerate() {
        if i == MAX_DESCRIPTION_CHARS {
            out.push_str("...");
            break;
        }
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => out.push('?'),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_escapes_quotes_backslashes_and_unprintables() {
        assert_eq!(quoted(r#"a "b" \c"#), r#""a \"b\" \\c""#);
        assert_eq!(quoted("é\r\n\u{202e}x"), r#""????x""#);
        assert_eq!(quoted(&"x".repeat(1000)).len(), MAX_DESCRIPTION_CHARS + 5);
    }

    #[test]
    fn unauthorized_names_the_check_in_header_and_body() {
        let response =
            Refusal::unauthorized(codes::TOKEN_REPLAYED, r#"used "once""#).into_response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            response.headers()[header::WWW_AUTHENTICATE],
            r#"Approval error="token_replayed", error_description="used \"once\"""#
        );
    }
}
