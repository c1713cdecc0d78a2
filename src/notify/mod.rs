//! Telling the person, fast, that a request waits for them: Web Push to their devices, and
//! webhooks (signed Standard Webhooks JSON, Slack, ntfy) for the operator's other channels.
//!
//! A notification carries no authority: it names the request and links to the gateway's own
//! approval page, where the passkey decides. Delivery runs on spawned tasks and never delays or
//! fails a request or a decision; a push service or webhook that fails loses that notification
//! only. Devices whose push service says they are gone (404, 410) are removed.

pub mod ece;
pub mod endpoint;
pub mod subscription;
pub mod vapid;
pub mod webhooks;
pub mod webpush;

use std::sync::Arc;

use crate::clock::Clock;
use crate::config::PublicUrl;
use crate::deliveries::Deliveries;
use crate::domain::{
    AgentRecord, ApprovalKind, ApprovalRecord, ApprovalState, ApprovalStatus,
    PushSubscriptionRecord,
};
use crate::events::Events;
use crate::store::Store;
use subscription::Subscription;
use vapid::VapidKey;
use webhooks::{WebhookEvent, Webhooks, marked_line};
use webpush::{PushOptions, Urgency};

/// How long a push service may hold an undelivered message: a request rarely waits longer.
const PUSH_TTL_SECS: u32 = 3600;

/// How the gateway signs and addresses push messages.
pub struct PushSettings {
    pub vapid: VapidKey,
    /// The operator's contact given to push services (`mailto:` or `https:`).
    pub subject: String,
    /// Plain-http push endpoints (loopback push services in tests).
    pub allow_http_endpoints: bool,
    /// Push endpoints on non-public addresses ([`endpoint`]).
    pub allow_private_endpoints: bool,
    /// Most devices one user may subscribe.
    pub max_devices_per_user: usize,
    /// The client push messages are sent with.
    pub http: reqwest::Client,
}

/// The gateway's notification channels.
#[derive(Clone)]
pub struct Notifier {
    store: Arc<dyn Store>,
    public: Arc<PublicUrl>,
    push: Arc<PushSettings>,
    webhooks: Webhooks,
    /// Changes to requests, so that an expiry report stops waiting once a request is decided.
    events: Events,
    /// Where pushes and expiry watchers run, so that shutdown drains or stops them.
    deliveries: Deliveries,
    /// The time events carry and expiry reports wait for.
    clock: Clock,
}

impl Notifier {
    pub fn new(
        store: Arc<dyn Store>,
        public: Arc<PublicUrl>,
        push: PushSettings,
        webhooks: Webhooks,
        events: Events,
        deliveries: Deliveries,
        clock: Clock,
    ) -> Self {
        Notifier {
            store,
            public,
            push: Arc::new(push),
            webhooks: webhooks.delivering_on(deliveries.clone()),
            events,
            deliveries,
            clock,
        }
    }

    /// The key browsers subscribe with (`applicationServerKey`).
    pub fn vapid_public_key(&self) -> String {
        self.push.vapid.public_key_b64url()
    }

    /// Whether push endpoints may be plain http (loopback receivers in tests).
    pub fn allows_http_push_endpoints(&self) -> bool {
        self.push.allow_http_endpoints
    }

    /// Most devices one user may subscribe.
    pub fn max_devices_per_user(&self) -> usize {
        self.push.max_devices_per_user
    }

    /// Refuses `subscription` if its endpoint's host is not public, unless the operator allowed
    /// private endpoints.
    pub async fn check_endpoint(
        &self,
        subscription: &Subscription,
    ) -> Result<(), endpoint::EndpointError> {
        if self.push.allow_private_endpoints {
            return Ok(());
        }
        endpoint::check(subscription.endpoint()).await
    }

    /// A new request: push to the user's devices, tell the webhooks, and tell them again if it
    /// expires undecided.
    pub fn approval_created(&self, approval: &ApprovalRecord) {
        let now = self.clock.now();
        self.webhooks
            .notify(WebhookEvent::approval_created(&self.public, approval, now));
        let notifier = self.clone();
        let pushed = approval.clone();
        self.deliveries
            .spawn(async move { notifier.push_to_devices(&pushed).await });
        let notifier = self.clone();
        let approval = approval.clone();
        self.deliveries
            .watch(async move { notifier.report_expiry(approval).await });
    }

    pub fn approval_decided(&self, approval: &ApprovalRecord) {
        self.webhooks.notify(WebhookEvent::approval_decided(
            &self.public,
            approval,
            self.clock.now(),
        ));
    }

    pub fn agent_enrolled(&self, agent: &AgentRecord) {
        self.webhooks.notify(WebhookEvent::agent_enrolled(
            &self.public,
            agent,
            self.clock.now(),
        ));
    }

    async fn push_to_devices(&self, approval: &ApprovalRecord) {
        let devices = match self.store.push_subscriptions(&approval.user).await {
            Ok(devices) => devices,
            Err(e) => {
                tracing::warn!(id = %approval.id, error = %e, "cannot read devices; no push sent");
                return;
            }
        };
        let payload = push_payload(&self.public, approval);
        for device in devices {
            let notifier = self.clone();
            let payload = payload.clone();
            self.deliveries
                .spawn(async move { notifier.push(&device, &payload).await });
        }
    }

