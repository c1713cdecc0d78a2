//! Wake-ups: when a request changes (created, decided, cancelled), everyone waiting on it, or on
//! its user's list of requests, is woken at once. Waiters re-read the store; an event carries
//! no authority and no state, only "look again".
//!
//! With several gateway instances, a change made on one must wake waiters on all: [`Events`]
//! then also hands each change to an outbox that a relay publishes (Redis pub/sub, see
//! `store::redis::shared_events`), and the relay delivers other instances' changes through an
//! [`Inbox`].

use tokio::sync::{broadcast, mpsc};

use crate::domain::{ApprovalId, UserId};

/// Something happened to a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalChanged {
    pub id: ApprovalId,
    pub user: UserId,
}

/// What waiters are told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Approval(ApprovalChanged),
    /// Changes may have been missed (the link to the other instances was down): every waiter
    /// looks again.
    Unknown,
}

/// Fan-out of [`Change`]s to this instance's waiters, and of this instance's changes to the
/// others when there are others.
#[derive(Debug, Clone)]
pub struct Events {
    sender: broadcast::Sender<Change>,
    outbox: Option<mpsc::UnboundedSender<ApprovalChanged>>,
}

impl Default for Events {
    fn default() -> Self {
        Self::new(None)
    }
}

impl Events {
    fn new(outbox: Option<mpsc::UnboundedSender<ApprovalChanged>>) -> Self {
        // A waiter that falls this far behind sees `Lagged` and re-reads, which is all it would
        // have done anyway.
        let (sender, _) = broadcast::channel(1024);
        Events { sender, outbox }
    }

    /// Events shared with other instances: every change published here is also sent to
    /// `outbox`, and the relay delivers the others' changes through [`Events::inbox`].
    pub fn shared(outbox: mpsc::UnboundedSender<ApprovalChanged>) -> Self {
        Self::new(Some(outbox))
    }

    pub fn publish(&self, id: &ApprovalId, user: &UserId) {
        let change = ApprovalChanged {
            id: id.clone(),
            user: user.clone(),
        };
        if let Some(outbox) = &self.outbox {
            // Closed only when the relay has stopped, at shutdown.
            let _ = outbox.send(change.clone());
        }
        // No receivers is fine: nobody is waiting.
        let _ = self.sender.send(Change::Approval(change));
    }

    /// A handle for a relay, which delivers other instances' changes here without keeping
    /// this instance's events alive.
    pub fn inbox(&self) -> Inbox {
        Inbox(self.sender.downgrade())
    }

    /// How many are waiting now (for measurements that must start once a waiter is parked).
    pub fn waiters(&self) -> usize {
        self.sender.receiver_count()
    }

    /// Subscribe before reading the state, so that a change between the read and the wait is
    /// not missed.
    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.sender.subscribe()
    }
}

/// Delivers changes from elsewhere to this instance's waiters; see [`Events::inbox`].
#[derive(Debug, Clone)]
pub struct Inbox(broadcast::WeakSender<Change>);

impl Inbox {
    /// Whether this instance's events still exist (the gateway has not stopped).
    pub fn is_open(&self) -> bool {
        self.0.strong_count() > 0
    }

    /// `false` once this instance's events are gone (the gateway stopped).
    pub fn deliver(&self, change: Change) -> bool {
        match self.0.upgrade() {
            Some(sender) => {
                let _ = sender.send(change);
                true
            }
            None => false,
        }
    }
}

/// Waits until an event for which `matches` holds arrives (or one that may have hidden one:
/// the channel lagged, or changes were missed), or `deadline` passes. Returns whether it was
/// woken before the deadline.
pub async fn wait_for(
    receiver: &mut broadcast::Receiver<Change>,
    deadline: tokio::time::Instant,
    matches: impl Fn(&ApprovalChanged) -> bool,
) -> bool {
    loop {
        match tokio::time::timeout_at(deadline, receiver.recv()).await {
            Err(_) => return false,
            Ok(Ok(Change::Approval(event))) if matches(&event) => return true,
            Ok(Ok(Change::Approval(_))) => continue,
            Ok(Ok(Change::Unknown)) => return true,
            Ok(Err(broadcast::error::RecvError::Lagged(_))) => return true,
            Ok(Err(broadcast::error::RecvError::Closed)) => return false,
        }
    }
}
