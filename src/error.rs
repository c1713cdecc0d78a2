//! The gateway's error answers: one type, turned into an HTTP response in one place.
//!
//! Every 4xx says what was wrong and how to fix it; a 5xx never carries internals (they are
//! logged instead). Storage failures become 503, so that no caller mistakes "could not check" for
//! "checked".

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use handsign_protocol::api::{ErrorBody, ErrorCode};

use crate::store::StoreError;

/// An error answer: status, a stable machine-readable code, and a message for people.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub message: String,
    /// Seconds, for `Retry-After` on 429 and 503.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn bad_request(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            format!("{what} not found"),
        )
    }

    pub fn forbidden(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, message)
    }

    pub fn conflict(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }

    pub fn unauthorized(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, code, message)
    }

    /// A failure of ours: logged with its detail, answered without it.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(%detail, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::InternalError,
            "the gateway failed to handle this request; nothing was decided or issued",
        )
    }

    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(detail) => {
                tracing::error!(%detail, "storage unavailable");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorCode::StorageUnavailable,
                    "the gateway's storage is unavailable; nothing was decided or issued, try again shortly",
                )
                .with_retry_after(5)
            }
            StoreError::AlreadyExists(what) => {
                ApiError::conflict(ErrorCode::AlreadyExists, format!("{what} already exists"))
            }
            StoreError::NotFound(what) => ApiError::not_found(what),
            StoreError::InvalidInvitation => ApiError::forbidden(
                ErrorCode::InvalidInvitation,
                "the setup or invitation code is unknown, already used or expired; ask for a new one",
            ),
            StoreError::TooManyPending { limit } => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::TooManyPending,
                format!(
                    "this agent already has {limit} pending requests, the most it may have; wait for decisions before asking again"
                ),
            )
            .with_retry_after(30),
            StoreError::TooManyEnrollments { limit } => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::TooManyEnrollments,
                format!(
                    "{limit} agents are already waiting for this user to decide their enrollment, the most there may be; try again once they are decided or expired"
                ),
            )
            .with_retry_after(60),
            StoreError::AgentInactive(status) => ApiError::forbidden(
                ErrorCode::AgentInactive,
                format!("the agent is {} and cannot do this", status.as_str()),
            ),
            StoreError::NotPending(status) => ApiError::conflict(
                ErrorCode::NotPending,
                format!("the request is {} and can no longer be decided", status.as_str()),
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            Json(ErrorBody {
                error: self.code,
                message: self.message,
            }),
        )
            .into_response();
        if let Some(seconds) = self.retry_after
            && let Ok(value) = HeaderValue::from_str(&seconds.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    }
}
