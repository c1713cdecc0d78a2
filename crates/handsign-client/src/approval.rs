//! Asking for approvals and enrollments, and waiting for the person's decision.
//!
//! Waiting is the gateway's long poll (`GET /v1/approvals/{id}?wait=60`, repeated): the gateway
//! answers the moment the request is decided, so nothing here sleeps except between retries
//! after a failure. A broken connection or a restarting gateway is ridden out by reading the
//! same request again with backoff; a wait never creates a second request, so the person never
//! sees the same question twice.
//!
//! The token is handed out once, at the first read after approval. A wait whose answer was lost
//! (for example on a connection cut after the gateway sent it) therefore ends in
//! [`ApprovalError::TokenAlreadyCollected`], never in a silent second request.

use std::time::Duration;

use handsign_protocol::api::{
    ApprovalCreated, ApprovalStatus, ApprovalView, CancelApproval, CreateApproval, EnrollAgent,
    ErrorCode,
};
use handsign_protocol::canonical::Limits;
use handsign_protocol::jws::CompactJws;
use handsign_protocol::params::CanonicalParams;
use handsign_protocol::token::ApprovalClaims;
use reqwest::Method;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::client::{CallError, Client};
use crate::error::ApprovalError;

/// The longest long poll the gateway allows.
const MAX_WAIT_SECS: u64 = 60;
/// The reason given when a request is cancelled because its wait ran out.
const TIMED_OUT_REASON: &str = "the agent stopped waiting for a decision";

/// What the agent asks a person to approve: one action with exact params, for one service.
#[derive(Debug, Clone, PartialEq)]
pub struct ApprovalRequest {
    /// What the service will do, e.g. `flights.book` (1 to 128 of `A-Z a-z 0-9 . _ : -`).
    pub action: String,
    /// The exact parameters; the person approves their RFC 8785 form, and the service checks
    /// that the request it receives carries the same. Big integers and exact decimals belong
    /// in strings.
    pub params: Value,
    /// The service that will accept the token, e.g. `https://travel.example`.
    pub audience: String,
    /// The user to ask; may be left out when the agent acts for exactly one user.
    pub user: Option<String>,
    /// A short summary shown to the person, marked as written by the agent.
    pub message: Option<String>,
    /// Seconds the request waits for a person (gateway default 300, at least 10).
    pub ttl: Option<u64>,
}

impl ApprovalRequest {
    pub fn new(action: impl Into<String>, params: Value, audience: impl Into<String>) -> Self {
        ApprovalRequest {
            action: action.into(),
            params,
            audience: audience.into(),
            user: None,
            message: None,
            ttl: None,
        }
    }

    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self
    }

    pub fn message(mut self, message: impl Into<String>) -> Self {
        self.message = Some(message.into());
        self
    }

    pub fn ttl(mut self, seconds: u64) -> Self {
        self.ttl = Some(seconds);
        self
    }

    fn body(&self) -> Result<CreateApproval, ApprovalError> {
        let params = serde_json::value::to_raw_value(&self.params)
            .map_err(|e| ApprovalError::BadAnswer(format!("the params cannot be sent: {e}")))?;
        Ok(CreateApproval {
            action: self.action.clone(),
            params,
            audience: self.audience.clone(),
            user: self.user.clone(),
            message: self.message.clone(),
            ttl: self.ttl.map(|ttl| i64::try_from(ttl).unwrap_or(i64::MAX)),
        })
    }
}

/// Refuses to wait on a request whose params are not the ones sent: the person would be
/// approving something else.
fn check_params(created: &ApprovalCreated, params: &Value) -> Result<(), ApprovalError> {
    // Generous limits: the gateway enforces its own; this only recomputes the hash.
    let limits = Limits {
        max_bytes: 64 * 1024 * 1024,
        max_depth: 128,
    };
    match CanonicalParams::from_value(params, &limits) {
        Ok(local) if local.hash().as_str() != created.params_sha256 => {
            Err(ApprovalError::BadAnswer(format!(
                "the gateway recorded params_sha256 {} but the params sent hash to {}; \
                     the request may have been altered on the way, so it is not waited on",
                created.params_sha256,
                local.hash()
            )))
        }
        _ => Ok(()),
    }
}

