//! Waiting for replicas after a once-only write, so that "used once" survives a failover.
//!
//! Redis replicates asynchronously: a primary answers a write before any replica has it. Should
//! the primary die then and a replica be promoted, the write is lost, and a token (or a
//! ceremony, a decision, a token delivery) is accepted a second time. `WAIT n timeout` answers
//! how many replicas acknowledged the last write *of the connection it is sent on*, so it is
//! sent right after the write in the same pipeline ([`ReplicaWait::send`]): a `WAIT` on another
//! connection would wait for that connection's writes, not this one. On Redis Cluster, redis-rs
//! sends a pipeline to the node that owns its first keyed command (`WAIT` has no key), so the
//! wait goes to the shard that took the write.
//!
//! Fewer replicas than asked within the timeout is an error, on which callers fail closed. The
//! write itself stays on the primary: a token refused this way is refused as used there later.
//!
//! `WAITAOF` (Redis 7.2 and later) also waits until the write is in the append-only file on the
//! primary and on the replicas, for the loss of power of a single node.

use std::time::Duration;

use redis::aio::ConnectionLike;
use redis::{Pipeline, Value};

/// The wait's timeout unless one is given.
pub const DEFAULT_REPLICA_TIMEOUT: Duration = Duration::from_millis(100);

/// The longest wait allowed: every call on the connections of both Redis stores times out after
/// two seconds, and the wait must end well before that.
pub const MAX_REPLICA_TIMEOUT: Duration = Duration::from_millis(1000);

/// How many replicas must have a once-only write before it counts, and how long to wait.
///
/// [`ReplicaWait::NONE`] (the default) waits for nothing: right for a single Redis, and what an
/// earlier version did; with replicas, a failover can then lose writes already answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaWait {
    min_replicas: u32,
    timeout: Duration,
    aof: bool,
}

impl Default for ReplicaWait {
    fn default() -> Self {
        Self::NONE
    }
}

/// The settings as command-line flags (feature `clap`), with `HANDSIGN_` variables: the
/// gateway's `handsign serve` and the example service flatten these into their own.
#[cfg(feature = "clap")]
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct ReplicaArgs {
    /// Redis replicas that must acknowledge each once-only write (a used token, a taken
    /// ceremony, a decision, a delivered token) before it counts; fewer within the timeout
    /// fails the request (503). 0 waits for none: a failover can then forget such a write and
    /// let it happen twice.
    #[arg(long, env = "HANDSIGN_REDIS_MIN_REPLICAS", default_value_t = 0)]
    pub redis_min_replicas: u32,
    /// How long a once-only write waits for those replicas, in milliseconds (1 to 1000).
    #[arg(long, env = "HANDSIGN_REDIS_REPLICA_TIMEOUT_MS", default_value_t = 100,
          value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub redis_replica_timeout_ms: u64,
    /// Also wait until each once-only write is in the append-only file of the primary and of
    /// those replicas (WAITAOF: Redis 7.2 or later with appendonly yes, checked at start).
    #[arg(long, env = "HANDSIGN_REDIS_WAIT_AOF")]
    pub redis_wait_aof: bool,
}

#[cfg(feature = "clap")]
impl Default for ReplicaArgs {
    fn default() -> Self {
        ReplicaArgs {
            redis_min_replicas: 0,
            redis_replica_timeout_ms: 100,
            redis_wait_aof: false,
        }
    }
}

#[cfg(feature = "clap")]
impl ReplicaArgs {
    pub fn wait(&self) -> Result<ReplicaWait, ReplicaWaitError> {
        let wait = ReplicaWait::new(
            self.redis_min_replicas,
            Duration::from_millis(self.redis_replica_timeout_ms),
        )?;
        Ok(if self.redis_wait_aof {
            wait.with_aof()
        } else {
            wait
        })
    }
}

/// Settings [`ReplicaWait::new`] refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReplicaWaitError {
    #[error(
        "the replica timeout must be between 1 ms and {} ms, got {} ms",
        MAX_REPLICA_TIMEOUT.as_millis(),
        .0.as_millis()
    )]
    Timeout(Duration),
}

/// Why a write sent with [`ReplicaWait::send`] does not count.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WaitFailure {
    #[error(transparent)]
    Redis(#[from] redis::RedisError),
    #[error(
        "the write reached {acknowledged} of the {wanted} replicas required within {} ms",
        .timeout.as_millis()
    )]
    TooFewReplicas {
        wanted: u32,
        acknowledged: i64,
        timeout: Duration,
    },
    #[error("the primary did not write to its append-only file within {} ms", .0.as_millis())]
    NotOnDisk(Duration),
    #[error("unexpected answer to the replica wait: {0:?}")]
    Unexpected(Value),
}

impl ReplicaWait {
    /// Waits for nothing.
    pub const NONE: ReplicaWait = ReplicaWait {
        min_replicas: 0,
        timeout: DEFAULT_REPLICA_TIMEOUT,
        aof: false,
    };

