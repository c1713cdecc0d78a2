//! Wake-ups: when a request changes (created, decided, cancelled), everyone waiting on it, or on
//! its user's list of requests, is woken at once. Waiters re-read the store; an event carries
//! no authority and no state, only "look again".

use tokio::sync::broadcast;

use crate::domain::{ApprovalId, UserId};

/// Something happened to a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalChanged {
    pub id: ApprovalId,
    pub user: UserId,
}

/// In-process fan-out of [`ApprovalChanged`].
#[derive(Debug, Clone)]
pub struct Events {
    sender: broadcast::Sender<ApprovalChanged>,
}

impl Default for Events {
    fn default() -> Self {
        // A waiter that falls this far behind sees `Lagged` and re-reads, which is all it would
        // have done anyway.
        let (sender, _) = broadcast::channel(1024);
        Events { sender }
    }
}

impl Events {
    pub fn publish(&self, id: &ApprovalId, user: &UserId) {
        // No receivers is fine: nobody is waiting.
        let _ = self.sender.send(ApprovalChanged {
            id: id.clone(),
            user: user.clone(),
        });
    }

    /// How many are waiting now (for measurements that must start once a waiter is parked).
    pub fn waiters(&self) -> usize {
        self.sender.receiver_count()
    }

    /// Subscribe before reading the state, so that a change between the read and the wait is
    /// not missed.
    pub fn subscribe(&self) -> broadcast::Receiver<ApprovalChanged> {
        self.sender.subscribe()
    }
}

/// Waits until an event for which `matches` holds arrives (or the channel lags, which may have
/// hidden one), or `deadline` passes. Returns whether it was woken before the deadline.
pub async fn wait_for(
    receiver: &mut broadcast::Receiver<ApprovalChanged>,
    deadline: tokio::time::Instant,
    matches: impl Fn(&ApprovalChanged) -> bool,
) -> bool {
    loop {
        match tokio::time::timeout_at(deadline, receiver.recv()).await {
            Err(_) => return false,
            Ok(Ok(event)) if matches(&event) => return true,
            Ok(Ok(_)) => continue,
            Ok(Err(broadcast::error::RecvError::Lagged(_))) => return true,
            Ok(Err(broadcast::error::RecvError::Closed)) => return false,
        }
    }
}
