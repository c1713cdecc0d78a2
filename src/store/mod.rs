//! Storage: one interface for everything the gateway keeps, with an embedded implementation (a
//! single redb file in the data directory) and, for several gateway instances, Redis.
//!
//! Everything that must happen once is one method here, atomic in every implementation: taking a
//! ceremony state, redeeming an invitation, recording a decision, delivering a token, remembering
//! a DPoP `jti`. Callers never read-then-write to decide such things. When the store cannot be
//! reached every method fails with [`StoreError::Unavailable`], and the gateway fails closed.

pub mod embedded;
pub mod instrumented;
pub mod redis;
mod threads;

use async_trait::async_trait;
use handsign_protocol::receipt::Receipt;

use crate::domain::{
    AgentRecord, AgentStatus, ApprovalId, ApprovalRecord, ApprovalState, ApprovalStatus,
    InvitationRecord, PasskeyRecord, PushSubscriptionRecord, SessionRecord, UserId, UserRecord,
};

/// Why a store operation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store could not be reached or failed; nothing may be assumed about the operation.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// The record already exists (a user name taken, an agent key enrolled twice).
    #[error("{0} already exists")]
    AlreadyExists(&'static str),
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The invitation or setup code is unknown, used or expired.
    #[error("the invitation code is unknown, used or expired")]
    InvalidInvitation,
    /// The user has as many enrollments waiting for a decision as they may.
    #[error("{limit} agents are already waiting for their enrollment to be decided")]
    TooManyEnrollments { limit: usize },
    /// The agent has as many pending requests as it may.
    #[error("the agent already has {limit} pending requests, the most it may have")]
    TooManyPending { limit: usize },
    /// The agent may not do this in its current status (e.g. a suspended agent asking, or a
    /// revoked agent being resumed).
    #[error("the agent is {}", .0.as_str())]
    AgentInactive(AgentStatus),
    /// The request is not pending any more (decided, expired or cancelled).
    #[error("the request is {0} and cannot be decided")]
    NotPending(ApprovalStatus),
}

/// A person's decision on a pending request, with its signed receipt: the only two things
/// [`Store::decide`] can record, so no caller can ask it to "decide" a request back to pending,
/// cancel it, or mark its token delivered.
#[derive(Debug, Clone)]
pub enum Decision {
    Approved {
        decided_at: i64,
        receipt: Box<Receipt>,
    },
    Denied {
        decided_at: i64,
        receipt: Box<Receipt>,
    },
}

impl Decision {
    pub fn decided_at(&self) -> i64 {
        match self {
            Decision::Approved { decided_at, .. } | Decision::Denied { decided_at, .. } => {
                *decided_at
            }
        }
    }

    /// The status the request has once decided so.
    pub fn status(&self) -> ApprovalStatus {
        match self {
            Decision::Approved { .. } => ApprovalStatus::Approved,
            Decision::Denied { .. } => ApprovalStatus::Denied,
        }
    }
}

impl From<Decision> for ApprovalState {
    /// An approval is recorded with its token not yet delivered.
    fn from(decision: Decision) -> Self {
        match decision {
            Decision::Approved {
                decided_at,
                receipt,
            } => ApprovalState::Approved {
                decided_at,
                receipt,
                token_delivered_at: None,
            },
            Decision::Denied {
                decided_at,
                receipt,
            } => ApprovalState::Denied {
                decided_at,
                receipt,
            },
        }
    }
}

/// The answer to an agent collecting its token.
#[derive(Debug, Clone)]
pub enum Collection {
    /// Approved and not collected before: this caller, and only this one, mints the token.
    Deliver(ApprovalRecord),
    /// Anything else: the request as it stands (pending, denied, expired, already delivered).
    Unchanged(ApprovalRecord),
}