/// What a person is asked, with the details to show the agent's operator, so they can tell
/// the person where to look and which request is theirs.
#[derive(Debug, Clone)]
struct Ticket {
    client: Client,
    created: ApprovalCreated,
}

impl Ticket {
    /// Reads the request until it is no longer pending or `deadline` passes.
    async fn follow(
        &self,
        deadline: Option<Instant>,
        kind: Kind,
    ) -> Result<Option<String>, ApprovalError> {
        let path = format!("/v1/approvals/{}", self.created.id);
        let retry = *self.client.retry();
        let mut failures: u32 = 0;
        let mut last_failure: Option<String> = None;
        let mut first = true;
        loop {
            let wait = deadline.map_or(MAX_WAIT_SECS, |deadline| {
                deadline
                    .saturating_duration_since(Instant::now())
                    .as_secs()
                    .min(MAX_WAIT_SECS)
            });
            if wait == 0 && !first {
                return Err(match last_failure {
                    Some(failure) => ApprovalError::Unreachable(failure),
                    None => ApprovalError::TimedOut,
                });
            }
            first = false;
            let answer = self
                .client
                .call(
                    Method::GET,
                    &path,
                    &format!("?wait={wait}"),
                    None::<&()>,
                    Duration::from_secs(wait),
                )
                .await;
            let failure = match answer {
                Ok(answer) => match self.step(answer, kind)? {
                    Step::Decided(decided) => return Ok(decided),
                    Step::Pending => {
                        failures = 0;
                        last_failure = None;
                        continue;
                    }
                    Step::Inconsistent(message) => CallError::BadAnswer(message),
                },
                Err(CallError::Refused {
                    code: ErrorCode::AgentRevoked,
                    ..
                }) if kind == Kind::Enrollment => {
                    // Denying an enrollment revokes the key; the gateway then refuses every
                    // call it makes, including this read.
                    return Err(ApprovalError::Denied);
                }
                Err(error) if error.is_transient() => error,
                Err(error) => return Err(error.into()),
            };
            failures += 1;
            let message = format!(
                "{} (reading request {} at {}, attempt {failures})",
                failure.describe(),
                self.created.id,
                self.client.gateway_url()
            );
            if failures >= retry.attempts {
                return Err(match failure {
                    CallError::BadAnswer(_) => ApprovalError::BadAnswer(message),
                    _ => ApprovalError::Unreachable(message),
                });
            }
            last_failure = Some(message);
            let mut pause = retry.backoff(failures, failure.retry_after());
            if let Some(deadline) = deadline {
                pause = pause.min(deadline.saturating_duration_since(Instant::now()));
            }
            tokio::time::sleep(pause).await;
        }
    }

    /// What one answer means for the wait.
    fn step(&self, answer: ApprovalView, kind: Kind) -> Result<Step, ApprovalError> {
        if answer.id != self.created.id {
            return Err(ApprovalError::BadAnswer(format!(
                "asked about request {}, the answer is about {}",
                self.created.id, answer.id
            )));
        }
        match (answer.status, kind) {
            (ApprovalStatus::Pending, _) => Ok(Step::Pending),
            (ApprovalStatus::Approved, Kind::Enrollment) => Ok(Step::Decided(None)),
            (ApprovalStatus::Approved, Kind::Action) => match answer.token {
                Some(token) => Ok(Step::Decided(Some(token))),
                None if answer.token_delivered == Some(true) => {
                    Err(ApprovalError::TokenAlreadyCollected)
                }
                // Approved but neither delivered nor marked delivered: the request expired
                // between two steps of the read; the next read says so.
                None => Ok(Step::Inconsistent(
                    "approved, but the token was neither delivered nor marked delivered".into(),
                )),
            },
            (ApprovalStatus::Denied, _) => Err(ApprovalError::Denied),
            (ApprovalStatus::Expired, _) => Err(ApprovalError::Expired),
            (ApprovalStatus::Cancelled, _) => Err(ApprovalError::Cancelled {
                reason: answer.reason,
            }),
        }
    }

