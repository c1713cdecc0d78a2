//! Webhooks: tell other systems that an approval request was created, decided or expired, or that
//! an agent enrolled, so the right person sees a request within seconds.
//!
//! # A notification carries no authority
//!
//! An event names the request and links to the gateway's approval page (`approval_url`); the
//! person's passkey decides there. An event never holds a token, a receipt or anything that could
//! be replayed to act. Nor does it hold the request's params values or the agent's message: they
//! may be sensitive (card numbers, addresses) and a webhook receiver is one more place they would
//! leak to. Events carry `params_sha256` instead, which identifies the params without revealing
//! them.
//!
//! # Formats
//!
//! - `standard`: JSON `{"type", "timestamp", "data"}` signed by the [Standard Webhooks] scheme:
//!   headers `webhook-id` (unique per event, the same on every retry), `webhook-timestamp` (unix
//!   seconds of the attempt) and `webhook-signature: v1,<base64 HMAC-SHA256 of
//!   "{id}.{timestamp}.{body}">`, keyed by a `whsec_<base64>` secret. `data` holds the values as
//!   stored, including agent-written text (agent name, action, audience): a receiver that shows
//!   them must treat them as the agent's words, not the gateway's.
//! - `slack`: a Slack incoming-webhook message `{"text": ...}`.
//! - `ntfy`: an ntfy topic message: the text as the body, with `Title`, `Click` (the approval
//!   link), `Tags` and `Priority` headers.
//!
//! Slack and ntfy messages are plain text made for a person's eyes, so agent-written text is
//! marked first ([`marked_line`]), as the pages mark it: control, bidirectional-override,
//! invisible and look-alike characters are written as bracketed markers and line breaks as
//! `[\n]`, so an agent cannot name itself to make a notification read as something else
//! (`"travel\u{202E}kcab"` cannot reorder the line, an agent name cannot add a fake "Approved"
//! line). The approval page, not the notification, is where the exact
//! request is shown.
//!
//! # Configuration
//!
//! Each target is one `--webhook` flag (or a space-separated list in `HANDSIGN_WEBHOOKS`), see
//! [`WebhookTarget`]'s `FromStr`:
//!
//! ```text
//! --webhook standard=https://hooks.example/handsign,secret=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw
//! --webhook slack=https://hooks.slack.com/services/T000/B000/XXXX
//! --webhook ntfy=https://ntfy.sh/alice-approvals
//! ```
//!
//! Targets must be `https`, except on loopback (`localhost`, `127.0.0.1`, `[::1]`), so that
//! events are not sent in the clear across a network.
//!
//! # Delivery
//!
//! [`Webhooks::notify`] spawns the deliveries and returns at once: a slow or failing receiver
//! never delays or fails a decision, and never loses a request, since the gateway's store is the
//! truth and a webhook only a notice of it. A delivery ([`deliver`]) makes up to 5 attempts over
//! about a minute (backoff 4, 8, 16, 32 s, or longer when the receiver asks with
//! `Retry-After`), retrying connection errors, timeouts, 408, 429 and 5xx; any other answer is
//! final. A failure is logged and only that notification is lost.
//!
//! [Standard Webhooks]: https://www.standardwebhooks.com

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine as _;
use hmac::{Hmac, KeyInit as _, Mac as _};
use jiff::Timestamp;
use serde::Serialize;
use sha2::{Digest as _, Sha256};
use tokio::sync::Semaphore;
use url::Url;

use crate::config::PublicUrl;
use crate::deliveries::Deliveries;
use crate::domain::{AgentRecord, AgentStatus, ApprovalKind, ApprovalRecord, ApprovalStatus};
use crate::pages::params_view::ShownText;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    /// A request is waiting for a person.
    ApprovalCreated,
    /// A request was approved, denied or cancelled.
    ApprovalDecided,
    /// A request expired before it was decided or before its token was collected.
    ApprovalExpired,
    /// An agent's enrollment was approved.
    AgentEnrolled,
}

