//! A replay store in Redis, shared by every instance of a service (feature `redis`).
//!
//! One command does the test-and-set: `SET <prefix><jti> 1 NX EXAT <expires_at>`. Redis runs
//! commands one at a time, so of any number of instances presenting the same `jti` at once,
//! exactly one gets `OK`; the others get nil and refuse the token as replayed. `EXAT` makes Redis
//! forget the key when the token could no longer be accepted anyway.
//!
//! With replicas, [`RedisReplayStore::wait_for_replicas`] makes a first use count only once
//! enough replicas have it (see [`ReplicaWait`]): a failover then cannot forget it.

use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::replay::{ReplayError, ReplayStore};
use crate::replicas::ReplicaWait;

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
    replicas: ReplicaWait,
}

impl std::fmt::Debug for RedisReplayStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisReplayStore")
            .field("prefix", &self.prefix)
            .field("replicas", &self.replicas)
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
            replicas: ReplicaWait::NONE,
        }
    }

    /// Connects to `url` (`redis://host:port/db`) with short timeouts, so that a request waits
    /// about two seconds at most for an unreachable Redis before it is refused with `503`,
    /// rather than hanging. Logs a warning if the server has replicas: without a wait for
    /// them ([`connect_waiting`](Self::connect_waiting)) a failover can forget a token's use.
    pub async fn connect(url: &str) -> Result<Self, ReplayError> {
        Self::connect_waiting(url, ReplicaWait::NONE).await
    }

    /// [`connect`](Self::connect), then [`wait_for_replicas`](Self::wait_for_replicas).
    pub async fn connect_waiting(url: &str, wait: ReplicaWait) -> Result<Self, ReplayError> {
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
        Self::new(connection).wait_for_replicas(wait).await
    }

    /// Records a first use only once `wait` holds (the replicas have it), on this store's
    /// connection right after the write; when it does not, `consume` answers
    /// [`ReplayError`] (`503`, the handler does not run) and the token stays used on the
    /// primary. Checks the server at once: `Err` if it cannot do what `wait` asks (`WAITAOF`
    /// on Redis before 7.2); logs a warning if it has replicas that `wait` does not count.
    pub async fn wait_for_replicas(mut self, wait: ReplicaWait) -> Result<Self, ReplayError> {
        let warnings = wait
            .check_server(&mut self.connection)
            .await
            .map_err(ReplayError::Unavailable)?;
        for warning in warnings {
            tracing::warn!("replay store: {warning}");
        }
        self.replicas = wait;
        Ok(self)
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
        let mut set = redis::pipe();
        set.cmd("SET")
            .arg(format!("{}{jti}", self.prefix))
            .arg(1)
            .arg("NX")
            .arg("EXAT")
            .arg(expires_at);
        let replies = self
            .replicas
            .send(&set, &mut connection)
            .await
            .map_err(|e| ReplayError::Unavailable(e.to_string()))?;
        // `OK` for the first use, nil for a replay.
        Ok(matches!(replies.first(), Some(reply) if *reply != redis::Value::Nil))
    }
}
