//! Every `error` code the gateway and the service middleware answer with, as one enum, so that
//! the gateway writes, and clients read, the same words.

use serde::{Deserialize, Serialize};

/// An error answer's body: `{"error": "<code>", "message": "<what was wrong and what to do>"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    pub error: ErrorCode,
    pub message: String,
}

/// Generates [`ErrorCode`] with its wire names, so that a code and its text cannot disagree.
macro_rules! error_codes {
    ($($(#[$doc:meta])* $variant:ident = $text:literal,)*) => {
        /// The stable, machine-readable `error` of an error answer. A client meets
        /// [`ErrorCode::Unknown`] for a code this version does not know (a newer gateway or
        /// middleware), and should then act on the HTTP status.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[serde(rename_all = "snake_case")]
        pub enum ErrorCode {
            $($(#[$doc])* $variant,)*
            /// A code this version does not know; never sent.
            #[serde(other)]
            Unknown,
        }

        impl ErrorCode {
            /// Every code that is sent, in declaration order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The code as it appears on the wire.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $text,)*
                    ErrorCode::Unknown => "unknown",
                }
            }
        }
    };
}

error_codes! {
    // The gateway: requests and their parts.
    /// 400: the body is not the JSON the call takes.
    InvalidJson = "invalid_json",
    /// 400 or 413: params RFC 8785 cannot represent exactly, or over the limits; also the
    /// middleware's 401 when a request's params are not such JSON.
    InvalidParams = "invalid_params",
    InvalidAction = "invalid_action",
    InvalidAudience = "invalid_audience",
    InvalidMessage = "invalid_message",
    InvalidTtl = "invalid_ttl",
    InvalidWait = "invalid_wait",
    /// 400: a cancellation's reason is too long.
    InvalidReason = "invalid_reason",
    InvalidUser = "invalid_user",
    InvalidName = "invalid_name",
    InvalidSubscription = "invalid_subscription",
    /// 403: the agent asks for a user it does not act for.
    WrongUser = "wrong_user",
    NotFound = "not_found",
    AlreadyExists = "already_exists",
    AlreadyEnrolled = "already_enrolled",
    NameTaken = "name_taken",
    /// 409: an agent whose enrollment is undecided cannot be suspended or resumed.
    EnrollmentPending = "enrollment_pending",
    /// 409: the request was decided, expired or cancelled already.
    NotPending = "not_pending",
    /// 409: a receipt exists once a person has decided.
    NotDecided = "not_decided",
    // The gateway: agents' authentication.
    DpopRequired = "dpop_required",
    InvalidDpopProof = "invalid_dpop_proof",
    DpopReplay = "dpop_replay",
    UnknownAgent = "unknown_agent",
    AgentNotEnrolled = "agent_not_enrolled",
    AgentSuspended = "agent_suspended",
    AgentRevoked = "agent_revoked",
    AgentInactive = "agent_inactive",
    // The gateway: limits.
    RateLimited = "rate_limited",
    TooManyPending = "too_many_pending",
    TooManyEnrollments = "too_many_enrollments",
    TooManyDevices = "too_many_devices",
    // The gateway: people, sessions and passkey ceremonies.
    LoginRequired = "login_required",
    AdminRequired = "admin_required",
    StepUpRequired = "step_up_required",
    BadOrigin = "bad_origin",
    InvalidInvitation = "invalid_invitation",
    NoCeremony = "no_ceremony",
    NoPasskeys = "no_passkeys",
    PasskeyRefused = "passkey_refused",
    /// 409: an operator's change was refused by the running gateway.
    Refused = "refused",
    NoClientAddress = "no_client_address",
    MetricsTokenRequired = "metrics_token_required",
    // The gateway: failures of its own.
    /// 503: nothing was decided or issued.
    StorageUnavailable = "storage_unavailable",
    InternalError = "internal_error",
    // The service middleware (`handsign-verify`): the token's checks.
    MalformedToken = "malformed_token",
    WrongAlg = "wrong_alg",
    WrongTyp = "wrong_typ",
    UnknownKid = "unknown_kid",
    BadSignature = "bad_signature",
    MalformedClaims = "malformed_claims",
    WrongIssuer = "wrong_issuer",
    WrongAudience = "wrong_audience",
    Expired = "expired",
    NotYetValid = "not_yet_valid",
    LifetimeTooLong = "lifetime_too_long",
    ActionMismatch = "action_mismatch",
    ParamsMismatch = "params_mismatch",
    // The service middleware: the request around the token.
    /// 401: no `Authorization: Approval <token>` header.
    MissingToken = "missing_token",
    /// 401: the DPoP proof does not verify for this method, URL, time and token.
    InvalidDpop = "invalid_dpop",
    /// 401: the DPoP proof is made with another key than the token's `cnf.jkt`.
    DpopKeyMismatch = "dpop_key_mismatch",
    /// 401: the DPoP proof was accepted once already.
    DpopReplayed = "dpop_replayed",
    /// 401: the token may have been accepted before the replay store's record began.
    IssuedBeforeStart = "issued_before_start",
    /// 401: the token was accepted once already.
    TokenReplayed = "token_replayed",
    /// 415: the route takes JSON and the request's `Content-Type` is not JSON.
    UnsupportedMediaType = "unsupported_media_type",
    /// 413: the body is larger than the route's limit.
    BodyTooLarge = "body_too_large",
    /// 400: the body could not be read, or is not what the route's handler reads.
    InvalidBody = "invalid_body",
    /// 503: the gateway's keys could not be fetched for a key not yet known.
    KeysUnavailable = "keys_unavailable",
    /// 503: the replay store could not be reached.
    ReplayStoreUnavailable = "replay_store_unavailable",
    /// 500: a handler asked for the approval on a route without the approval layer.
    ApprovalLayerMissing = "approval_layer_missing",
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_serializes_as_its_text_and_back() {
        for code in ErrorCode::ALL {
            let json = serde_json::to_value(code).unwrap();
            assert_eq!(json, serde_json::Value::String(code.as_str().to_owned()));
            assert_eq!(serde_json::from_value::<ErrorCode>(json).unwrap(), *code);
        }
        let unknown: ErrorCode = serde_json::from_str("\"from_a_newer_gateway\"").unwrap();
        assert_eq!(unknown, ErrorCode::Unknown);
    }
}
