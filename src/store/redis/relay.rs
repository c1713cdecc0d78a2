//! Changes between gateway instances over Redis pub/sub: each instance publishes the changes it
//! makes on one channel and listens to it for the others', so an agent waiting on one instance
//! wakes within milliseconds of a decision taken on another. No polling.
//!
//! The subscription is confirmed before [`shared_events`] returns, so a waiter that subscribes
//! to its instance's events and then reads the store misses no change made after the read. When
//! the subscription breaks (Redis restarted), changes may be lost until it is back: every
//! waiter is then told to look again ([`Change::Unknown`]).

use std::time::Duration;

use futures_util::StreamExt as _;
use tokio::sync::mpsc;

use super::{RedisStore, RedisTarget, unavailable};
use crate::domain::{ApprovalId, UserId, random_bytes};
use crate::events::{ApprovalChanged, Change, Events, Inbox};
use crate::store::StoreError;

/// Events shared with every instance using the same Redis and key prefix.
pub async fn shared_events(store: &RedisStore) -> Result<Events, StoreError> {
    let instance = handsign_protocol::base64url::encode(random_bytes::<12>().map_err(unavailable)?);
    let channel = store.keys().events_channel();
    let subscription = subscribe(store.target(), 0, &channel).await?;
    let (outbox, outgoing) = mpsc::unbounded_channel();
    let events = Events::shared(outbox);
    tokio::spawn(listen(
        subscription,
        store.target().clone(),
        channel.clone(),
        instance.clone(),
        events.inbox(),
    ));
    tokio::spawn(publish(outgoing, store.clone(), channel, instance));
    Ok(events)
}

async fn subscribe(
    target: &RedisTarget,
    attempt: usize,
    channel: &str,
) -> Result<redis::aio::PubSub, StoreError> {
    let client = target.node_client(attempt).map_err(unavailable)?;
    let mut pubsub = client.get_async_pubsub().await.map_err(unavailable)?;
    pubsub.subscribe(channel).await.map_err(unavailable)?;
    Ok(pubsub)
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

async fn listen(
    mut subscription: redis::aio::PubSub,
    target: RedisTarget,
    channel: String,
    instance: String,
    inbox: Inbox,
) {
    loop {
        {
            let mut messages = subscription.on_message();
            while let Some(message) = messages.next().await {
                let Ok(text) = message.get_payload::<String>() else {
                    continue;
                };
                if let Some(change) = parse(&instance, &text)
                    && !inbox.deliver(Change::Approval(change))
                {
                    return;
                }
            }
        }
        tracing::warn!("lost the Redis event subscription; reconnecting");
        subscription = match resubscribe(&target, &channel, &inbox).await {
            Some(subscription) => subscription,
            None => return,
        };
        tracing::info!("Redis event subscription restored");
        if !inbox.deliver(Change::Unknown) {
            return;
        }
    }
}

/// Subscribes again, trying the seed nodes in turn with a growing pause (a retry backoff:
/// there is no event to wait for while Redis is away). `None` once the gateway has stopped.
async fn resubscribe(
    target: &RedisTarget,
    channel: &str,
    inbox: &Inbox,
) -> Option<redis::aio::PubSub> {
    let mut pause = Duration::from_millis(50);
    for attempt in 0.. {
        match subscribe(target, attempt, channel).await {
            Ok(subscription) => return Some(subscription),
            Err(e) => tracing::debug!(error = %e, "event subscription failed"),
        }
        if !inbox.is_open() {
            return None;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(2));
    }
    None
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
