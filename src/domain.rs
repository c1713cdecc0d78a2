//! The gateway's records: users, passkeys, agents, approval requests, and the identifiers that
//! name them. Identifiers are parsed, never checked after the fact: holding a [`UserId`] means
//! the name is valid.

use std::fmt;

use handsign_protocol::keys::Jwk;
use handsign_protocol::params::ParamsHash;
use handsign_protocol::receipt::Receipt;
use serde::{Deserialize, Serialize};

use crate::params_order::ParamsOrder;

/// A user's short name, e.g. `alice`: 1 to 32 characters of `a-z`, `0-9`, `.`, `_`, `-`,
/// starting with a letter or digit. Narrow on purpose: it appears on approval pages and in
/// statements, where look-alike names must not be possible.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UserId(String);

/// A name that is not a valid user id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid user name {0:?}: use 1 to 32 characters of a-z, 0-9, '.', '_' or '-', starting with a letter or digit"
)]
pub struct InvalidUserId(pub String);

impl UserId {
    pub fn parse(name: &str) -> Result<Self, InvalidUserId> {
        let valid = (1..=32).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
            && name
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphanumeric());
        if valid {
            Ok(UserId(name.to_owned()))
        } else {
            Err(InvalidUserId(name.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for UserId {
    type Error = InvalidUserId;
    fn try_from(name: String) -> Result<Self, Self::Error> {
        UserId::parse(&name)
    }
}

impl From<UserId> for String {
    fn from(id: UserId) -> String {
        id.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An approval request's id: `apr_` and 128 random bits in base64url. Unguessable, since the
/// approval page is reached by it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ApprovalId(String);

/// Text that is not an approval id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid approval id {0:?}")]
pub struct InvalidApprovalId(pub String);

impl ApprovalId {
    const PREFIX: &'static str = "apr_";

    pub fn generate() -> Result<Self, getrandom::Error> {
        Ok(ApprovalId(format!(
            "{}{}",
            Self::PREFIX,
            handsign_protocol::base64url::encode(random_bytes::<16>()?)
        )))
    }

    pub fn parse(text: &str) -> Result<Self, InvalidApprovalId> {
        let valid = text.strip_prefix(Self::PREFIX).is_some_and(|rest| {
            rest.len() == 22
                && handsign_protocol::base64url::decode(rest).is_ok_and(|b| b.len() == 16)
        });
        if valid {
            Ok(ApprovalId(text.to_owned()))
        } else {
            Err(InvalidApprovalId(text.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ApprovalId {
    type Error = InvalidApprovalId;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        ApprovalId::parse(&text)
    }
}

impl From<ApprovalId> for String {
    fn from(id: ApprovalId) -> String {
        id.0
    }
}

impl fmt::Display for ApprovalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `N` bytes from the operating system's random number generator.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], getrandom::Error> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes)?;
    Ok(bytes)
}

/// A user: a person who decides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    pub id: UserId,
    pub created_at: i64,
    /// Admins invite people. The first user is one; the operator makes others with
    /// `handsign user admin NAME`.
    #[serde(default)]
    pub admin: bool,
}

/// A registered passkey.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PasskeyRecord {
    /// The credential id, base64url: the key passkeys are found by.
    pub credential_id: String,
    pub user: UserId,
    /// What the person called it, e.g. "phone".
    pub name: String,
    /// webauthn-rs's view of the credential (public key, counter, backup state).
    pub passkey: webauthn_rs::prelude::Passkey,
    /// The credential public key exactly as the authenticator produced it (COSE), for receipts.
    pub public_key_cose: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

/// A one-time code that lets a person register a passkey: the setup code (first user, any name
/// not taken) or an invitation for a named user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvitationRecord {
    /// base64url SHA-256 of the code: the code itself is never stored.
    pub code_sha256: String,
    /// The user it is for; `None` for the setup code, where the person picks the name.
    pub user: Option<UserId>,
    pub expires_at: i64,
}

/// A device that receives Web Push notifications for a user: the browser's push subscription.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushSubscriptionRecord {
    /// Random id, for listing and removing it.
    pub id: String,
    pub user: UserId,
    /// What the person called the device.
    pub name: String,
    /// The push service URL the browser gave (a capability: whoever knows it can push), and
    /// the browser's keys the message is encrypted to.
    #[serde(flatten)]
    pub subscription: crate::notify::subscription::Subscription,
    pub created_at: i64,
}

/// A logged-in browser.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// base64url SHA-256 of the cookie value.
    pub id_sha256: String,
    pub user: UserId,
    pub expires_at: i64,
}

/// Whether an agent may act.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentStatus {
    /// Asked to enroll; may only read its enrollment request.
    Pending,
    Active,
    /// May not create requests until resumed.
    Suspended,
    /// Gone for good; its pending requests were cancelled.
    Revoked,
}

impl AgentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AgentStatus::Pending => "pending",
            AgentStatus::Active => "active",
            AgentStatus::Suspended => "suspended",
            AgentStatus::Revoked => "revoked",
        }
    }
}

/// The longest agent name, in characters.
pub const MAX_AGENT_NAME_CHARS: usize = 64;

/// An agent's name as people see it: trimmed, 1 to [`MAX_AGENT_NAME_CHARS`] characters, no
/// control characters. Parsed once where a name comes in (an enrollment, `handsign agent add`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentName(String);

/// Why a name is not an [`AgentName`]; the text says what a valid one is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the agent name must be 1 to {MAX_AGENT_NAME_CHARS} characters without control characters")]
pub struct InvalidAgentName;

impl AgentName {
    pub fn parse(name: &str) -> Result<Self, InvalidAgentName> {
        let name = name.trim();
        if name.is_empty()
            || name.chars().count() > MAX_AGENT_NAME_CHARS
            || name.chars().any(char::is_control)
        {
            return Err(InvalidAgentName);
        }
        Ok(AgentName(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `other` reads as the same name (letter case aside): a copy of a real agent's
    /// name would let a prompt pass for that agent.
    pub fn is_taken_by(&self, other: &str) -> bool {
        self.0.to_lowercase() == other.to_lowercase()
    }
}

impl From<AgentName> for String {
    fn from(name: AgentName) -> Self {
        name.0
    }
}

impl fmt::Display for AgentName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What an agent asks to do, as its service names it (`flights.book`): 1 to 128 characters of
/// A-Z, a-z, 0-9, `.`, `_`, `:` or `-`, not in the gateway's own `handsign.` namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action(String);

/// Why a text is not an [`Action`]; the text says what a valid one is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidAction {
    #[error(
        "action must be 1 to 128 characters of A-Z, a-z, 0-9, '.', '_', ':' or '-', e.g. flights.book"
    )]
    Malformed,
    #[error("actions starting with \"handsign.\" are reserved for the gateway")]
    Reserved,
}

impl Action {
    pub fn parse(action: &str) -> Result<Self, InvalidAction> {
        let valid = (1..=128).contains(&action.len())
            && action
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b));
        if !valid {
            return Err(InvalidAction::Malformed);
        }
        if action.starts_with("handsign.") {
            return Err(InvalidAction::Reserved);
        }
        Ok(Action(action.to_owned()))
    }
}

