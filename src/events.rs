//! Wake-ups: when a request changes (created, decided, cancelled), everyone waiting on it, or on
//! its user's list of requests, is woken at once. Waiters re-read the store; an event carries
//! no authority and no state, only "look again".
//!
//! Each waiter subscribes to one request (an agent's long poll or event stream, an expiry
//! watcher) or to one user's requests (a dashboard), and hears only those: a change wakes its
//! own waiters and nobody else, so deciding costs the same with ten thousand agents waiting on
//! other requests as with none. As in mini-redis's pub/sub, there is one sender per key that has
//! subscribers, made by the first subscription and removed with the last, so the number of
//! senders is bounded by the number of waiters.
//!
//! With several gateway instances, a change made on one must wake waiters on all: [`Events`]
//! then also hands each change to an outbox that a relay publishes (Redis pub/sub, see
//! `store::redis::shared_events`), and the relay delivers other instances' changes through an
//! [`Inbox`], which wakes the same local waiters by id.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use tokio::sync::{broadcast, mpsc};

use crate::domain::{ApprovalId, UserId};

/// Something happened to a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalChanged {
    pub id: ApprovalId,
    pub user: UserId,
}

/// What a relay delivers from other instances.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Approval(ApprovalChanged),
    /// Changes may have been missed (the link to the other instances was down): every waiter
    /// looks again.
    Unknown,
}

/// What a user's waiters (dashboards) are told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserChange {
    /// This request of the user's changed.
    Approval(ApprovalId),
    /// Changes may have been missed: look at every request again.
    Unknown,
}

/// Changes of one request held for a waiter that has not looked yet; past this it is told it
/// lagged, and looks again, which is all it would have done anyway.
const APPROVAL_BACKLOG: usize = 4;
/// The same for one user's dashboards, which see all of the user's requests.
const USER_BACKLOG: usize = 64;

/// Fan-out of changes to this instance's waiters, and of this instance's changes to the others
/// when there are others.
#[derive(Debug, Clone)]
pub struct Events {
    hub: Arc<Hub>,
    outbox: Option<mpsc::UnboundedSender<ApprovalChanged>>,
}

/// The waiters of this instance, by request and by user.
#[derive(Debug)]
struct Hub {
    approvals: Arc<Topics<ApprovalId, ()>>,
    users: Arc<Topics<UserId, UserChange>>,
}

impl Default for Events {
    fn default() -> Self {
        Self::new(None)
    }
}

impl Events {
    fn new(outbox: Option<mpsc::UnboundedSender<ApprovalChanged>>) -> Self {
        Events {
            hub: Arc::new(Hub {
                approvals: Arc::new(Topics::new(APPROVAL_BACKLOG)),
                users: Arc::new(Topics::new(USER_BACKLOG)),
            }),
            outbox,
        }
    }

    /// Events shared with other instances: every change published here is also sent to
    /// `outbox`, and the relay delivers the others' changes through [`Events::inbox`].
    pub fn shared(outbox: mpsc::UnboundedSender<ApprovalChanged>) -> Self {
        Self::new(Some(outbox))
    }

    /// Wakes the waiters of request `id` and of its `user`, here and on the other instances.
    pub fn publish(&self, id: &ApprovalId, user: &UserId) {
        let change = ApprovalChanged {
            id: id.clone(),
            user: user.clone(),
        };
        self.hub.deliver(&change);
        if let Some(outbox) = &self.outbox {
            // Closed only when the relay has stopped, at shutdown.
            let _ = outbox.send(change);
        }
    }

    /// A handle for a relay, which delivers other instances' changes here without keeping
    /// this instance's events alive.
    pub fn inbox(&self) -> Inbox {
        Inbox(Arc::downgrade(&self.hub))
    }

    /// How many subscriptions are open now (for measurements that must start once a waiter is
    /// parked).
    pub fn waiters(&self) -> usize {
        self.hub.approvals.subscribed() + self.hub.users.subscribed()
    }

    /// How many requests and users have a sender now: one per key with waiters, none left
    /// once they have gone.
    pub fn senders(&self) -> usize {
        self.hub.approvals.len() + self.hub.users.len()
    }

    /// Waits for changes of request `id`. Subscribe before reading the state, so that a change
    /// between the read and the wait is not missed.
    pub fn approval(&self, id: &ApprovalId) -> ApprovalWaiter {
        ApprovalWaiter(Topics::subscribe(&self.hub.approvals, id))
    }

    /// Waits for changes of any of `user`'s requests, as [`approval`](Self::approval) does.
    pub fn user(&self, user: &UserId) -> UserWaiter {
        UserWaiter(Topics::subscribe(&self.hub.users, user))
    }
}

