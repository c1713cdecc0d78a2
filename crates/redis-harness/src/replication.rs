//! A primary and a replica whose replication passes through a [`Forwarder`] the test controls,
//! to lose writes the way a failover does: freeze the link (the replica stops receiving, and
//! the primary stops hearing its acknowledgements), write, kill the primary and the link (the
//! held bytes die with them), and promote the replica.

use std::sync::{Arc, Mutex, PoisonError};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::{RedisServer, STARTUP_TIMEOUT};

/// A TCP forwarder on a loopback port to `127.0.0.1:upstream`, in both directions, that can
/// be frozen (it holds every byte it reads from then on) and killed (every connection closes
/// and what it held is dropped). Runs on the test's tokio runtime; killed on drop.
pub struct Forwarder {
    port: u16,
    frozen: Arc<watch::Sender<bool>>,
    forwarded: Arc<watch::Sender<u64>>,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Forwarder {
    pub async fn start(upstream: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("the forwarder could not bind a loopback port: {e}"));
        let port = listener.local_addr().expect("a bound address").port();
        let frozen = Arc::new(watch::Sender::new(false));
        let forwarded = Arc::new(watch::Sender::new(0u64));
        let tasks = Arc::new(Mutex::new(Vec::new()));
        let accept = tokio::spawn({
            let (frozen, forwarded, tasks) = (frozen.clone(), forwarded.clone(), tasks.clone());
            async move {
                while let Ok((client, _)) = listener.accept().await {
                    let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                        continue;
                    };
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    let pumps = [
                        tokio::spawn(pump(
                            client_read,
                            server_write,
                            frozen.clone(),
                            forwarded.clone(),
                        )),
                        tokio::spawn(pump(
                            server_read,
                            client_write,
                            frozen.clone(),
                            forwarded.clone(),
                        )),
                    ];
                    lock(&tasks).extend(pumps);
                }
            }
        });
        lock(&tasks).push(accept);
        Forwarder {
            port,
            frozen,
            forwarded,
            tasks,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops forwarding: every byte read from now on is held until [`thaw`](Self::thaw).
    pub fn freeze(&self) {
        self.frozen.send_replace(true);
    }

    /// Forwards again, the held bytes first.
    pub fn thaw(&self) {
        self.frozen.send_replace(false);
    }

    /// Closes every connection and stops accepting; held bytes are dropped.
    pub fn kill(&self) {
        for task in lock(&self.tasks).drain(..) {
            task.abort();
        }
    }

    /// Bytes forwarded so far, both directions together.
    pub fn forwarded(&self) -> u64 {
        *self.forwarded.borrow()
    }

    /// Returns once more than `bytes` bytes have been forwarded.
    pub async fn forwarded_more_than(&self, bytes: u64) {
        let mut counter = self.forwarded.subscribe();
        tokio::time::timeout(STARTUP_TIMEOUT, counter.wait_for(|n| *n > bytes))
            .await
            .unwrap_or_else(|_| panic!("the forwarder did not pass {bytes} bytes in time"))
            .expect("the forwarder's counter lives as long as it");
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.kill();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Copies `from` to `to`, holding what it read while the link is frozen.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    frozen: Arc<watch::Sender<bool>>,
    forwarded: Arc<watch::Sender<u64>>,
) {
    let mut frozen = frozen.subscribe();
    let mut buffer = vec![0; 64 * 1024];
    loop {
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(read) => read,
        };
        if frozen.wait_for(|frozen| !frozen).await.is_err() {
            return;
        }
        if to.write_all(&buffer[..read]).await.is_err() {
            return;
        }
        forwarded.send_modify(|total| *total += read as u64);
    }
}

/// A primary and one replica replicating through a [`Forwarder`].
pub struct ReplicatedRedis {
    pub primary: RedisServer,
    pub replica: RedisServer,
    pub link: Forwarder,
}

impl ReplicatedRedis {
    /// Starts both and returns once the replica has synced (see [`sync`](Self::sync)).
    pub async fn start() -> Self {
        let primary = RedisServer::start().await;
        let link = Forwarder::start(primary.port()).await;
        let replica = RedisServer::start_replica_of(link.port()).await;
        let replicated = ReplicatedRedis {
            primary,
            replica,
            link,
        };
        replicated.sync().await;
        replicated
    }

    /// Returns once the replica has acknowledged everything written on the primary so far.
    pub async fn sync(&self) {
        wait_for_replica(&self.primary).await;
    }

    /// Loses the primary as a crash does: kills the link (what it held is lost) and the
    /// primary (SIGKILL), then promotes the replica (`REPLICAOF NO ONE`), which serves at
    /// [`replica`](Self::replica)'s URL with what it had received.
    pub async fn fail_over(&mut self) {
        self.link.kill();
        self.primary.stop();
        let mut connection = self
            .replica
            .client()
            .get_multiplexed_async_connection()
            .await
            .unwrap_or_else(|e| panic!("could not connect to the replica: {e}"));
        let _: () = redis::cmd("REPLICAOF")
            .arg("NO")
            .arg("ONE")
            .query_async(&mut connection)
            .await
            .unwrap_or_else(|e| panic!("REPLICAOF NO ONE failed on the replica: {e}"));
    }
}

/// Returns once a replica of `primary` has acknowledged everything written on it so far: a
/// write of the harness's own and `WAIT 1` for it on the same connection (the replication
/// stream is in order, so the replica then has every earlier write too). Also waits for a
/// replica that is still connecting or syncing.
pub async fn wait_for_replica(primary: &RedisServer) {
    acknowledged_write(primary, "redis-harness:sync").await;
}

/// Writes `key` on `primary` and waits until a replica acknowledges it.
pub(crate) async fn acknowledged_write(primary: &RedisServer, key: &str) {
    // The wait may take as long as a replica's first sync: longer than the default response
    // timeout.
    let config = redis::AsyncConnectionConfig::new()
        .set_response_timeout(Some(STARTUP_TIMEOUT + std::time::Duration::from_secs(5)));
    let mut connection = primary
        .client()
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .unwrap_or_else(|e| panic!("could not connect to the primary {}: {e}", primary.url()));
    let timeout_ms = u64::try_from(STARTUP_TIMEOUT.as_millis()).unwrap_or(u64::MAX);
    let (_, acknowledged): ((), i64) = redis::pipe()
        .cmd("SET")
        .arg(key)
        .arg(1)
        .cmd("WAIT")
        .arg(1)
        .arg(timeout_ms)
        .query_async(&mut connection)
        .await
        .unwrap_or_else(|e| panic!("SET and WAIT on the primary {} failed: {e}", primary.url()));
    assert_eq!(
        acknowledged,
        1,
        "no replica of {} acknowledged a write within {STARTUP_TIMEOUT:?}",
        primary.url()
    );
}