    /// Withdraws the request (`POST /v1/approvals/{id}/cancel`), so the person is no longer
    /// asked. Sent again only when the connection could not be opened.
    async fn cancel(&self, reason: Option<&str>) -> Result<(), ApprovalError> {
        let body = CancelApproval {
            reason: reason.map(str::to_owned),
        };
        let answer: ApprovalView = self
            .client
            .post(&format!("/v1/approvals/{}/cancel", self.created.id), &body)
            .await?;
        match answer.status {
            ApprovalStatus::Cancelled if answer.id == self.created.id => Ok(()),
            other => Err(ApprovalError::BadAnswer(format!(
                "asked to cancel request {}, the answer says {} {other}",
                self.created.id, answer.id
            ))),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Action,
    Enrollment,
}

enum Step {
    Pending,
    /// Approved, with the token for an action request.
    Decided(Option<String>),
    /// An answer that should not last; read again after a pause.
    Inconsistent(String),
}

/// Generates the accessors both kinds of pending request share.
macro_rules! ticket_accessors {
    () => {
        /// The request's id at the gateway.
        pub fn id(&self) -> &str {
            &self.ticket.created.id
        }

        /// The gateway's page where the person decides; show it to the operator.
        pub fn approval_url(&self) -> &str {
            &self.ticket.created.approval_url
        }

        /// The match code (`NNN-NNN`) the approval page shows too, so the person can tell this
        /// request from any other; show it to the operator.
        pub fn code(&self) -> &str {
            &self.ticket.created.code
        }

        /// Unix seconds after which the request can no longer be decided.
        pub fn expires_at(&self) -> i64 {
            self.ticket.created.expires_at
        }

        /// base64url SHA-256 of the params' RFC 8785 form, as the person approves them.
        pub fn params_sha256(&self) -> &str {
            &self.ticket.created.params_sha256
        }
    };
}

/// A request waiting for a person's decision.
#[derive(Debug, Clone)]
pub struct PendingApproval {
    ticket: Ticket,
}

impl PendingApproval {
    ticket_accessors!();

    /// Waits until the request is decided, expires or is cancelled; the token comes back at
    /// once on approval. The gateway ends every request within its `ttl`, so this ends too.
    pub async fn wait(&self) -> Result<Approval, ApprovalError> {
        self.wait_inner(None).await
    }

    /// As [`wait`](Self::wait), but gives up with [`ApprovalError::TimedOut`] at `deadline`
    /// (or up to a second before, when another long poll could not end in time). The request
    /// stays pending: wait on it again rather than asking again.
    pub async fn wait_until(&self, deadline: Instant) -> Result<Approval, ApprovalError> {
        self.wait_inner(Some(deadline)).await
    }

    /// As [`wait_until`](Self::wait_until), `timeout` from now.
    pub async fn wait_timeout(&self, timeout: Duration) -> Result<Approval, ApprovalError> {
        self.wait_inner(Some(Instant::now() + timeout)).await
    }

    /// As [`wait_timeout`](Self::wait_timeout), but when `timeout` passes with no decision
    /// the request is cancelled, so that the person is not asked about something nobody waits
    /// for any more; the wait then ends in [`ApprovalError::TimedOut`]. A decision that arrives
    /// while cancelling wins: its outcome is returned instead.
    pub async fn wait_or_cancel(&self, timeout: Duration) -> Result<Approval, ApprovalError> {
        match self.wait_timeout(timeout).await {
            Err(ApprovalError::TimedOut) => {}
            other => return other,
        }
        match self.cancel(Some(TIMED_OUT_REASON)).await {
            Ok(()) => Err(ApprovalError::TimedOut),
            Err(ApprovalError::Refused {
                code: ErrorCode::NotPending,
                ..
            }) => self.wait_timeout(Duration::ZERO).await,
            Err(other) => Err(other),
        }
    }

    /// Withdraws the request: the person is no longer asked, and it can never be approved nor
    /// yield a token. `reason` (at most
    /// [`MAX_CANCEL_REASON_CHARS`](handsign_protocol::api::MAX_CANCEL_REASON_CHARS) characters) is recorded
    /// with it. A request that is no longer pending is refused with
    /// [`ErrorCode::NotPending`].
    pub async fn cancel(&self, reason: Option<&str>) -> Result<(), ApprovalError> {
        self.ticket.cancel(reason).await
    }

    async fn wait_inner(&self, deadline: Option<Instant>) -> Result<Approval, ApprovalError> {
        let token = self.ticket.follow(deadline, Kind::Action).await?;
        let token =
            token.ok_or_else(|| ApprovalError::BadAnswer("approved without a token".into()))?;
        Approval::parse(token, &self.ticket)
    }
}

/// An enrollment waiting for the user to approve this key as their agent.
#[derive(Debug, Clone)]
pub struct PendingEnrollment {
    ticket: Ticket,
}

impl PendingEnrollment {
    ticket_accessors!();

    /// Waits until the user approves (`Ok`: the agent is active now), denies (the key is
    /// revoked for good: make a new one to ask again), or the request expires.
    pub async fn wait(&self) -> Result<(), ApprovalError> {
        self.ticket.follow(None, Kind::Enrollment).await.map(|_| ())
    }

    /// As [`wait`](Self::wait), giving up with [`ApprovalError::TimedOut`] at `deadline`.
    pub async fn wait_until(&self, deadline: Instant) -> Result<(), ApprovalError> {
        self.ticket
            .follow(Some(deadline), Kind::Enrollment)
            .await
            .map(|_| ())
    }

    /// As [`wait_until`](Self::wait_until), `timeout` from now.
    pub async fn wait_timeout(&self, timeout: Duration) -> Result<(), ApprovalError> {
        self.wait_until(Instant::now() + timeout).await
    }
}

/// An approved request: the token for the service, good once within its lifetime (30 s at
/// most), and its claims decoded for convenience. The claims are as the token says; the service
/// verifies them, the agent need not. `Debug` does not show the token.
#[derive(Clone)]
pub struct Approval {
    token: String,
    claims: ApprovalClaims,
}

impl Approval {
    /// Decodes the token's claims and checks that it is for this request and this agent's key,
    /// so that a mix-up shows here rather than as a refusal at the service.
    fn parse(token: String, ticket: &Ticket) -> Result<Self, ApprovalError> {
        let bad = |what: String| ApprovalError::BadAnswer(format!("the token {what}"));
        let claims: ApprovalClaims = CompactJws::parse(&token)
            .and_then(|jws| jws.payload())
            .map_err(|e| bad(format!("cannot be read: {e}")))?;
        if claims.approval != ticket.created.id {
            return Err(bad(format!("is for request {}", claims.approval)));
        }
        if claims.params_sha256.as_str() != ticket.created.params_sha256 {
            return Err(bad("approves other params than those asked for".into()));
        }
        let agent = ticket.client.agent_id();
        if claims.cnf.as_ref().is_some_and(|cnf| cnf.jkt != agent) {
            return Err(bad("is bound to another agent's key".into()));
        }
        Ok(Approval { token, claims })
    }

    /// The compact JWT, for `Authorization: Approval <token>` (see [`Client::authorize`]).
    pub fn token(&self) -> &str {
        &self.token
    }

    pub fn into_token(self) -> String {
        self.token
    }

    /// The token's claims as it states them (unverified).
    pub fn claims(&self) -> &ApprovalClaims {
        &self.claims
    }

    /// Unix seconds at which the token stops being accepted.
    pub fn exp(&self) -> i64 {
        self.claims.exp
    }

    /// The approval request's id, which leads to its receipt.
    pub fn approval_id(&self) -> &str {
        &self.claims.approval
    }
}

impl std::fmt::Debug for Approval {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Approval")
            .field("approval", &self.claims.approval)
            .field("action", &self.claims.action)
            .field("aud", &self.claims.aud)
            .field("exp", &self.claims.exp)
            .field("token", &"<redacted>")
            .finish()
    }
}

impl Client {
    /// Asks the gateway to have a person approve `request`. Returns at once with where and
    /// how the person decides; [`PendingApproval::wait`] then waits for the decision.
    ///
    /// The gateway's refusals (an invalid action, params RFC 8785 cannot represent exactly,
    /// an unknown agent, too many pending requests) come back as [`ApprovalError::Refused`]
    /// with the gateway's code.
    pub async fn request_approval(
        &self,
        request: ApprovalRequest,
    ) -> Result<PendingApproval, ApprovalError> {
        let created: ApprovalCreated = self.post("/v1/approvals", &request.body()?).await?;
        check_params(&created, &request.params)?;
        Ok(PendingApproval {
            ticket: Ticket {
                client: self.clone(),
                created,
            },
        })
    }