impl Hub {
    fn deliver(&self, change: &ApprovalChanged) {
        self.approvals.send(&change.id, ());
        self.users
            .send(&change.user, UserChange::Approval(change.id.clone()));
    }

    fn deliver_unknown(&self) {
        self.approvals.send_all(());
        self.users.send_all(UserChange::Unknown);
    }
}

/// Delivers changes from elsewhere to this instance's waiters; see [`Events::inbox`].
#[derive(Debug, Clone)]
pub struct Inbox(Weak<Hub>);

impl Inbox {
    /// Whether this instance's events still exist (the gateway has not stopped).
    pub fn is_open(&self) -> bool {
        self.0.strong_count() > 0
    }

    /// `false` once this instance's events are gone (the gateway stopped).
    pub fn deliver(&self, change: Change) -> bool {
        let Some(hub) = self.0.upgrade() else {
            return false;
        };
        match change {
            Change::Approval(change) => hub.deliver(&change),
            Change::Unknown => hub.deliver_unknown(),
        }
        true
    }
}

/// A subscription to one request's changes.
#[derive(Debug)]
pub struct ApprovalWaiter(Subscription<ApprovalId, ()>);

impl ApprovalWaiter {
    /// Waits until the request changes (or may have: changes were missed), or `deadline`
    /// completes (a wait on the gateway's clock). Returns whether it was woken before the
    /// deadline.
    pub async fn changed_before(&mut self, deadline: impl Future<Output = ()>) -> bool {
        let mut deadline = std::pin::pin!(deadline);
        tokio::select! {
            // A change that is already there counts, even at the deadline.
            biased;
            changed = self.0.recv() => match changed {
                Ok(()) | Err(broadcast::error::RecvError::Lagged(_)) => true,
                // Only when the gateway's events are gone; the deadline still bounds the wait.
                Err(broadcast::error::RecvError::Closed) => {
                    deadline.await;
                    false
                }
            },
            () = &mut deadline => false,
        }
    }
}

/// A subscription to one user's requests' changes.
#[derive(Debug)]
pub struct UserWaiter(Subscription<UserId, UserChange>);