impl From<Action> for String {
    fn from(action: Action) -> Self {
        action.0
    }
}

/// The service a token is for (its `aud`), e.g. `https://travel.example`: 1 to 256 printable
/// ASCII characters without spaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audience(String);

/// Why a text is not an [`Audience`]; the text says what a valid one is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "audience must be 1 to 256 printable ASCII characters without spaces, e.g. https://travel.example"
)]
pub struct InvalidAudience;

impl Audience {
    pub fn parse(audience: &str) -> Result<Self, InvalidAudience> {
        let valid =
            (1..=256).contains(&audience.len()) && audience.bytes().all(|b| b.is_ascii_graphic());
        if valid {
            Ok(Audience(audience.to_owned()))
        } else {
            Err(InvalidAudience)
        }
    }
}

impl From<Audience> for String {
    fn from(audience: Audience) -> Self {
        audience.0
    }
}

/// An agent: software acting for a user, known by its key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentRecord {
    /// RFC 7638 thumbprint of its public key.
    pub id: String,
    pub name: String,
    pub user: UserId,
    pub public_jwk: Option<Jwk>,
    pub status: AgentStatus,
    pub created_at: i64,
    /// For an agent that enrolled itself: when its enrollment request expires. An enrollment
    /// nobody decided leaves no agent behind: past this time a pending agent does not exist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enrollment_expires_at: Option<i64>,
}