/// Which requests a listing returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApprovalFilter {
    /// Pending at `now`.
    Pending,
    /// Everything else, newest first.
    History,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    // Users and passkeys.

    async fn count_users(&self) -> Result<usize, StoreError>;
    async fn user(&self, id: &UserId) -> Result<Option<UserRecord>, StoreError>;
    async fn users(&self) -> Result<Vec<UserRecord>, StoreError>;
    /// Stores an invitation (or the setup code), replacing any with the same code hash.
    async fn put_invitation(&self, invitation: &InvitationRecord) -> Result<(), StoreError>;
    /// The invitation with this code hash if it exists and has not expired at `now`.
    async fn invitation(
        &self,
        code_sha256: &str,
        now: i64,
    ) -> Result<Option<InvitationRecord>, StoreError>;
    /// Atomically: consumes the invitation (which must exist, be unexpired at `now`, and be for
    /// `user` when it names one), creates `user` with the passkey. An invitation only ever
    /// creates a user: `AlreadyExists("user")` when `user` exists (so every other invitation for
    /// a name dies when that user is created), and a setup code (naming no user) is
    /// `InvalidInvitation` once any user exists. Refused, the invitation stays unused.
    async fn redeem_invitation(
        &self,
        code_sha256: &str,
        user: &UserRecord,
        passkey: &PasskeyRecord,
        now: i64,
    ) -> Result<(), StoreError>;
    /// Adds a passkey to an existing user (`NotFound("user")` otherwise); a credential id already
    /// registered is `AlreadyExists("passkey")`.
    async fn add_passkey(&self, passkey: &PasskeyRecord) -> Result<(), StoreError>;
    /// Makes `user` an admin or not; `NotFound("user")` when there is no such user.
    async fn set_admin(&self, user: &UserId, admin: bool) -> Result<UserRecord, StoreError>;
    async fn passkeys(&self, user: &UserId) -> Result<Vec<PasskeyRecord>, StoreError>;
    async fn passkey(&self, credential_id: &str) -> Result<Option<PasskeyRecord>, StoreError>;
    /// Replaces a stored passkey (counter and last use after an assertion).
    async fn update_passkey(&self, passkey: &PasskeyRecord) -> Result<(), StoreError>;
    async fn delete_passkey(&self, user: &UserId, credential_id: &str) -> Result<(), StoreError>;

    // Devices that receive push notifications.

    /// Adds a device; a subscription with the same endpoint for the same user replaces the old
    /// one (a browser that subscribes again gets new keys).
    async fn add_push_subscription(
        &self,
        subscription: &PushSubscriptionRecord,
    ) -> Result<(), StoreError>;
    async fn push_subscriptions(
        &self,
        user: &UserId,
    ) -> Result<Vec<PushSubscriptionRecord>, StoreError>;
    /// Removes `user`'s device `id`; `NotFound("device")` when `user` has no such device.
    async fn delete_push_subscription(&self, user: &UserId, id: &str) -> Result<(), StoreError>;

    // Sessions and ceremonies.

    async fn put_session(&self, session: &SessionRecord) -> Result<(), StoreError>;
    /// The session if it exists and has not expired at `now`.
    async fn session(&self, id_sha256: &str, now: i64)
    -> Result<Option<SessionRecord>, StoreError>;
    async fn delete_session(&self, id_sha256: &str) -> Result<(), StoreError>;
    /// Stores a WebAuthn ceremony's state until `expires_at`.
    async fn put_ceremony(&self, id: &str, state: &[u8], expires_at: i64)
    -> Result<(), StoreError>;
    /// Removes and returns a ceremony's state, if present and unexpired at `now`. Two callers
    /// taking the same id concurrently: exactly one gets it.
    async fn take_ceremony(&self, id: &str, now: i64) -> Result<Option<Vec<u8>>, StoreError>;

    // Agents.

    /// Adds an agent; an agent with the same id is `AlreadyExists("agent")`.
    async fn add_agent(&self, agent: &AgentRecord) -> Result<(), StoreError>;
    /// Adds an agent that asked to enroll (status pending, with its enrollment's expiry) unless
    /// an agent with its id exists at `now` (`AlreadyExists("agent")`) or its user already has
    /// `max_enrolling` agents whose enrollment is pending at `now` (`TooManyEnrollments`). In
    /// the same step the user's agents whose enrollment expired undecided are deleted.
    async fn add_enrolling_agent(
        &self,
        agent: &AgentRecord,
        max_enrolling: usize,
        now: i64,
    ) -> Result<(), StoreError>;
    async fn agent(&self, id: &str) -> Result<Option<AgentRecord>, StoreError>;
    /// Agents of `user`, or every agent when `None`.
    async fn agents(&self, user: Option<&UserId>) -> Result<Vec<AgentRecord>, StoreError>;
    /// Sets an agent's status; revoking also cancels its pending requests, in the same
    /// operation, with the reason "agent revoked". A revoked agent stays revoked:
    /// `AgentInactive(Revoked)`.
    async fn set_agent_status(
        &self,
        id: &str,
        status: AgentStatus,
        now: i64,
    ) -> Result<AgentRecord, StoreError>;

    // Approval requests.

    /// Stores a new request unless its agent already has `max_pending` requests pending at `now`,
    /// checking in the same operation that the agent may ask: active for an action, pending for
    /// its enrollment (`AgentInactive` otherwise), so a request cannot slip past a revocation.
    /// An id already stored is `AlreadyExists("approval")`.
    async fn create_approval(
        &self,
        approval: &ApprovalRecord,
        max_pending: usize,
        now: i64,
    ) -> Result<(), StoreError>;
    async fn approval(&self, id: &ApprovalId) -> Result<Option<ApprovalRecord>, StoreError>;
    /// Records a decision if the request is pending at `now`; otherwise
    /// `NotPending` with the status it has. Returns the updated record. Of two concurrent
    /// decisions exactly one succeeds. Deciding an enrollment sets its agent active (approved)
    /// or revoked (denied) in the same operation. Unknown ids are `NotFound("approval")`.
    async fn decide(
        &self,
        id: &ApprovalId,
        decision: Decision,
        now: i64,
    ) -> Result<ApprovalRecord, StoreError>;
    /// Cancels `agent`'s request `id` if it is pending at `now`, recording `reason`, and takes
    /// it out of the pending indexes in the same step, so it can never be decided nor yield a
    /// token. Returns the updated record. An unknown id, or a request of another agent, is
    /// `NotFound("approval")`; a request no longer pending is `NotPending` with its status.
    async fn cancel_approval(
        &self,
        id: &ApprovalId,
        agent: &str,
        reason: &str,
        now: i64,
    ) -> Result<ApprovalRecord, StoreError>;
    /// Records that the agent of request `id` waits for its outcome until `until`, kept until
    /// `expires_at` (the request's). The recorded time is only raised, and only when `until`
    /// is at least [`AGENT_WAITING_STEP_SECS`](crate::domain::AGENT_WAITING_STEP_SECS) past
    /// it: an agent polling in a loop writes at most once per step.
    async fn note_agent_waiting(
        &self,
        id: &ApprovalId,
        until: i64,
        expires_at: i64,
    ) -> Result<(), StoreError>;
    /// Until when the agent of request `id` was last known to wait (see
    /// [`note_agent_waiting`](Store::note_agent_waiting)) as read at `now`; `None` if it never
    /// waited. Once the request has expired, the record may be gone.
    async fn agent_waiting_until(
        &self,
        id: &ApprovalId,
        now: i64,
    ) -> Result<Option<i64>, StoreError>;
    /// Marks the token delivered if the request is approved, not yet delivered and not expired at
    /// `now`, and returns [`Collection::Deliver`]; of two concurrent collections exactly one gets
    /// it. Otherwise returns the record unchanged. A deliverable token whose agent is not active
    /// is `AgentInactive`: the agent's status is read in the same step, so a suspension or
    /// revocation before the collection always stops the token.
    async fn collect_token(&self, id: &ApprovalId, now: i64) -> Result<Collection, StoreError>;
    /// How many requests, of every user and agent, are pending at `now` (stored as pending and
    /// not expired): the gateway's `handsign_pending_requests` gauge, read at each scrape. A
    /// store shared by several gateway instances counts them all, so every instance reports
    /// the same number.
    async fn pending_count(&self, now: i64) -> Result<usize, StoreError>;
    /// Requests of `user` matching `filter` at `now`, newest first, at most `limit`.
    async fn approvals(
        &self,
        user: &UserId,
        filter: ApprovalFilter,
        now: i64,
        limit: usize,
    ) -> Result<Vec<ApprovalRecord>, StoreError>;

    // Replay and rate limits.

    /// Records a DPoP proof's `jti` (scoped by the caller, e.g. with the key thumbprint) until
    /// `expires_at`; `true` if it was not seen before, `false` for a replay.
    async fn remember_jti(&self, key: &str, expires_at: i64, now: i64) -> Result<bool, StoreError>;
    /// Counts one event for `key` in the fixed window `[window_start, window_start + window)`
    /// and returns the count including this one.
    async fn count_in_window(
        &self,
        key: &str,
        window_start: i64,
        window: i64,
    ) -> Result<u64, StoreError>;

    /// Whether the store answers (for `/readyz`).
    async fn ping(&self) -> Result<(), StoreError>;
}