impl UserWaiter {
    /// The next change; `None` once the gateway's events are gone.
    pub async fn next(&mut self) -> Option<UserChange> {
        match self.0.recv().await {
            Ok(change) => Some(change),
            Err(broadcast::error::RecvError::Lagged(_)) => Some(UserChange::Unknown),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }
}

/// One sender per key that has subscribers.
#[derive(Debug)]
struct Topics<K, T> {
    senders: Mutex<HashMap<K, broadcast::Sender<T>>>,
    backlog: usize,
    subscribed: AtomicUsize,
}

impl<K, T> Topics<K, T> {
    /// The map; a panic elsewhere while it was held leaves it consistent (each step is one
    /// map operation), so it is used as it is.
    fn senders(&self) -> MutexGuard<'_, HashMap<K, broadcast::Sender<T>>> {
        self.senders.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<K: Hash + Eq + Clone, T: Clone> Topics<K, T> {
    fn new(backlog: usize) -> Self {
        Topics {
            senders: Mutex::new(HashMap::new()),
            backlog,
            subscribed: AtomicUsize::new(0),
        }
    }

    fn subscribe(topics: &Arc<Self>, key: &K) -> Subscription<K, T> {
        let receiver = topics
            .senders()
            .entry(key.clone())
            .or_insert_with(|| broadcast::channel(topics.backlog).0)
            .subscribe();
        topics.subscribed.fetch_add(1, Ordering::Relaxed);
        Subscription {
            receiver: Some(receiver),
            key: key.clone(),
            topics: Arc::downgrade(topics),
        }
    }

    fn send(&self, key: &K, message: T) {
        if let Some(sender) = self.senders().get(key) {
            // No receivers left is fine: the last one is removing the sender.
            let _ = sender.send(message);
        }
    }

    fn send_all(&self, message: T) {
        for sender in self.senders().values() {
            let _ = sender.send(message.clone());
        }
    }

    fn subscribed(&self) -> usize {
        self.subscribed.load(Ordering::Relaxed)
    }

    fn len(&self) -> usize {
        self.senders().len()
    }
}

/// A receiver for one key; the last one to go removes the key's sender.
#[derive(Debug)]
struct Subscription<K: Hash + Eq, T> {
    /// Taken only when dropped.
    receiver: Option<broadcast::Receiver<T>>,
    key: K,
    topics: Weak<Topics<K, T>>,
}

impl<K: Hash + Eq, T: Clone> Subscription<K, T> {
    async fn recv(&mut self) -> Result<T, broadcast::error::RecvError> {
        match &mut self.receiver {
            Some(receiver) => receiver.recv().await,
            None => Err(broadcast::error::RecvError::Closed),
        }
    }
}

impl<K: Hash + Eq, T> Drop for Subscription<K, T> {
    fn drop(&mut self) {
        let Some(topics) = self.topics.upgrade() else {
            return;
        };
        topics.subscribed.fetch_sub(1, Ordering::Relaxed);
        let mut senders = topics.senders();
        // Under the lock, as subscriptions are added, so that of two last receivers going at
        // once exactly one sees none left.
        drop(self.receiver.take());
        if senders
            .get(&self.key)
            .is_some_and(|sender| sender.receiver_count() == 0)
        {
            senders.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn soon() -> tokio::time::Sleep {
        tokio::time::sleep(Duration::from_secs(5))
    }

    fn now() -> std::future::Ready<()> {
        std::future::ready(())
    }

    #[tokio::test]
    async fn a_change_wakes_only_its_own_waiters() {
        let events = Events::default();
        let alice = UserId::parse("alice").unwrap();
        let (mine, other) = (
            ApprovalId::generate().unwrap(),
            ApprovalId::generate().unwrap(),
        );
        let mut waiter = events.approval(&mine);
        let mut bystander = events.approval(&other);
        let mut dashboard = events.user(&alice);
        events.publish(&mine, &alice);
        assert!(waiter.changed_before(soon()).await);
        assert!(!bystander.changed_before(now()).await);
        assert_eq!(dashboard.next().await, Some(UserChange::Approval(mine)));
    }

    #[tokio::test]
    async fn other_users_dashboards_hear_nothing() {
        let events = Events::default();
        let (alice, bob) = (
            UserId::parse("alice").unwrap(),
            UserId::parse("bob").unwrap(),
        );
        let mut bobs = events.user(&bob);
        events.publish(&ApprovalId::generate().unwrap(), &alice);
        let id = ApprovalId::generate().unwrap();
        events.publish(&id, &bob);
        assert_eq!(bobs.next().await, Some(UserChange::Approval(id)));
    }

    #[tokio::test]
    async fn the_last_waiter_to_go_removes_the_sender() {
        let events = Events::default();
        let id = ApprovalId::generate().unwrap();
        let first = events.approval(&id);
        let second = events.approval(&id);
        assert_eq!((events.senders(), events.waiters()), (1, 2));
        drop(first);
        assert_eq!((events.senders(), events.waiters()), (1, 1));
        drop(second);
        assert_eq!((events.senders(), events.waiters()), (0, 0));
        // Publishing to a request nobody waits for leaves nothing behind.
        events.publish(&id, &UserId::parse("alice").unwrap());
        assert_eq!(events.senders(), 0);
    }

    #[tokio::test]
    async fn changes_from_elsewhere_wake_by_id_and_unknown_wakes_everyone() {
        let events = Events::default();
        let inbox = events.inbox();
        let alice = UserId::parse("alice").unwrap();
        let (mine, other) = (
            ApprovalId::generate().unwrap(),
            ApprovalId::generate().unwrap(),
        );
        let mut waiter = events.approval(&mine);
        let mut bystander = events.approval(&other);
        let mut dashboard = events.user(&alice);
        assert!(inbox.deliver(Change::Approval(ApprovalChanged {
            id: mine.clone(),
            user: alice.clone(),
        })));
        assert!(waiter.changed_before(soon()).await);
        assert!(!bystander.changed_before(now()).await);
        assert_eq!(dashboard.next().await, Some(UserChange::Approval(mine)));
        assert!(inbox.deliver(Change::Unknown));
        assert!(waiter.changed_before(soon()).await);
        assert!(bystander.changed_before(soon()).await);
        assert_eq!(dashboard.next().await, Some(UserChange::Unknown));
        drop(events);
        assert!(!inbox.is_open());
        assert!(!inbox.deliver(Change::Unknown));
    }

    #[tokio::test]
    async fn a_waiter_that_falls_behind_is_told_to_look_again() {
        let events = Events::default();
        let alice = UserId::parse("alice").unwrap();
        let mut dashboard = events.user(&alice);
        for _ in 0..=USER_BACKLOG {
            events.publish(&ApprovalId::generate().unwrap(), &alice);
        }
        assert_eq!(dashboard.next().await, Some(UserChange::Unknown));
    }
}