impl EventType {
    /// The Standard Webhooks event type, e.g. `approval.created`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::ApprovalCreated => "approval.created",
            EventType::ApprovalDecided => "approval.decided",
            EventType::ApprovalExpired => "approval.expired",
            EventType::AgentEnrolled => "agent.enrolled",
        }
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An event's `data` about an approval request. No params values, no message, no token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApprovalData {
    pub approval_id: String,
    pub kind: ApprovalKind,
    pub user: String,
    pub agent_id: String,
    /// Agent-written.
    pub agent_name: String,
    /// Agent-written.
    pub action: String,
    /// Agent-written.
    pub audience: String,
    pub params_sha256: String,
    /// The match code the agent's operator sees, also on the approval page.
    pub match_code: String,
    pub status: ApprovalStatus,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339: when the request expires if nobody decides.
    pub expires_at: String,
    /// The gateway's approval page for this request, where the passkey decides.
    pub approval_url: String,
}

/// An event's `data` about an agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AgentData {
    pub agent_id: String,
    /// Agent-written.
    pub agent_name: String,
    pub user: String,
    pub status: AgentStatus,
    /// RFC 3339.
    pub created_at: String,
    /// The gateway's dashboard, where the agent can be suspended or revoked.
    pub dashboard_url: String,
}

/// An event's `data`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum EventData {
    Approval(ApprovalData),
    Agent(AgentData),
}

/// One event, ready to send to every target. Its id is fixed when it is made, so every attempt
/// and every target sees the same `webhook-id` (receivers deduplicate by it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookEvent {
    pub id: String,
    pub event_type: EventType,
    /// Unix seconds when it happened.
    pub timestamp: i64,
    pub data: EventData,
}

#[derive(Serialize)]
struct Payload<'a> {
    #[serde(rename = "type")]
    event_type: &'static str,
    timestamp: String,
    data: &'a EventData,
}

impl WebhookEvent {
    /// A request is waiting for a person.
    pub fn approval_created(public: &PublicUrl, approval: &ApprovalRecord, now: i64) -> Self {
        Self::approval(EventType::ApprovalCreated, public, approval, now, None)
    }

    /// A request was decided (approved, denied or cancelled); the status is read at `now`.
    pub fn approval_decided(public: &PublicUrl, approval: &ApprovalRecord, now: i64) -> Self {
        Self::approval(EventType::ApprovalDecided, public, approval, now, None)
    }

    /// A request expired.
    pub fn approval_expired(public: &PublicUrl, approval: &ApprovalRecord, now: i64) -> Self {
        Self::approval(
            EventType::ApprovalExpired,
            public,
            approval,
            now,
            Some(ApprovalStatus::Expired),
        )
    }

    /// An agent was enrolled.
    pub fn agent_enrolled(public: &PublicUrl, agent: &AgentRecord, now: i64) -> Self {
        WebhookEvent {
            id: message_id(),
            event_type: EventType::AgentEnrolled,
            timestamp: now,
            data: EventData::Agent(AgentData {
                agent_id: agent.id.clone(),
                agent_name: agent.name.clone(),
                user: agent.user.to_string(),
                status: agent.status,
                created_at: rfc3339(agent.created_at),
                dashboard_url: public.join("/"),
            }),
        }
    }

    fn approval(
        event_type: EventType,
        public: &PublicUrl,
        approval: &ApprovalRecord,
        now: i64,
        status: Option<ApprovalStatus>,
    ) -> Self {
        WebhookEvent {
            id: message_id(),
            event_type,
            timestamp: now,
            data: EventData::Approval(ApprovalData {
                approval_id: approval.id.to_string(),
                kind: approval.kind,
                user: approval.user.to_string(),
                agent_id: approval.agent.clone(),
                agent_name: approval.agent_name.clone(),
                action: approval.action.clone(),
                audience: approval.audience.clone(),
                params_sha256: approval.params_sha256.as_str().to_owned(),
                match_code: approval.code.clone(),
                status: status.unwrap_or_else(|| approval.status(now)),
                created_at: rfc3339(approval.created_at),
                expires_at: rfc3339(approval.expires_at),
                approval_url: public.join(&format!("/approve/{}", approval.id)),
            }),
        }
    }

