//! The life of an approval request over the store, the change events and the notifier, in one
//! place: each step is written to the store first, then its waiters are woken, then people and
//! webhooks are told. Handlers parse, call one of these, and render the answer.
//!
//! Nothing here is an authority check: the caller has authenticated the agent or verified the
//! person's passkey before calling.

use std::sync::Arc;

use crate::domain::{AgentStatus, ApprovalId, ApprovalKind, ApprovalRecord, UserId};
use crate::events::Events;
use crate::notify::Notifier;
use crate::store::{ApprovalFilter, Collection, Decision, Store, StoreError};

/// The approval service; clones share the same store, events and notifier.
#[derive(Clone)]
pub struct Approvals {
    store: Arc<dyn Store>,
    events: Events,
    notifier: Notifier,
}

impl Approvals {
    pub fn new(store: Arc<dyn Store>, events: Events, notifier: Notifier) -> Self {
        Approvals {
            store,
            events,
            notifier,
        }
    }

    /// Stores a new pending request (unless its agent has `max_pending` already), wakes its
    /// user's dashboards and notifies the person.
    pub async fn create(
        &self,
        approval: &ApprovalRecord,
        max_pending: usize,
        now: i64,
    ) -> Result<(), StoreError> {
        self.store
            .create_approval(approval, max_pending, now)
            .await?;
        self.events.publish(&approval.id, &approval.user);
        self.notifier.approval_created(approval);
        Ok(())
    }

    /// Records a person's decision (`decided`: approved or denied, with its receipt) on a
    /// pending request, wakes the agent waiting for it, and tells the webhooks; an approved
    /// enrollment also reports the new agent.
    pub async fn decide(
        &self,
        id: &ApprovalId,
        decided: Decision,
        now: i64,
    ) -> Result<ApprovalRecord, StoreError> {
        let approved = matches!(decided, Decision::Approved { .. });
        let decided = self.store.decide(id, decided, now).await?;
        self.events.publish(&decided.id, &decided.user);
        self.notifier.approval_decided(&decided);
        if decided.kind == ApprovalKind::Enrollment
            && approved
            && let Some(agent) = self.store.agent(&decided.agent).await?
        {
            self.notifier.agent_enrolled(&agent);
        }
        Ok(decided)
    }

    /// Delivers the token of an approved request: the first collection gets the request to
    /// mint from, every later one [`Collection`] says why not. Once only, also across instances.
    /// A delivery wakes the request's waiters, so that the pages show the token collected.
    pub async fn deliver(&self, id: &ApprovalId, now: i64) -> Result<Collection, StoreError> {
        let collection = self.store.collect_token(id, now).await?;
        if let Collection::Deliver(collected) = &collection {
            self.events.publish(&collected.id, &collected.user);
        }
        Ok(collection)
    }

    /// Cancels a pending request for the agent that asked for it (`agent`), recording `reason`,
    /// and wakes its waiters: the page and the dashboard stop offering a decision.
    pub async fn cancel(
        &self,
        id: &ApprovalId,
        agent: &str,
        reason: &str,
        now: i64,
    ) -> Result<ApprovalRecord, StoreError> {
        let cancelled = self.store.cancel_approval(id, agent, reason, now).await?;
        self.events.publish(&cancelled.id, &cancelled.user);
        Ok(cancelled)
    }

    /// The pending requests of `agent` (of `user`), which setting it to `status` cancels when
    /// that status is `Revoked`; after the change, [`cancelled`](Self::cancelled) wakes their
    /// waiters.
    pub async fn cancelled_by(
        &self,
        user: &UserId,
        agent: &str,
        status: AgentStatus,
        now: i64,
    ) -> Result<Vec<ApprovalId>, StoreError> {
        if status != AgentStatus::Revoked {
            return Ok(Vec::new());
        }
        Ok(self
            .store
            .approvals(user, ApprovalFilter::Pending, now, usize::MAX)
            .await?
            .into_iter()
            .filter(|approval| approval.agent == agent)
            .map(|approval| approval.id)
            .collect())
    }

    /// Requests of `user` that were cancelled in the store: their waiters look again and see it.
    pub fn cancelled(&self, user: &UserId, ids: &[ApprovalId]) {
        for id in ids {
            self.events.publish(id, user);
        }
    }
}
