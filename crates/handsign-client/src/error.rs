//! What can go wrong when asking for an approval, waiting for it, or calling a service.
//!
//! The outcomes a person (or the clock) decides are variants of their own, so that an agent can
//! tell "no" from "not yet" from "could not ask", and react to each: a denial is an answer to
//! respect, an expiry may be asked again, an unreachable gateway may be retried later.

use handsign_protocol::api::ErrorCode;

/// Why no approval token came back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApprovalError {
    /// The person denied the request with their passkey.
    #[error("the request was denied")]
    Denied,
    /// Nobody decided before the request's `ttl` ran out, or it was approved but not collected
    /// within the gateway's collection window.
    #[error("the request expired before it was decided and collected")]
    Expired,
    /// The request was cancelled: by the agent itself, or by the gateway because the agent was
    /// revoked. `reason` is the gateway's words for why (`agent revoked`, or the reason the
    /// agent gave).
    #[error("the request was cancelled{}", reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default())]
    Cancelled { reason: Option<String> },
    /// The caller's own deadline passed with the request still pending. After
    /// [`wait_timeout`](crate::PendingApproval::wait_timeout) the request stays pending at the
    /// gateway: wait on it again to collect it, do not ask again.
    /// [`wait_or_cancel`](crate::PendingApproval::wait_or_cancel) has cancelled it instead.
    #[error("no decision before the deadline; the request is still pending")]
    TimedOut,
    /// The gateway answered with an error (`{"error", "message"}`); `code` is its stable code,
    /// e.g. [`ErrorCode::InvalidAction`] or [`ErrorCode::UnknownAgent`], and
    /// [`ErrorCode::Unknown`] for an answer not in the gateway's format (a proxy's) or a code
    /// this version does not know.
    #[error("the gateway refused ({status} {code}): {message}")]
    Refused {
        status: u16,
        code: ErrorCode,
        message: String,
    },
    /// The gateway could not be reached, or the connection kept breaking, after the retries
    /// of the client's [`RetryPolicy`](crate::RetryPolicy).
    #[error("the gateway is unreachable: {0}")]
    Unreachable(String),
    /// The request was approved, but its token was delivered to an earlier read (another
    /// `wait`, another process with this key, or an answer lost on a broken connection). The
    /// gateway hands a token out exactly once, so this request can no longer be used: ask again.
    #[error(
        "the request was approved, but its token was already collected by an earlier read and is never returned twice; ask for a new approval"
    )]
    TokenAlreadyCollected,
    /// The gateway answered something the protocol does not allow (not JSON, a missing member,
    /// a params hash other than that of the params sent, a token for another request or key).
    /// Nothing in such an answer is trusted.
    #[error("the gateway's answer breaks the protocol: {0}")]
    BadAnswer(String),
    /// This process could not make a DPoP proof (no randomness from the operating system).
    #[error("cannot make a DPoP proof: {0}")]
    Proof(String),
}

/// Why a service request could not be given its approval headers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthorizeError {
    #[error("cannot make a DPoP proof: {0}")]
    Proof(String),
    #[error("the token cannot be sent in an HTTP header (it is not a compact JWS)")]
    InvalidToken,
}

/// Why a [`Client`](crate::Client) could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    #[error("invalid gateway URL {url:?}: {reason} (expected e.g. https://handsign.example.com)")]
    InvalidGatewayUrl { url: String, reason: String },
    #[error("cannot build the HTTP client: {0}")]
    Http(String),
}