    /// Asks `user` to approve this key as an agent named `name` acting for them (the agent
    /// need not be known to the gateway yet). [`PendingEnrollment::wait`] ends `Ok` once the
    /// agent is active.
    pub async fn enroll(&self, name: &str, user: &str) -> Result<PendingEnrollment, ApprovalError> {
        let body = EnrollAgent {
            name: name.to_owned(),
            user: user.to_owned(),
        };
        let created: ApprovalCreated = self.post("/v1/agents/enroll", &body).await?;
        // The person approves this key's id: check that the gateway asks about this one.
        let params = json!({"agent": self.agent_id(), "name": name.trim(), "user": user});
        check_params(&created, &params)?;
        Ok(PendingEnrollment {
            ticket: Ticket {
                client: self.clone(),
                created,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AgentKey;

    fn ticket() -> Ticket {
        Ticket {
            client: Client::new("http://localhost:1", AgentKey::generate().unwrap()).unwrap(),
            created: ApprovalCreated {
                id: "req1".into(),
                status: ApprovalStatus::Pending,
                approval_url: "http://localhost:1/approve/req1".into(),
                params_sha256: "h".into(),
                code: "123-456".into(),
                expires_at: 0,
            },
        }
    }

    /// The step for an answer with `members` and the rest of a view.
    fn step(members: Value, kind: Kind) -> Result<Step, ApprovalError> {
        let mut answer = json!({
            "action": "a", "audience": "b", "params_sha256": "h", "code": "123-456",
            "expires_at": 0,
        });
        for (name, value) in members.as_object().unwrap() {
            answer[name] = value.clone();
        }
        ticket().step(serde_json::from_value(answer).unwrap(), kind)
    }

    #[test]
    fn final_states_map_to_typed_outcomes() {
        assert!(matches!(
            step(json!({"id": "req1", "status": "pending"}), Kind::Action),
            Ok(Step::Pending)
        ));
        assert_eq!(
            step(json!({"id": "req1", "status": "denied"}), Kind::Action).err(),
            Some(ApprovalError::Denied)
        );
        assert_eq!(
            step(json!({"id": "req1", "status": "expired"}), Kind::Action).err(),
            Some(ApprovalError::Expired)
        );
        assert_eq!(
            step(json!({"id": "req1", "status": "cancelled"}), Kind::Action).err(),
            Some(ApprovalError::Cancelled { reason: None })
        );
        assert_eq!(
            step(
                json!({"id": "req1", "status": "cancelled", "reason": "agent revoked"}),
                Kind::Action
            )
            .err(),
            Some(ApprovalError::Cancelled {
                reason: Some("agent revoked".into())
            })
        );
        assert_eq!(
            step(
                json!({"id": "req1", "status": "approved", "token_delivered": true}),
                Kind::Action
            )
            .err(),
            Some(ApprovalError::TokenAlreadyCollected)
        );
        assert!(matches!(
            step(
                json!({"id": "req1", "status": "approved"}),
                Kind::Enrollment
            ),
            Ok(Step::Decided(None))
        ));
        assert!(matches!(
            step(json!({"id": "other", "status": "denied"}), Kind::Action),
            Err(ApprovalError::BadAnswer(_))
        ));
    }

    #[test]
    fn a_params_hash_other_than_the_params_sent_is_refused() {
        let mut created = ticket().created;
        let params = json!({"b": 1, "a": [1.0]});
        created.params_sha256 = CanonicalParams::from_value(&params, &Limits::default())
            .unwrap()
            .hash()
            .to_string();
        assert!(check_params(&created, &params).is_ok());
        assert!(matches!(
            check_params(&created, &json!({"b": 2, "a": [1.0]})),
            Err(ApprovalError::BadAnswer(_))
        ));
    }

    #[test]
    fn request_body_leaves_out_what_is_not_set() {
        let body = ApprovalRequest::new("flights.book", json!({"to": "NYC"}), "https://t.example")
            .ttl(60)
            .body()
            .unwrap();
        assert_eq!(
            serde_json::to_value(body).unwrap(),
            json!({"action": "flights.book", "params": {"to": "NYC"}, "audience": "https://t.example", "ttl": 60})
        );
    }
}