impl AgentRecord {
    /// Whether the agent exists at `now`: every agent does, except one whose enrollment expired
    /// undecided.
    pub fn exists_at(&self, now: i64) -> bool {
        self.status != AgentStatus::Pending || self.enrollment_expires_at.is_none_or(|t| now < t)
    }
}

/// What a request asks for: an action on a service, or an agent's own enrollment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalKind {
    Action,
    Enrollment,
}

/// An approval request and everything that happened to it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApprovalRecord {
    pub id: ApprovalId,
    pub kind: ApprovalKind,
    /// The agent id (thumbprint) and its name when the request was made.
    pub agent: String,
    pub agent_name: String,
    pub user: UserId,
    pub audience: String,
    pub action: String,
    /// The canonical params, as text.
    pub params: String,
    pub params_sha256: ParamsHash,
    /// The order the agent wrote the params' keys in, for display; not part of what is signed.
    #[serde(default, skip_serializing_if = "ParamsOrder::is_sorted")]
    pub params_order: ParamsOrder,
    /// The agent's own words; shown as such, never as the gateway's.
    pub message: Option<String>,
    /// The match code shown to the agent's operator and on the approval page.
    pub code: String,
    /// base64url of 32 random bytes, part of the statement.
    pub nonce: String,
    pub created_at: i64,
    /// When a pending request expires (created_at + ttl).
    pub expires_at: i64,
    pub state: ApprovalState,
}

/// Where a request stands, as stored. Expiry is not stored: it follows from the clock (see
/// [`ApprovalRecord::status`]), so no sweeper is needed for correctness.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ApprovalState {
    Pending,
    Approved {
        decided_at: i64,
        receipt: Box<Receipt>,
        /// When the token was handed out; it is handed out once.
        token_delivered_at: Option<i64>,
    },
    Denied {
        decided_at: i64,
        receipt: Box<Receipt>,
    },
    Cancelled {
        at: i64,
        reason: String,
    },
}

/// An approved request whose token is not collected within this many seconds expires.
pub const COLLECT_WITHIN_SECS: i64 = 120;

/// How long after its last long poll ends an agent still counts as waiting: the time to read
/// the answer and ask again, or to retry after a failed call. An agent that polls for `wait`
/// seconds at `now` is waiting until `now + wait + AGENT_GAP_SECS`.
pub const AGENT_GAP_SECS: i64 = 10;

/// The recorded time an agent waits until is raised only by at least this much at once, so
/// that an agent polling in a loop writes to the store at most once per this many seconds.
pub const AGENT_WAITING_STEP_SECS: i64 = 10;

/// The status an agent and a person see.
pub use handsign_protocol::api::ApprovalStatus;

impl ApprovalRecord {
    /// The status at `now`: a pending request past `expires_at`, or an approved one whose token
    /// was not collected within [`COLLECT_WITHIN_SECS`], is expired.
    pub fn status(&self, now: i64) -> ApprovalStatus {
        match &self.state {
            ApprovalState::Pending if now >= self.expires_at => ApprovalStatus::Expired,
            ApprovalState::Pending => ApprovalStatus::Pending,
            ApprovalState::Approved {
                decided_at,
                token_delivered_at: None,
                ..
            } if now >= decided_at + COLLECT_WITHIN_SECS => ApprovalStatus::Expired,
            ApprovalState::Approved { .. } => ApprovalStatus::Approved,
            ApprovalState::Denied { .. } => ApprovalStatus::Denied,
            ApprovalState::Cancelled { .. } => ApprovalStatus::Cancelled,
        }
    }