    /// The Standard Webhooks body: `{"type", "timestamp", "data"}`.
    pub fn body(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(&Payload {
            event_type: self.event_type.as_str(),
            timestamp: rfc3339(self.timestamp),
            data: &self.data,
        })
    }

    /// The page a person should open: the approval page, or the dashboard for agent events.
    pub fn link(&self) -> &str {
        match &self.data {
            EventData::Approval(a) => &a.approval_url,
            EventData::Agent(a) => &a.dashboard_url,
        }
    }

    /// A title and lines of plain text for people, agent-written text cleaned.
    fn summary(&self) -> (String, Vec<(&'static str, String)>) {
        match &self.data {
            EventData::Approval(a) => {
                let title = match (self.event_type, a.kind) {
                    (EventType::ApprovalCreated, ApprovalKind::Action) => {
                        "Approval needed".to_owned()
                    }
                    (EventType::ApprovalCreated, ApprovalKind::Enrollment) => {
                        "Agent enrollment needs approval".to_owned()
                    }
                    (_, ApprovalKind::Action) => format!("Request {}", a.status),
                    (_, ApprovalKind::Enrollment) => format!("Enrollment request {}", a.status),
                };
                let lines = vec![
                    ("Agent", marked_line(&a.agent_name, SHOWN_CHARS)),
                    ("Action", marked_line(&a.action, SHOWN_CHARS)),
                    ("Audience", marked_line(&a.audience, SHOWN_CHARS)),
                    ("User", a.user.clone()),
                    ("Match code", a.match_code.clone()),
                    ("Status", a.status.to_string()),
                ];
                (title, lines)
            }
            EventData::Agent(a) => (
                "Agent enrolled".to_owned(),
                vec![
                    ("Agent", marked_line(&a.agent_name, SHOWN_CHARS)),
                    ("Agent id", a.agent_id.clone()),
                    ("User", a.user.clone()),
                ],
            ),
        }
    }

    fn link_label(&self) -> &'static str {
        match self.event_type {
            EventType::ApprovalCreated => "Review and decide with your passkey",
            EventType::AgentEnrolled => "Manage agents",
            _ => "Details",
        }
    }

    /// The Slack incoming-webhook body: `{"text": ...}`, plain text with Slack's control
    /// characters (`&`, `<`, `>`) escaped, so agent text cannot add links or `<!channel>`
    /// mentions.
    pub fn slack_body(&self) -> serde_json::Value {
        let (title, lines) = self.summary();
        let mut text = format!("*{}*", slack_escape(&title));
        for (label, value) in lines {
            text.push_str(&format!("\n{label}: {}", slack_escape(&value)));
        }
        text.push_str(&format!(
            "\n{}: <{}>",
            self.link_label(),
            slack_escape(self.link())
        ));
        serde_json::json!({ "text": text })
    }

    /// The ntfy message: the body text and the `Title`, `Click`, `Tags` and `Priority` headers.
    pub fn ntfy_message(&self) -> NtfyMessage {
        let (title, lines) = self.summary();
        let mut body = String::new();
        for (label, value) in lines {
            body.push_str(&format!("{label}: {value}\n"));
        }
        body.push_str(&format!("{}: {}", self.link_label(), self.link()));
        let (tags, priority) = match (&self.event_type, &self.data) {
            (EventType::ApprovalCreated, _) => ("handsign,key", "high"),
            (_, EventData::Approval(a)) if a.status == ApprovalStatus::Approved => {
                ("handsign,white_check_mark", "default")
            }
            (_, EventData::Approval(a)) if a.status == ApprovalStatus::Denied => {
                ("handsign,x", "default")
            }
            (EventType::AgentEnrolled, _) => ("handsign,robot", "default"),
            _ => ("handsign,hourglass", "low"),
        };
        NtfyMessage {
            title,
            click: self.link().to_owned(),
            tags: tags.to_owned(),
            priority: priority.to_owned(),
            body,
        }
    }
}

