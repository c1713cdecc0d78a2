//! A replay store in Redis, shared by every instance of a service (feature `redis`).
//!
//! One command does the test-and-set: `SET <prefix><jti> 1 NX EXAT <expires_at>`. Redis runs
//! commands one at a time, so of any number of instances presenting the same `jti` at once,
//! exactly one gets `OK`; the others get nil and refuse the token as replayed. `EXAT` makes Redis
//! forget the key when the token could no longer be accepted anyway.

use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::replay::{ReplayError, ReplayStore};

/// The key prefix used unless [`RedisReplayStore::with_prefix`] sets another.
pub const DEFAULT_KEY_PREFIX: &str = "handsign:jti:";

/// Consumes token ids in Redis with `SET ... NX EXAT`.
///
/// When Redis cannot be reached the store answers [`ReplayError`], and the middleware refuses
/// the request with `503`: accepting a token whose use cannot be recorded would let it be used
/// again on another instance.
#[derive(Clone)]
pub struct RedisReplayStore {
    connection: ConnectionManager,
    prefix: String,
}

impl std::fmt::Debug for RedisReplayStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisReplayStore")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisReplayStore {
    /// A store using an existing connection manager (which reconnects by itself after Redis
    /// restarts), with the key prefix [`DEFAULT_KEY_PREFIX`].
    pub fn new(connection: ConnectionManager) -> Self {
        RedisReplayStore {
            connection,
            prefix: DEFAULT_KEY_PREFIX.to_owned(),
        }
    }

    /// Connects to `url` (`redis://host:port/db`) with short timeouts, so that a request waits
    /// about two seconds at most for an unreachable Redis before it is refused with `503`,
    /// rather than hanging.
    pub async fn connect(url: &str) -> Result<Self, ReplayError> {
        let client =
            redis::Client::open(url).map_err(|e| ReplayError::Unavailable(e.to_string()))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500));
        let connection = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(|e| ReplayError::Unavailable(e.to_string()))?;
        Ok(Self::new(connection))
    }

    /// Puts the keys under another prefix, e.g. to share one Redis among several services or
    /// test runs. Tokens are per audience, so services sharing a prefix cannot collide unless
    /// they share an audience, in which case they should share the record too.
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }
}

#[async_trait]
impl ReplayStore for RedisReplayStore {
    async fn consume(&self, jti: &str, expires_at: i64) -> Result<bool, ReplayError> {
        let mut connection = self.connection.clone();
        let reply: Option<String> = redis::cmd("SET")
            .arg(format!("{}{jti}", self.prefix))
            .arg(1)
            .arg("NX")
            .arg("EXAT")
            .arg(expires_at)
            .query_async(&mut connection)
            .await
            .map_err(|e| ReplayError::Unavailable(e.to_string()))?;
        Ok(reply.is_some())
    }
}
