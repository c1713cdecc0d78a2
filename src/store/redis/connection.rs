//! One connection type for a single Redis server and for Redis Cluster, with short timeouts so
//! that a call to an unreachable Redis fails in about two seconds (and the gateway answers 503)
//! instead of hanging.

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, IntoConnectionInfo as _, Pipeline, RedisFuture, Value};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Where Redis is: one or more `redis://` (or `rediss://`) URLs. With Redis Cluster they are
/// seed nodes; whether it is a cluster is asked of the first one (`INFO cluster`).
#[derive(Debug, Clone)]
pub struct RedisTarget {
    urls: Vec<String>,
}

impl RedisTarget {
    /// Parses a comma-separated list of URLs.
    pub fn parse(urls: &str) -> Result<Self, String> {
        let urls: Vec<String> = urls
            .split(',')
            .map(str::trim)
            .filter(|url| !url.is_empty())
            .map(str::to_owned)
            .collect();
        if urls.is_empty() {
            return Err("no Redis URL given".into());
        }
        for url in &urls {
            redis::Client::open(url.as_str())
                .map_err(|e| format!("invalid Redis URL {url:?}: {e}"))?;
        }
        Ok(RedisTarget { urls })
    }

    /// Subscribes to `channel` on the first node, with a connection that reconnects and
    /// subscribes again by itself: messages, and the library's notices of a lost connection and
    /// of the renewed subscription, arrive on `pushes` (RESP3 push messages). On a cluster, a
    /// message published on any node reaches every node.
    pub async fn subscribe(
        &self,
        channel: &str,
        pushes: tokio::sync::mpsc::UnboundedSender<redis::PushInfo>,
    ) -> redis::RedisResult<ConnectionManager> {
        let info = self.urls[0].as_str().into_connection_info()?;
        let settings = info
            .redis_settings()
            .clone()
            .set_protocol(redis::ProtocolVersion::RESP3);
        let client = redis::Client::open(info.set_redis_settings(settings))?;
        // Nothing else would make it reconnect while Redis is away: it keeps trying (backing off
        // to two seconds between attempts) for as long as the gateway runs.
        let config = manager_config()
            .set_number_of_retries(usize::MAX)
            .set_max_delay(Duration::from_secs(2))
            .set_push_sender(pushes)
            .set_automatic_resubscription();
        let mut subscription = ConnectionManager::new_with_config(client, config).await?;
        subscription.subscribe(channel).await?;
        Ok(subscription)
    }

    /// The URLs without passwords, for messages.
    pub fn describe(&self) -> String {
        self.urls
            .iter()
            .map(|url| match url::Url::parse(url) {
                Ok(mut parsed) if parsed.password().is_some() => {
                    let _ = parsed.set_password(Some("***"));
                    parsed.to_string()
                }
                _ => url.clone(),
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Connects, to a cluster when the first node says it is one.
    pub async fn connect(&self) -> redis::RedisResult<Connection> {
        let probe = redis::Client::open(self.urls[0].as_str())?;
        let mut first = probe
            .get_multiplexed_async_connection_with_config(
                &redis::AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(CONNECT_TIMEOUT))
                    .set_response_timeout(Some(RESPONSE_TIMEOUT)),
            )
            .await?;
        let info: String = redis::cmd("INFO")
            .arg("cluster")
            .query_async(&mut first)
            .await?;
        if info.lines().any(|line| line.trim() == "cluster_enabled:1") {
            let client = ClusterClient::builder(self.urls.clone())
                .connection_timeout(CONNECT_TIMEOUT)
                .response_timeout(RESPONSE_TIMEOUT)
                .retries(2)
                .build()?;
            Ok(Connection::Cluster(client.get_async_connection().await?))
        } else {
            Ok(Connection::Single(
                ConnectionManager::new_with_config(probe, manager_config()).await?,
            ))
        }
    }
}

/// Reconnects with a short backoff; one retry per call, so a call fails fast while Redis is away.
fn manager_config() -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        .set_number_of_retries(1)
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(Duration::from_millis(500))
}

/// A multiplexed connection that reconnects by itself: cheap to clone, one per call.
#[derive(Clone)]
pub enum Connection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Single(c) => c.req_packed_command(cmd),
            Connection::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Connection::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Single(c) => c.get_db(),
            Connection::Cluster(c) => c.get_db(),
        }
    }
}