/// How many characters of one agent-written value a Slack or ntfy message shows.
const SHOWN_CHARS: usize = 120;

/// An ntfy topic message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NtfyMessage {
    /// ASCII only (no agent-written text), so it is a valid header as is.
    pub title: String,
    pub click: String,
    pub tags: String,
    pub priority: String,
    pub body: String,
}

fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// `text` as one line of plain text for a person, marked as the pages mark it
/// ([`ShownText::plain_line`]): invisible, bidirectional-control, control and look-alike
/// characters are written as bracketed markers, and line breaks cannot start a line of their own.
pub fn marked_line(text: &str, max_chars: usize) -> String {
    ShownText::new(text).plain_line(max_chars)
}

/// A unique message id: `msg_` and 128 random bits. Should the system's random source fail, a
/// digest of the time, the process and a counter still keeps ids unique.
fn message_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let bytes: [u8; 16] = crate::domain::random_bytes::<16>().unwrap_or_else(|_| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let digest = Sha256::new()
            .chain_update(nanos.to_le_bytes())
            .chain_update(std::process::id().to_le_bytes())
            .chain_update(COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes())
            .finalize();
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        bytes
    });
    format!("msg_{}", handsign_protocol::base64url::encode(bytes))
}

/// RFC 3339 in UTC, e.g. `2026-03-01T12:00:00Z`, for unix seconds (clamped to the years 0001 to
/// 9999, which is all a timestamp field can hold).
pub fn rfc3339(unix: i64) -> String {
    let (min, max) = (Timestamp::MIN.as_second(), Timestamp::MAX.as_second());
    Timestamp::from_second(unix.clamp(min, max)).map_or_else(|_| String::new(), |t| t.to_string())
}

/// A Standard Webhooks signing secret: `whsec_` and the base64 of 24 to 64 random bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret(Vec<u8>);

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(..)")
    }
}

impl FromStr for WebhookSecret {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let encoded = text.strip_prefix("whsec_").ok_or(
            "a webhook secret must start with whsec_ followed by base64 (e.g. whsec_ and 32 base64 characters)",
        )?;
        let key = base64::engine::general_purpose::STANDARD_PAD_INDIFFERENT
            .decode(encoded)
            .map_err(|e| format!("the webhook secret after whsec_ is not base64: {e}"))?;
        if !(24..=64).contains(&key.len()) {
            return Err(format!(
                "the webhook secret is {} bytes; use 24 to 64 random bytes (whsec_ and 32 to 88 base64 characters)",
                key.len()
            ));
        }
        Ok(WebhookSecret(key))
    }
}

impl WebhookSecret {
    /// The `webhook-signature` header value: `v1,` and the base64 HMAC-SHA256 of
    /// `{id}.{timestamp}.{body}`.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        // HMAC takes keys of any length, so this never falls back in practice.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.0) else {
            return "v1,".to_owned();
        };
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!(
            "v1,{}",
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
        )
    }
}

/// The format a target receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookKind {
    /// Signed Standard Webhooks JSON.
    Standard { secret: WebhookSecret },
    /// A Slack incoming webhook.
    Slack,
    /// An ntfy topic URL.
    Ntfy,
}

impl WebhookKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            WebhookKind::Standard { .. } => "standard",
            WebhookKind::Slack => "slack",
            WebhookKind::Ntfy => "ntfy",
        }
    }
}