    /// Until when the agent counts as waiting for the outcome, from the time the store recorded
    /// (`recorded`, [`AGENT_GAP_SECS`] past its last poll's end); an agent that never polled
    /// waits from the request's creation.
    pub fn agent_waiting_until(&self, recorded: Option<i64>) -> i64 {
        let asked = self.created_at + AGENT_GAP_SECS;
        recorded.map_or(asked, |recorded| recorded.max(asked))
    }

    pub fn receipt(&self) -> Option<&Receipt> {
        match &self.state {
            ApprovalState::Approved { receipt, .. } | ApprovalState::Denied { receipt, .. } => {
                Some(receipt)
            }
            _ => None,
        }
    }
}

/// The longest name a person may give one of their passkeys or devices, in characters.
pub const MAX_DEVICE_NAME_CHARS: usize = 64;

/// What a person calls one of their passkeys or devices, e.g. "phone": trimmed, cut to
/// [`MAX_DEVICE_NAME_CHARS`] characters, `default` when empty. Control characters (NUL, newlines,
/// escape sequences) are refused: no name needs them, and they cut or hide the text around them.
/// Other invisible characters (bidirectional controls, zero-width ones) are kept as given, and
/// shown marked wherever the name is shown.
pub fn device_name(given: Option<&str>, default: &str) -> Result<String, String> {
    let name = given.unwrap_or_default().trim();
    if let Some(control) = name.chars().find(|c| c.is_control()) {
        return Err(format!(
            "a name may not contain control characters such as U+{:04X}",
            u32::from(control)
        ));
    }
    let name: String = name.chars().take(MAX_DEVICE_NAME_CHARS).collect();
    Ok(if name.is_empty() {
        default.to_owned()
    } else {
        name
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_audiences_and_agent_names_parse_once_with_the_reason() {
        assert!(Action::parse("flights.book").is_ok());
        assert_eq!(Action::parse(""), Err(InvalidAction::Malformed));
        assert_eq!(Action::parse("flights book"), Err(InvalidAction::Malformed));
        assert_eq!(
            Action::parse(&"a".repeat(129)),
            Err(InvalidAction::Malformed)
        );
        assert_eq!(
            Action::parse("handsign.agent.enroll"),
            Err(InvalidAction::Reserved)
        );
        assert!(Audience::parse("https://travel.example").is_ok());
        assert_eq!(Audience::parse("a b"), Err(InvalidAudience));
        assert_eq!(Audience::parse(&"a".repeat(257)), Err(InvalidAudience));
        assert_eq!(
            AgentName::parse("  travel bot ").unwrap().as_str(),
            "travel bot"
        );
        assert_eq!(AgentName::parse(" "), Err(InvalidAgentName));
        assert_eq!(AgentName::parse("bot\u{7}"), Err(InvalidAgentName));
        assert!(
            AgentName::parse("Travel Bot")
                .unwrap()
                .is_taken_by("travel bot")
        );
        assert!(InvalidAgentName.to_string().contains("1 to 64 characters"));
    }

    #[test]
    fn user_ids_are_narrow() {
        assert!(UserId::parse("alice").is_ok());
        assert!(UserId::parse("a.b_c-9").is_ok());
        for bad in ["", "Alice", "-alice", "al ice", "аlice", &"a".repeat(33)] {
            assert!(UserId::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn approval_ids_round_trip_and_refuse_other_text() {
        let id = ApprovalId::generate().unwrap();
        assert_eq!(ApprovalId::parse(id.as_str()).unwrap(), id);
        assert!(ApprovalId::parse("apr_short").is_err());
        assert!(ApprovalId::parse(&id.as_str().replace("apr_", "xyz_")).is_err());
    }
}
