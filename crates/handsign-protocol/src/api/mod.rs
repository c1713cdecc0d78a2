//! The gateway's HTTP API as types: what agents and browsers send, what the gateway answers,
//! and every error code. The gateway serializes these, the SDKs deserialize them, and the
//! OpenAPI description (`GET /openapi.json`) is generated from them, so the three cannot drift.

mod error;

pub use error::{ErrorBody, ErrorCode};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::statement::Decision;

/// The longest `reason` an agent may give when it cancels its request, in characters.
pub const MAX_CANCEL_REASON_CHARS: usize = 200;

/// Where a request stands, as an agent and a person see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ApprovalStatus {
    Pending,
    Approved,
    Denied,
    Expired,
    Cancelled,
}

impl ApprovalStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalStatus::Pending => "pending",
            ApprovalStatus::Approved => "approved",
            ApprovalStatus::Denied => "denied",
            ApprovalStatus::Expired => "expired",
            ApprovalStatus::Cancelled => "cancelled",
        }
    }

    /// Whether nothing more can happen to the request.
    pub fn is_final(self) -> bool {
        self != ApprovalStatus::Pending
    }
}

impl std::fmt::Display for ApprovalStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `POST /v1/approvals`: what an agent asks a person to approve.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateApproval {
    /// 1 to 128 of `A-Z a-z 0-9 . _ : -`, e.g. `flights.book`; `handsign.` is reserved.
    pub action: String,
    /// Any JSON value, kept as the exact text sent: the gateway canonicalizes that text
    /// (RFC 8785), so a duplicate key or an imprecise number is refused, never silently changed.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub params: Box<RawValue>,
    /// The service that will accept the token, e.g. `https://travel.example`.
    pub audience: String,
    /// The user to ask; may be left out when the agent acts for exactly one user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// At most 1,000 characters, shown to the person as the agent's words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Seconds the request waits for a person (default 300).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<i64>,
}

/// `POST /v1/agents/enroll`: a key asks a user to approve it as their agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct EnrollAgent {
    pub name: String,
    pub user: String,
}

/// `POST /v1/approvals/{id}/cancel`: the agent withdraws its request. The body may be empty.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CancelApproval {
    /// Why, in at most [`MAX_CANCEL_REASON_CHARS`] characters; shown with the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `201` to `POST /v1/approvals` and `POST /v1/agents/enroll`: where and how the person decides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApprovalCreated {
    pub id: String,
    /// Always `pending`.
    pub status: ApprovalStatus,
    /// The gateway's page where the person decides.
    pub approval_url: String,
    /// base64url SHA-256 of the params' RFC 8785 form.
    pub params_sha256: String,
    /// The match code (`NNN-NNN`) the approval page shows too.
    pub code: String,
    /// Unix seconds after which the request can no longer be decided.
    pub expires_at: i64,
}

/// A request as it stands, for the agent that asked (`GET /v1/approvals/{id}`, its events, and
/// the answer to a cancellation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApprovalView {
    pub id: String,
    pub status: ApprovalStatus,
    pub action: String,
    pub audience: String,
    pub params_sha256: String,
    pub code: String,
    pub expires_at: i64,
    /// The approval token, at the first read after approval and never again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// For an approved request: whether its token was handed out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_delivered: Option<bool>,
    /// Where the receipt is, once a person has decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt_url: Option<String>,
    /// For a cancelled request: why (`agent revoked`, or the agent's own reason).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What a passkey ceremony's options call answers: the ceremony's id, to send back with the
/// credential, and the options for `navigator.credentials` in the WebAuthn JSON shapes
/// (`PublicKeyCredentialCreationOptionsJSON` or `PublicKeyCredentialRequestOptionsJSON`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CeremonyOptions<T> {
    pub ceremony: String,
    #[serde(rename = "publicKey")]
    pub public_key: T,
}

/// `POST /approve/{id}/options`: which decision the person is about to sign.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct DecisionOptions {
    pub decision: Decision,
}

/// `POST /approve/{id}` with the signed decision: the request's new status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DecisionRecorded {
    pub id: String,
    pub status: ApprovalStatus,
    pub action: String,
}

/// `201` to `POST /webauthn/register/finish`: the passkey registered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PasskeyRegistered {
    pub user: String,
    pub credential_id: String,
}

/// `POST /webauthn/login/finish`: who is logged in now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LoggedIn {
    pub user: String,
}

/// `GET /v1/push/vapid-key`: the gateway's VAPID public key (base64url of the uncompressed
/// P-256 point), for `pushManager.subscribe`'s `applicationServerKey`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VapidKey {
    #[serde(rename = "publicKey")]
    pub public_key: String,
}

/// `201` to `POST /v1/push/subscriptions`: the new device's id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeviceAdded {
    pub id: String,
}

/// One of `GET /v1/push/subscriptions`: a device receiving notifications. The push endpoint is
/// a capability and is shown by host only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Device {
    pub id: String,
    pub name: String,
    /// The name as the pages show it, hidden and look-alike characters marked (HTML).
    pub name_html: String,
    pub endpoint_host: String,
    pub created_at: i64,
}