/// Where events go, and in which format.
///
/// Parsed from `KIND=URL`, with `,secret=whsec_...` after the URL for `standard` (the secret
/// comes last; base64 has no commas, so a URL with commas is still read right):
/// `standard=https://hooks.example/x,secret=whsec_...`, `slack=https://hooks.slack.com/...`,
/// `ntfy=https://ntfy.sh/topic`.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookTarget {
    pub url: Url,
    pub kind: WebhookKind,
}

/// Shows the kind and host only: the secret, and a Slack or ntfy URL's path, are credentials.
impl fmt::Display for WebhookTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} webhook at {}://{}",
            self.kind.as_str(),
            self.url.scheme(),
            self.url.host_str().unwrap_or("?")
        )?;
        if let Some(port) = self.url.port() {
            write!(f, ":{port}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for WebhookTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WebhookTarget({self})")
    }
}

impl FromStr for WebhookTarget {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        const SYNTAX: &str = "use KIND=URL, e.g. standard=https://hooks.example/x,secret=whsec_..., slack=https://hooks.slack.com/services/... or ntfy=https://ntfy.sh/topic";
        let (kind, rest) = text
            .split_once('=')
            .ok_or_else(|| format!("webhook {text:?} has no KIND=: {SYNTAX}"))?;
        let (url, secret) = match rest.rsplit_once(",secret=") {
            Some((url, secret)) => (url, Some(secret)),
            None => (rest, None),
        };
        let url = Url::parse(url).map_err(|e| format!("webhook URL {url:?} is invalid: {e}"))?;
        let host = url.host_str().unwrap_or_default();
        let loopback = matches!(host, "localhost" | "127.0.0.1" | "[::1]");
        match url.scheme() {
            "https" => {}
            "http" if loopback => {}
            _ => {
                return Err(format!(
                    "webhook URL {} must be https (http is allowed for localhost, 127.0.0.1 and [::1] only)",
                    url.origin().ascii_serialization()
                ));
            }
        }
        if url.fragment().is_some() {
            return Err("a webhook URL must not have a #fragment".to_owned());
        }
        let kind = match (kind, secret) {
            ("standard", Some(secret)) => WebhookKind::Standard {
                secret: secret.parse()?,
            },
            ("standard", None) => {
                return Err(
                    "a standard webhook needs a signing secret: standard=URL,secret=whsec_..."
                        .to_owned(),
                );
            }
            ("slack" | "ntfy", Some(_)) => {
                return Err(format!(
                    "only standard webhooks are signed: remove ,secret= from the {kind} webhook"
                ));
            }
            ("slack", None) => WebhookKind::Slack,
            ("ntfy", None) => WebhookKind::Ntfy,
            (other, _) => {
                return Err(format!(
                    "unknown webhook kind {other:?}: use standard, slack or ntfy ({SYNTAX})"
                ));
            }
        };
        Ok(WebhookTarget { url, kind })
    }
}

/// `handsign serve`'s webhook flags, to flatten into its arguments.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct WebhookArgs {
    /// Send events to a webhook, as KIND=URL (repeat for more): standard=URL,secret=whsec_...
    /// (signed Standard Webhooks JSON), slack=URL (Slack incoming webhook) or ntfy=URL (ntfy
    /// topic). The environment variable takes several, separated by spaces.
    #[arg(
        long = "webhook",
        env = "HANDSIGN_WEBHOOKS",
        value_name = "KIND=URL",
        value_delimiter = ' '
    )]
    pub webhooks: Vec<WebhookTarget>,
}

/// How hard a delivery tries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, at least 1.
    pub attempts: u32,
    /// The wait after the first failed attempt; doubled after each further one.
    pub initial_delay: Duration,
    /// The longest wait between attempts, whatever the receiver asks with `Retry-After`.
    pub max_delay: Duration,
    /// How long one attempt may take.
    pub timeout: Duration,
}