    /// Waits up to `timeout` (1 ms to [`MAX_REPLICA_TIMEOUT`]) for `min_replicas` replicas.
    pub fn new(min_replicas: u32, timeout: Duration) -> Result<Self, ReplicaWaitError> {
        if timeout < Duration::from_millis(1) || timeout > MAX_REPLICA_TIMEOUT {
            return Err(ReplicaWaitError::Timeout(timeout));
        }
        Ok(ReplicaWait {
            min_replicas,
            timeout,
            aof: false,
        })
    }

    /// Also waits until the write is in the append-only file of the primary and of the
    /// replicas counted (`WAITAOF`, Redis 7.2 and later; [`check_server`](Self::check_server)
    /// refuses an older server or one without `appendonly yes`).
    pub fn with_aof(mut self) -> Self {
        self.aof = true;
        self
    }

    pub fn min_replicas(&self) -> u32 {
        self.min_replicas
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    pub fn aof(&self) -> bool {
        self.aof
    }

    /// Sends `writes` and then the wait as one pipeline on `connection`, and answers the
    /// writes' replies once the wait held. A server error in the writes is an `Err` of kind
    /// that error, so a caller can load a script on `NOSCRIPT` and send again.
    pub async fn send(
        &self,
        writes: &Pipeline,
        connection: &mut impl ConnectionLike,
    ) -> Result<Vec<Value>, WaitFailure> {
        let mut pipeline = writes.clone();
        let timeout_ms = u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX);
        if self.aof {
            pipeline
                .cmd("WAITAOF")
                .arg(1)
                .arg(self.min_replicas)
                .arg(timeout_ms);
        } else if self.min_replicas > 0 {
            pipeline.cmd("WAIT").arg(self.min_replicas).arg(timeout_ms);
        } else {
            return Ok(pipeline.query_async(connection).await?);
        }
        let mut replies: Vec<Value> = pipeline.query_async(connection).await?;
        let wait = replies.pop().ok_or(WaitFailure::Unexpected(Value::Nil))?;
        self.check(wait)?;
        Ok(replies)
    }

    /// Checks the reply of `WAIT` (replicas acknowledged) or `WAITAOF` (local fsync done,
    /// replicas fsynced).
    fn check(&self, reply: Value) -> Result<(), WaitFailure> {
        let acknowledged = match (&reply, self.aof) {
            (Value::Int(replicas), false) => *replicas,
            (Value::Array(counts), true) => match counts.as_slice() {
                [Value::Int(local), Value::Int(replicas)] => {
                    if *local < 1 {
                        return Err(WaitFailure::NotOnDisk(self.timeout));
                    }
                    *replicas
                }
                _ => return Err(WaitFailure::Unexpected(reply)),
            },
            _ => return Err(WaitFailure::Unexpected(reply)),
        };
        if acknowledged < i64::from(self.min_replicas) {
            return Err(WaitFailure::TooFewReplicas {
                wanted: self.min_replicas,
                acknowledged,
                timeout: self.timeout,
            });
        }
        Ok(())
    }

    /// Asks the server (every primary, on a cluster) whether this wait can work there, at
    /// start. `Err` when it cannot ever hold (`WAITAOF` on a server before 7.2 or without an
    /// append-only file); otherwise the warnings to log: replicas that a failover would promote
    /// without the writes they have not received yet while this waits for none, or fewer
    /// replicas connected now than this waits for (every once-only write fails until they are).
    pub async fn check_server(
        &self,
        connection: &mut impl ConnectionLike,
    ) -> Result<Vec<String>, String> {
        let info: Value = match redis::cmd("INFO").query_async(connection).await {
            Ok(info) => info,
            // Waiting for nothing needs no answer: a server that refuses INFO (an ACL without
            // it) still serves as before.
            Err(e) if self.min_replicas == 0 && !self.aof => {
                return Ok(vec![format!(
                    "could not read the server's replication (INFO: {e}); with replicas, \
                     exactly-once does not survive a failover unless once-only writes wait"
                )]);
            }
            Err(e) => return Err(format!("INFO failed: {e}")),
        };
        let mut nodes = Vec::new();
        collect_texts(info, &mut nodes);
        let mut warnings = Vec::new();
        for node in nodes.iter().map(|text| NodeInfo(text)) {
            let name = node.name();
            let replicas: u32 = node.field("connected_slaves").unwrap_or(0);
            if self.aof {
                let version = node.text("redis_version").unwrap_or("unknown");
                if !version_at_least(version, (7, 2)) {
                    return Err(format!(
                        "waiting for the append-only file (WAITAOF) needs Redis 7.2 or later; \
                         {name} runs Redis {version}"
                    ));
                }
                if node.field::<u32>("aof_enabled") != Some(1) {
                    return Err(format!(
                        "waiting for the append-only file (WAITAOF) needs appendonly yes; \
                         {name} has no append-only file"
                    ));
                }
            }
            if self.min_replicas == 0 && replicas > 0 {
                warnings.push(format!(
                    "{name} has {replicas} replica(s) but once-only writes wait for none: \
                     exactly-once does not survive a failover (a token can be accepted twice); \
                     set the minimum replicas to wait for"
                ));
            } else if replicas < self.min_replicas {
                warnings.push(format!(
                    "{name} has {replicas} replica(s) connected, fewer than the {} every \
                     once-only write waits for: those writes fail until enough are connected",
                    self.min_replicas
                ));
            }
        }
        Ok(warnings)
    }
}

