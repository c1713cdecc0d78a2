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
use handsign_protocol::api::{ErrorBody, ErrorCode};
use handsign_protocol::token::TokenError;

/// Longest `error_description` put in the header; the JSON body carries the whole message.
const MAX_DESCRIPTION_CHARS: usize = 400;

/// Why a request was not passed to the handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// 401 with `WWW-Authenticate`.
    Unauthorized { code: ErrorCode, message: String },
    /// 413.
    BodyTooLarge { limit: usize },
    /// 415.
    UnsupportedMediaType { message: String },
    /// 400.
    InvalidBody { message: String },
    /// 503 with `Retry-After`; the message is for the client and never holds internals.
    Unavailable {
        code: ErrorCode,
        message: &'static str,
        retry_after_secs: u64,
    },
}

impl Refusal {
    pub(crate) fn unauthorized(code: ErrorCode, message: impl Into<String>) -> Self {
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

    pub(crate) fn code(&self) -> ErrorCode {
        match self {
            Refusal::Unauthorized { code, .. } | Refusal::Unavailable { code, .. } => *code,
            Refusal::BodyTooLarge { .. } => ErrorCode::BodyTooLarge,
            Refusal::UnsupportedMediaType { .. } => ErrorCode::UnsupportedMediaType,
            Refusal::InvalidBody { .. } => ErrorCode::InvalidBody,
        }
    }

    pub(crate) fn message(&self) -> String {
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
        let body = Json(ErrorBody {
            error: code,
            message: message.clone(),
        });
        match self {
            Refusal::Unauthorized { .. } => {
                let challenge = format!(
                    "Approval error={}, error_description={}",
                    quoted(code.as_str()),
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
            Refusal::unauthorized(ErrorCode::TokenReplayed, r#"used "once""#).into_response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            response.headers()[header::WWW_AUTHENTICATE],
            r#"Approval error="token_replayed", error_description="used \"once\"""#
        );
    }
}