impl Default for RetryPolicy {
    /// 5 attempts, waiting 4, 8, 16 and 32 seconds between them: about a minute.
    fn default() -> Self {
        RetryPolicy {
            attempts: 5,
            initial_delay: Duration::from_secs(4),
            max_delay: Duration::from_secs(60),
            timeout: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// The wait after failed attempt `attempt` (1-based), at least what `Retry-After` asked.
    fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let backoff = self
            .initial_delay
            .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)));
        backoff
            .max(retry_after.unwrap_or_default())
            .min(self.max_delay)
    }
}

/// A delivery that the receiver accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    pub attempts: u32,
    pub status: u16,
}

/// A delivery that did not arrive.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The receiver answered with a status that retrying will not change.
    #[error("refused with HTTP {status} after {attempts} attempt(s)")]
    Refused { status: u16, attempts: u32 },
    /// Every attempt failed with a temporary error; `last` is the last one.
    #[error("gave up after {attempts} attempt(s): {last}")]
    GaveUp { attempts: u32, last: String },
    /// The request could not be made (never retried).
    #[error("cannot build the request: {0}")]
    Request(String),
}

enum Attempt {
    Accepted(u16),
    Refused(u16),
    Retry {
        reason: String,
        retry_after: Option<Duration>,
    },
}

/// Delivers `event` to `target` with the default [`RetryPolicy`].
pub async fn deliver(
    client: &reqwest::Client,
    target: &WebhookTarget,
    event: &WebhookEvent,
) -> Result<Delivered, DeliveryError> {
    deliver_with(client, target, event, &RetryPolicy::default()).await
}

/// Delivers `event` to `target`, retrying temporary failures (connection errors, timeouts, 408,
/// 429, 5xx) with exponential backoff and `Retry-After`. Standard webhooks keep their
/// `webhook-id` on every attempt and are signed afresh with the attempt's timestamp.
pub async fn deliver_with(
    client: &reqwest::Client,
    target: &WebhookTarget,
    event: &WebhookEvent,
    policy: &RetryPolicy,
) -> Result<Delivered, DeliveryError> {
    let body = event
        .body()
        .map_err(|e| DeliveryError::Request(e.to_string()))?;
    let attempts = policy.attempts.max(1);
    let mut attempt = 1;
    loop {
        match attempt_once(client, target, event, &body, policy).await? {
            Attempt::Accepted(status) => {
                return Ok(Delivered {
                    attempts: attempt,
                    status,
                });
            }
            Attempt::Refused(status) => {
                return Err(DeliveryError::Refused {
                    status,
                    attempts: attempt,
                });
            }
            Attempt::Retry {
                reason,
                retry_after,
            } => {
                if attempt >= attempts {
                    return Err(DeliveryError::GaveUp {
                        attempts: attempt,
                        last: reason,
                    });
                }
                tracing::debug!(target = %target, event = %event.id, attempt, %reason, "webhook attempt failed; retrying");
                tokio::time::sleep(policy.delay(attempt, retry_after)).await;
                attempt += 1;
            }
        }
    }
}