/// The text answers in an `INFO` reply: one for a server, one per primary from a cluster.
fn collect_texts(value: Value, out: &mut Vec<String>) {
    match value {
        Value::BulkString(bytes) => out.push(String::from_utf8_lossy(&bytes).into_owned()),
        Value::VerbatimString { text, .. } | Value::SimpleString(text) => out.push(text),
        Value::Map(pairs) => pairs
            .into_iter()
            .for_each(|(_, value)| collect_texts(value, out)),
        Value::Array(items) => items
            .into_iter()
            .for_each(|value| collect_texts(value, out)),
        _ => {}
    }
}

/// One server's `INFO` text.
struct NodeInfo<'a>(&'a str);

impl NodeInfo<'_> {
    fn text(&self, name: &str) -> Option<&str> {
        self.0.lines().find_map(|line| {
            line.strip_prefix(name)
                .and_then(|rest| rest.strip_prefix(':'))
                .map(str::trim)
        })
    }

    fn field<T: std::str::FromStr>(&self, name: &str) -> Option<T> {
        self.text(name).and_then(|value| value.parse().ok())
    }

    /// How messages name the server: its port and run id.
    fn name(&self) -> String {
        format!(
            "the Redis server on port {} (run id {})",
            self.text("tcp_port").unwrap_or("?"),
            self.text("run_id").unwrap_or("?")
        )
    }
}

/// Whether `version` (`7.0.15`) is at least `major.minor`.
fn version_at_least(version: &str, (major, minor): (u32, u32)) -> bool {
    let mut parts = version.split('.').map(|part| part.parse::<u32>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(a), Some(b)) => (a, b) >= (major, minor),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_by_major_then_minor() {
        assert!(!version_at_least("7.0.15", (7, 2)));
        assert!(version_at_least("7.2.0", (7, 2)));
        assert!(version_at_least("8.0.1", (7, 2)));
        assert!(!version_at_least("garbage", (7, 2)));
    }

    #[test]
    fn timeouts_are_bounded() {
        assert!(ReplicaWait::new(1, Duration::ZERO).is_err());
        assert!(ReplicaWait::new(1, MAX_REPLICA_TIMEOUT + Duration::from_millis(1)).is_err());
        assert!(ReplicaWait::new(1, MAX_REPLICA_TIMEOUT).is_ok());
    }

    #[cfg(feature = "clap")]
    #[test]
    fn flags_give_the_wait_and_refuse_an_unbounded_timeout() {
        use clap::Parser as _;

        #[derive(clap::Parser)]
        struct Flags {
            #[command(flatten)]
            replicas: ReplicaArgs,
        }
        let parse = |args: &[&str]| Flags::try_parse_from([&["test"], args].concat());
        let default = parse(&[]).unwrap().replicas;
        assert_eq!(default, ReplicaArgs::default());
        assert_eq!(default.wait().unwrap(), ReplicaWait::NONE);
        let flags = parse(&[
            "--redis-min-replicas",
            "2",
            "--redis-replica-timeout-ms",
            "250",
            "--redis-wait-aof",
        ])
        .unwrap();
        let wait = flags.replicas.wait().unwrap();
        assert_eq!(
            (wait.min_replicas(), wait.timeout(), wait.aof()),
            (2, Duration::from_millis(250), true)
        );
        // 0 would make WAIT block forever.
        assert!(parse(&["--redis-replica-timeout-ms", "0"]).is_err());
        assert!(parse(&["--redis-replica-timeout-ms", "1001"]).is_err());
    }

    #[test]
    fn fewer_acknowledgements_than_asked_fail() {
        let wait = ReplicaWait::new(2, DEFAULT_REPLICA_TIMEOUT).unwrap();
        assert!(wait.check(Value::Int(2)).is_ok());
        assert!(matches!(
            wait.check(Value::Int(1)),
            Err(WaitFailure::TooFewReplicas {
                acknowledged: 1,
                ..
            })
        ));
        let aof = wait.with_aof();
        assert!(
            aof.check(Value::Array(vec![Value::Int(1), Value::Int(2)]))
                .is_ok()
        );
        assert!(matches!(
            aof.check(Value::Array(vec![Value::Int(0), Value::Int(2)])),
            Err(WaitFailure::NotOnDisk(_))
        ));
        assert!(matches!(
            aof.check(Value::Int(2)),
            Err(WaitFailure::Unexpected(_))
        ));
    }
}
