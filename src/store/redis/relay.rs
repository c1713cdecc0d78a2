//! Changes between gateway instances over Redis pub/sub: each instance publishes the changes it
//! makes on one channel and listens to it for the others', so an agent waiting on one instance
//! wakes within milliseconds of a decision taken on another. No polling.
//!
//! The subscription is confirmed before [`shared_events`] returns, so a waiter that subscribes
//! to its instance's events and then reads the store misses no change made after the read. When
//! the connection drops (Redis restarted), the Redis client reconnects and subscribes again by
//! itself and tells us both; changes published in between are lost, so once the subscription is
//! back every waiter is told to look again ([`Change::Unknown`]).

use redis::{PushInfo, PushKind};
use tokio::sync::mpsc;

use super::{RedisStore, unavailable};
use crate::domain::{ApprovalId, UserId, random_bytes};
use crate::events::{ApprovalChanged, Change, Events, Inbox};
use crate::store::StoreError;

/// Events shared with every instance using the same Redis and key prefix.
pub async fn shared_events(store: &RedisStore) -> Result<Events, StoreError> {
    let instance = handsign_protocol::base64url::encode(random_bytes::<12>().map_err(unavailable)?);
    let channel = store.keys().events_channel();
    let (pushes, incoming) = mpsc::unbounded_channel();
    let subscription = store
        .target()
        .subscribe(&channel, pushes)
        .await
        .map_err(unavailable)?;
    let (outbox, outgoing) = mpsc::unbounded_channel();
    let events = Events::shared(outbox);
    tokio::spawn(listen(
        incoming,
        subscription,
        instance.clone(),
        events.inbox(),
    ));
    tokio::spawn(publish(outgoing, store.clone(), channel, instance));
    Ok(events)
}

/// `<instance> <user> <request id>`: none of them contains a space.
fn message(instance: &str, change: &ApprovalChanged) -> String {
    format!("{instance} {} {}", change.user, change.id)
}

/// Another instance's change, or `None` for this instance's own (already delivered) and for
/// anything unreadable.
fn parse(instance: &str, message: &str) -> Option<ApprovalChanged> {
    let mut parts = message.split(' ');
    let (from, user, id) = (parts.next()?, parts.next()?, parts.next()?);
    if from == instance || parts.next().is_some() {
        return None;
    }
    Some(ApprovalChanged {
        id: ApprovalId::parse(id).ok()?,
        user: UserId::parse(user).ok()?,
    })
}

/// Delivers other instances' changes until this instance's events are gone. Holds the
/// subscription's connection, which lives as long as this task.
async fn listen(
    mut incoming: mpsc::UnboundedReceiver<PushInfo>,
    _subscription: redis::aio::ConnectionManager,
    instance: String,
    inbox: Inbox,
) {
    let mut lost = false;
    while let Some(push) = incoming.recv().await {
        let delivered = match push.kind {
            PushKind::Message => {
                let change = push
                    .data
                    .get(1)
                    .and_then(|payload| redis::from_redis_value_ref::<String>(payload).ok())
                    .and_then(|text| parse(&instance, &text));
                change.is_none_or(|change| inbox.deliver(Change::Approval(change)))
            }
            PushKind::Disconnection => {
                tracing::warn!("lost the Redis event subscription; the client reconnects");
                lost = true;
                inbox.is_open()
            }
            PushKind::Subscribe if lost => {
                tracing::info!("Redis event subscription restored");
                lost = false;
                inbox.deliver(Change::Unknown)
            }
            _ => inbox.is_open(),
        };
        if !delivered {
            return;
        }
    }
}

async fn publish(
    mut outgoing: mpsc::UnboundedReceiver<ApprovalChanged>,
    store: RedisStore,
    channel: String,
    instance: String,
) {
    while let Some(change) = outgoing.recv().await {
        let mut connection = store.connection();
        let sent: redis::RedisResult<i64> = redis::cmd("PUBLISH")
            .arg(&channel)
            .arg(message(&instance, &change))
            .query_async(&mut connection)
            .await;
        if let Err(e) = sent {
            // The change is in the store; other instances' waiters see it at their next read
            // (a long poll ends within a minute) or when their subscription is restored.
            tracing::warn!(error = %e, "could not tell other instances of a change");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_own_messages_are_skipped() {
        let change = ApprovalChanged {
            id: ApprovalId::generate().unwrap(),
            user: UserId::parse("alice").unwrap(),
        };
        let text = message("one", &change);
        assert_eq!(parse("two", &text), Some(change));
        assert_eq!(parse("one", &text), None);
        assert_eq!(parse("two", "x alice apr_bad"), None);
        assert_eq!(parse("two", &format!("{text} extra")), None);
    }
}