async fn attempt_once(
    client: &reqwest::Client,
    target: &WebhookTarget,
    event: &WebhookEvent,
    body: &[u8],
    policy: &RetryPolicy,
) -> Result<Attempt, DeliveryError> {
    let request = client
        .post(target.url.clone())
        .timeout(policy.timeout)
        .header(
            "user-agent",
            concat!("handsign/", env!("CARGO_PKG_VERSION")),
        );
    let request = match &target.kind {
        WebhookKind::Standard { secret } => {
            // Receivers check this against their own wall clock, and retries wait in real
            // time: the system clock's, whatever clock the gateway's checks read.
            let timestamp = crate::clock::Clock::system().now();
            request
                .header("content-type", "application/json")
                .header("webhook-id", &event.id)
                .header("webhook-timestamp", timestamp.to_string())
                .header("webhook-signature", secret.sign(&event.id, timestamp, body))
                .body(body.to_vec())
        }
        WebhookKind::Slack => request
            .header("content-type", "application/json")
            .body(event.slack_body().to_string()),
        WebhookKind::Ntfy => {
            let message = event.ntfy_message();
            request
                .header("content-type", "text/plain; charset=utf-8")
                .header("title", message.title)
                .header("click", message.click)
                .header("tags", message.tags)
                .header("priority", message.priority)
                .body(message.body)
        }
    };
    match request.send().await {
        Ok(response) => {
            let status = response.status();
            if status.is_success() {
                return Ok(Attempt::Accepted(status.as_u16()));
            }
            let code = status.as_u16();
            if code == 408 || code == 429 || status.is_server_error() {
                let retry_after = response
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| parse_retry_after(v, crate::clock::Clock::system().now()));
                Ok(Attempt::Retry {
                    reason: format!("HTTP {code}"),
                    retry_after,
                })
            } else {
                Ok(Attempt::Refused(code))
            }
        }
        Err(e) if e.is_builder() => Err(DeliveryError::Request(e.to_string())),
        Err(e) => Ok(Attempt::Retry {
            reason: error_chain(&e),
            retry_after: None,
        }),
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

/// A `Retry-After` value: delay-seconds, or an HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`, or
/// one of the obsolete forms RFC 9110 asks recipients to accept) read against `now` (unix seconds).
pub fn parse_retry_after(value: &str, now: i64) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    let at = at.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs();
    Some(Duration::from_secs(
        at.saturating_sub(u64::try_from(now).unwrap_or(0)),
    ))
}

/// The webhook targets and the deliveries to them, shared by the gateway. Cloning is cheap.
#[derive(Clone)]
pub struct Webhooks {
    /// `None` when there are no targets.
    inner: Option<Arc<Inner>>,
    /// Where deliveries run, so that shutdown waits for them.
    deliveries: Deliveries,
}

struct Inner {
    client: reqwest::Client,
    targets: Vec<WebhookTarget>,
    policy: RetryPolicy,
    /// Bounds the deliveries in progress, so a flood of events cannot pile up tasks without end.
    in_flight: Arc<Semaphore>,
}

impl fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Webhooks")
            .field("targets", &self.targets())
            .finish()
    }
}

/// Most deliveries in progress at once; an event beyond that is dropped with a warning.
pub const MAX_IN_FLIGHT: usize = 1024;

impl Webhooks {
    /// Deliveries to `targets` through `client` (e.g. [`crate::http_client::new`]).
    pub fn new(client: reqwest::Client, targets: Vec<WebhookTarget>, policy: RetryPolicy) -> Self {
        if targets.is_empty() {
            return Webhooks::disabled();
        }
        Webhooks {
            inner: Some(Arc::new(Inner {
                client,
                targets,
                policy,
                in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
            })),
            deliveries: Deliveries::new(),
        }
    }

    /// The same webhooks, delivering on `deliveries` (the gateway's, which shutdown drains).
    pub fn delivering_on(self, deliveries: Deliveries) -> Self {
        Webhooks { deliveries, ..self }
    }

    /// No targets: [`Webhooks::notify`] does nothing.
    pub fn disabled() -> Self {
        Webhooks {
            inner: None,
            deliveries: Deliveries::new(),
        }
    }

    pub fn targets(&self) -> &[WebhookTarget] {
        self.inner.as_ref().map_or(&[], |inner| &inner.targets)
    }

    pub fn is_empty(&self) -> bool {
        self.targets().is_empty()
    }