    async fn push(&self, device: &PushSubscriptionRecord, payload: &[u8]) {
        let result = async {
            let subscription = &device.subscription;
            // Address literals here; names are checked by the push client's resolver, on the
            // very addresses it connects to.
            if !self.push.allow_private_endpoints {
                endpoint::check_literal(subscription.endpoint()).map_err(|e| e.to_string())?;
            }
            let options = PushOptions {
                subject: &self.push.subject,
                ttl_secs: PUSH_TTL_SECS,
                urgency: Urgency::High,
                // The push service checks the VAPID signature's expiry against its own wall
                // clock: the system's, whatever clock the gateway's checks read.
                now: Clock::system().now(),
            };
            let request = webpush::build_request(subscription, payload, &self.push.vapid, &options)
                .map_err(|e| e.to_string())?;
            let request = reqwest::Request::try_from(request).map_err(|e| e.to_string())?;
            let response = self
                .push
                .http
                .execute(request)
                .await
                .map_err(|e| e.to_string())?;
            Ok::<_, String>(response.status())
        }
        .await;
        match result {
            Ok(status) if status.is_success() => {
                tracing::debug!(device = %device.id, "push delivered");
            }
            Ok(status) if status.as_u16() == 404 || status.as_u16() == 410 => {
                tracing::info!(device = %device.id, user = %device.user, "push subscription gone; device removed");
                if let Err(e) = self
                    .store
                    .delete_push_subscription(&device.user, &device.id)
                    .await
                {
                    tracing::warn!(device = %device.id, error = %e, "cannot remove a dead device");
                }
            }
            Ok(status) => {
                tracing::warn!(device = %device.id, %status, "push service refused the message")
            }
            Err(e) => tracing::warn!(device = %device.id, error = %e, "push failed"),
        }
    }

    /// Tells the webhooks when `approval` expires undecided. It waits on the request's change
    /// events until its expiry, and stops as soon as the request is decided or cancelled. A
    /// gateway restart (or shutdown) forgets the wait; the request itself still expires.
    async fn report_expiry(&self, approval: ApprovalRecord) {
        if self.webhooks.is_empty() {
            return;
        }
        let mut changes = self.events.approval(&approval.id);
        loop {
            let Ok(Some(stored)) = self.store.approval(&approval.id).await else {
                return;
            };
            match stored.status(self.clock.now()) {
                ApprovalStatus::Pending => {
                    let expiry = self.clock.sleep_until_second(stored.expires_at);
                    changes.changed_before(expiry).await;
                }
                ApprovalStatus::Expired if matches!(stored.state, ApprovalState::Pending) => {
                    let event =
                        WebhookEvent::approval_expired(&self.public, &stored, self.clock.now());
                    self.webhooks.notify(event);
                    return;
                }
                // Decided or cancelled: nothing expired.
                _ => return,
            }
        }
    }
}

/// What the service worker shows: who asks for what, the match code, and the link to the
/// approval page. Agent-written text is marked as on the pages ([`marked_line`]); the page, not
/// the notification, is where the request is shown exactly.
fn push_payload(public: &PublicUrl, approval: &ApprovalRecord) -> Vec<u8> {
    let title = match approval.kind {
        ApprovalKind::Action => format!("Approve {}?", marked_line(&approval.action, 60)),
        ApprovalKind::Enrollment => "An agent asks to act for you".to_owned(),
    };
    let body = format!(
        "{} asks for {} at {}. Code {}.",
        marked_line(&approval.agent_name, 60),
        marked_line(&approval.action, 60),
        marked_line(&approval.audience, 80),
        approval.code
    );
    serde_json::to_vec(&serde_json::json!({
        "title": title,
        "body": body,
        "url": public.join(&format!("/approve/{}", approval.id)),
        "tag": approval.id,
    }))
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ApprovalId, UserId};

    #[test]
    fn the_push_message_shows_hidden_characters_marked() {
        let public = PublicUrl::parse(&url::Url::parse("https://gw.example").unwrap()).unwrap();
        let approval = ApprovalRecord {
            id: ApprovalId::generate().unwrap(),
            kind: ApprovalKind::Action,
            agent: "agent-thumbprint".into(),
            agent_name: "travel\u{202E}tob".into(),
            user: UserId::parse("alice").unwrap(),
            audience: "https://pаypal.example".into(),
            action: "pay\u{200B}ment".into(),
            params: "{}".into(),
            params_sha256: "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU"
                .parse()
                .unwrap(),
            params_order: Default::default(),
            message: None,
            code: "4821".into(),
            nonce: "nonce".into(),
            created_at: 0,
            expires_at: 300,
            state: ApprovalState::Pending,
        };
        let message: serde_json::Value =
            serde_json::from_slice(&push_payload(&public, &approval)).unwrap();
        assert_eq!(
            message["title"],
            "Approve pay[U+200B ZERO WIDTH SPACE]ment?"
        );
        assert_eq!(
            message["body"],
            "travel[U+202E RIGHT-TO-LEFT OVERRIDE]tob asks for pay[U+200B ZERO WIDTH SPACE]ment \
             at https://pа[U+0430 Cyrillic]ypal.example. Code 4821."
        );
    }
}
