//! One connection type for a single Redis server and for Redis Cluster, with short timeouts so
//! that a call to an unreachable Redis fails in about two seconds (and the gateway answers 503)
//! instead of hanging.

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};

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

    /// A client for one node: the first URL, then the next each time `attempt` grows (for the
    /// event subscription, which needs a plain connection even on a cluster).
    pub fn node_client(&self, attempt: usize) -> redis::RedisResult<redis::Client> {
        redis::Client::open(self.urls[attempt % self.urls.len()].as_str())
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
        let probe = self.node_client(0)?;
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
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(CONNECT_TIMEOUT))
                .set_response_timeout(Some(RESPONSE_TIMEOUT))
                .set_number_of_retries(1)
                .set_min_delay(Duration::from_millis(50))
                .set_max_delay(Duration::from_millis(500));
            Ok(Connection::Single(
                ConnectionManager::new_with_config(probe, config).await?,
            ))
        }
    }
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