    /// Sends `event` to every target on spawned tasks and returns at once. Failures are logged,
    /// never returned: the caller's decision stands whatever the receivers do. Outside a Tokio
    /// runtime, or with too many deliveries in progress, the event is dropped with a warning.
    pub fn notify(&self, event: WebhookEvent) {
        let Some(inner) = &self.inner else {
            return;
        };
        let event = Arc::new(event);
        for (index, target) in inner.targets.iter().enumerate() {
            let Ok(permit) = Arc::clone(&inner.in_flight).try_acquire_owned() else {
                tracing::warn!(target = %target, event = %event.event_type, id = %event.id,
                    "too many webhook deliveries in progress: event dropped");
                continue;
            };
            let inner = Arc::clone(inner);
            let event = Arc::clone(&event);
            self.deliveries.spawn(async move {
                let _permit = permit;
                let Some(target) = inner.targets.get(index) else {
                    return;
                };
                match deliver_with(&inner.client, target, &event, &inner.policy).await {
                    Ok(done) => tracing::debug!(target = %target, event = %event.event_type,
                        id = %event.id, attempts = done.attempts, "webhook delivered"),
                    Err(e) => tracing::warn!(target = %target, event = %event.event_type,
                        id = %event.id, error = %e, "webhook delivery failed; the notification is lost, the request is not"),
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_772_366_400), "2026-03-01T12:00:00Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59Z");
        assert_eq!(rfc3339(i64::MAX), "9999-12-30T22:00:00Z");
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        assert_eq!(parse_retry_after("7", 0), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", 784_111_777 - 30),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", 784_111_777 + 5),
            Some(Duration::ZERO)
        );
        // The obsolete forms a recipient still accepts (RFC 9110 §5.6.7).
        for obsolete in ["Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994"] {
            assert_eq!(
                parse_retry_after(obsolete, 784_111_777 - 30),
                Some(Duration::from_secs(30)),
                "{obsolete}"
            );
        }
        assert_eq!(parse_retry_after("soon", 0), None);
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 25:49:37 GMT", 0), None);
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let policy = RetryPolicy::default();
        let waits: Vec<u64> = (1..5).map(|a| policy.delay(a, None).as_secs()).collect();
        assert_eq!(waits, [4, 8, 16, 32]);
        assert_eq!(policy.delay(1, Some(Duration::from_secs(20))).as_secs(), 20);
        assert_eq!(
            policy.delay(1, Some(Duration::from_secs(9999))).as_secs(),
            60
        );
        assert_eq!(policy.delay(40, None).as_secs(), 60);
    }

    #[test]
    fn marked_lines_show_what_hides_and_keep_what_shows() {
        assert_eq!(
            marked_line("travel\u{202E}kcab", 50),
            "travel[U+202E RIGHT-TO-LEFT OVERRIDE]kcab"
        );
        assert_eq!(
            marked_line("pay\u{200B}pal", 50),
            "pay[U+200B ZERO WIDTH SPACE]pal"
        );
        assert_eq!(
            marked_line("a\nApproved:\tyes ", 50),
            "a[\\n]Approved:[\\t]yes[space]"
        );
        assert_eq!(marked_line("bot\u{E0041}", 50), "bot[U+E0041 TAG A]");
        assert_eq!(marked_line("Réservation ✈", 50), "Réservation ✈");
        assert_eq!(marked_line("p\u{0430}ypal", 50), "pа[U+0430 Cyrillic]ypal");
        assert_eq!(marked_line("abcdef", 3), "abc…");
        // A marker is never cut in half.
        assert_eq!(marked_line("ab\u{202E}", 5), "ab…");
        assert_eq!(marked_line("", 3), "(empty)");
    }

    #[test]
    fn secrets_are_checked() {
        assert!(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
                .parse::<WebhookSecret>()
                .is_ok()
        );
        assert!(
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
                .parse::<WebhookSecret>()
                .is_err()
        );
        assert!("whsec_c2hvcnQ=".parse::<WebhookSecret>().is_err());
        assert!("whsec_!!!".parse::<WebhookSecret>().is_err());
    }

    #[test]
    fn standard_webhooks_example_signature() {
        // The example in the Standard Webhooks specification's reference libraries.
        let secret: WebhookSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".parse().unwrap();
        let signature = secret.sign(
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }
}
