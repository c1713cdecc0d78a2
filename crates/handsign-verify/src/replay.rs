//! Consuming a token's `jti` exactly once, and a DPoP proof's too.
//!
//! A token is good for 30 seconds, which is plenty of time to present it twice: to the same
//! instance, to another instance behind the same load balancer, or from a copy an attacker took
//! off the wire. The signature, the audience and the DPoP proof cannot tell a first presentation
//! from a second; only a record of the `jti`s already accepted can. [`ReplayStore::consume`] is
//! that record, and it must be one atomic test-and-set: two concurrent presentations of the same
//! token must not both see "not used yet".
//!
//! A `jti` is remembered until the token's `exp` plus the allowed clock skew, after which the
//! token is refused as expired anyway, so the record never needs to grow past the tokens of the
//! last ~35 seconds. The proofs that came with accepted tokens are recorded in the same store
//! (under `dpop:` and a hash of the agent's key and the proof's `jti`) for as long as they are
//! fresh, so that no proof is accepted twice either.
//!
//! [`MemoryReplayStore`] serves one process, and only from the moment it was made: what an
//! earlier process accepted is gone with it. So that a restart cannot make a used token usable
//! again, it reports when its record began ([`ReplayStore::records_since`]), and the middleware
//! refuses every token that could have been accepted before then (`issued_before_start`).
//! Several instances of a service, or a service that must accept tokens issued shortly before a
//! restart, share one store that outlives the process (`RedisReplayStore` with feature `redis`);
//! with separate memory stores each instance would accept the token once.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;

use crate::clock::Clock;

/// Where consumed token ids are recorded.
///
/// Implementations must make [`consume`](ReplayStore::consume) atomic across every instance of
/// the service that shares the store, and must answer `Err` rather than guess when they cannot
/// tell: the middleware then refuses the request with `503` (fail closed).
#[async_trait]
pub trait ReplayStore: Send + Sync + 'static {
    /// Records `jti` as used until `expires_at` (unix seconds) unless it is already recorded.
    /// Returns `Ok(true)` when this call recorded it (the first use), `Ok(false)` when it was
    /// there already (a replay).
    async fn consume(&self, jti: &str, expires_at: i64) -> Result<bool, ReplayError>;

    /// The unix second from which the store holds every id consumed through it, for a store
    /// that knows nothing of earlier uses: one in process memory starts empty at each start.
    /// The middleware refuses tokens that could have been accepted before then. `None` (the
    /// default) for a store that outlives the process.
    fn records_since(&self) -> Option<i64> {
        None
    }
}

/// The store could not answer; the middleware answers `503` and does not run the handler.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayError {
    #[error("the replay store cannot be reached: {0}")]
    Unavailable(String),
}

/// A replay store in this process's memory: right for a service that runs as one process and
/// can refuse, after each start, the tokens issued before it and in its first `skew + 1`
/// seconds (six with the default skew).
///
/// Entries are dropped once expired: every call first removes the entries whose time has
/// passed (oldest first, from a heap ordered by expiry), so memory holds only the tokens of the
/// last `lifetime + skew` seconds, however long the service runs.
#[derive(Debug)]
pub struct MemoryReplayStore {
    inner: Mutex<MemoryInner>,
    clock: Clock,
    /// When the record began: nothing accepted before then is in it.
    started_at: i64,
}

#[derive(Debug, Default)]
struct MemoryInner {
    /// `jti` → the unix second from which it may be forgotten.
    seen: HashMap<String, i64>,
    /// The same entries ordered by expiry, for cleanup without scanning the map.
    expiries: BinaryHeap<Reverse<(i64, String)>>,
}

impl Default for MemoryReplayStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryReplayStore {
    /// An empty store on the system clock, whose record begins now.
    pub fn new() -> Self {
        Self::with_clock(Clock::system())
    }

    /// An empty store reading `clock`, whose record begins at `clock`'s now: give it the same
    /// clock as the verifier's ([`VerifierBuilder::clock`](crate::VerifierBuilder::clock)).
    pub fn with_clock(clock: Clock) -> Self {
        MemoryReplayStore {
            inner: Mutex::default(),
            started_at: clock.now(),
            clock,
        }
    }

    /// Moves the start of the record back to `unix_secs`, for a service that knows no other
    /// process accepted its tokens since then: one that notes when it stopped accepting at
    /// shutdown and starts from that second, or a test whose gateway key is its own. Tokens
    /// that could have been accepted at or before `unix_secs` are still refused.
    pub fn record_began_at(mut self, unix_secs: i64) -> Self {
        self.started_at = unix_secs;
        self
    }

    /// How many token ids are remembered right now (expired ones are dropped on the next call).
    pub fn len(&self) -> usize {
        self.lock().seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryInner> {
        // No code under this lock can panic half-way through an update, so a poisoned lock
        // still guards consistent data.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// [`ReplayStore::consume`] at a given time, so that expiry can be tested without waiting.
    fn consume_at(&self, jti: &str, expires_at: i64, now: i64) -> bool {
        let mut inner = self.lock();
        while let Some(Reverse((expiry, _))) = inner.expiries.peek() {
            if *expiry > now {
                break;
            }
            if let Some(Reverse((expiry, old))) = inner.expiries.pop()
                && inner.seen.get(&old) == Some(&expiry)
            {
                inner.seen.remove(&old);
            }
        }
        if inner.seen.contains_key(jti) {
            return false;
        }
        inner.seen.insert(jti.to_owned(), expires_at);
        inner.expiries.push(Reverse((expires_at, jti.to_owned())));
        true
    }
}

#[async_trait]
impl ReplayStore for MemoryReplayStore {
    async fn consume(&self, jti: &str, expires_at: i64) -> Result<bool, ReplayError> {
        Ok(self.consume_at(jti, expires_at, self.clock.now()))
    }

    fn records_since(&self) -> Option<i64> {
        Some(self.started_at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jti_is_consumed_once_until_it_expires() {
        let store = MemoryReplayStore::new();
        assert!(store.consume_at("a", 1030, 1000));
        assert!(!store.consume_at("a", 1030, 1001));
        assert!(!store.consume_at("a", 1030, 1029));
        assert!(store.consume_at("b", 1031, 1029));
        assert_eq!(store.len(), 2);
    }

    #[test]
    fn expired_entries_are_dropped() {
        let store = MemoryReplayStore::new();
        for i in 0..1000 {
            assert!(store.consume_at(&format!("old-{i}"), 1030 + i % 5, 1000));
        }
        assert_eq!(store.len(), 1000);
        assert!(store.consume_at("new", 1100, 1033));
        assert_eq!(
            store.len(),
            201,
            "only the entries expiring at 1034 and the new one stay"
        );
        assert!(store.consume_at("newer", 1200, 1100));
        assert_eq!(store.len(), 1);
    }
}
