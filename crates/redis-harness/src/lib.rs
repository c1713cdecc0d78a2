//! Real `redis-server` processes for tests, so that every suite that needs Redis starts it the
//! same way instead of keeping its own copy of this code.
//!
//! Each server listens on a free loopback port, works in its own temporary directory, and is
//! killed when dropped. Startup is awaited by reading the server's log as it comes (no polling,
//! no sleeps): a server is ready when it logs so (after loading its data), a cluster node when it
//! logs that the cluster state changed to ok.
//!
//! Needs `redis-server` (and `redis-cli` for clusters), both from Debian's `redis-server`
//! package: `apt-get install -y redis-server`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cut;
mod replication;

pub use cut::CuttingProxy;
pub use replication::{Forwarder, ReplicatedRedis, wait_for_replica};

use std::io::{BufRead as _, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;
use tokio::sync::oneshot;

const NOT_INSTALLED: &str =
    "redis-server is not installed; the test command installs it: apt-get install -y redis-server";
const CLI_NOT_INSTALLED: &str = "redis-cli is not installed; it comes with redis-server \
     (Debian package redis-tools), which the test command installs: apt-get install -y redis-server";
/// The line `redis-server` logs once it listens (and, with persistence, has loaded its data).
const READY: &str = "Ready to accept connections";
/// The line a cluster node logs once every slot is served.
const CLUSTER_OK: &str = "Cluster state changed: ok";
/// How long a server may take to start, or a cluster to agree on its slots, before the test fails.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// A port found free may be taken by someone else before the server binds it: try a few.
const PORT_ATTEMPTS: usize = 5;
/// Cluster nodes also listen on `port + 10000` (the cluster bus), so their port must leave room.
const CLUSTER_PORT_LIMIT: u16 = 55535;
const CLUSTER_BUS_OFFSET: u16 = 10000;

/// What a server keeps and how it runs; decides its command-line options.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Plain,
    Persistent,
    ClusterNode,
}

impl Mode {
    fn args(self) -> &'static [&'static str] {
        match self {
            Mode::Plain => &["--save", "", "--appendonly", "no"],
            // fsync on every write: a SIGKILLed server must still have every acknowledged write.
            Mode::Persistent => &[
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ],
            Mode::ClusterNode => &[
                "--save",
                "",
                "--appendonly",
                "no",
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                "5000",
            ],
        }
    }
}

/// A `redis-server` child process on a free loopback port, in its own temporary directory,
/// killed on drop.
pub struct RedisServer {
    child: Option<Child>,
    /// For a cluster node: told when the node logs that the cluster is ok.
    cluster_ok: Option<oneshot::Receiver<()>>,
    port: u16,
    url: String,
    mode: Mode,
    /// Options after the mode's, e.g. `--replicaof`.
    extra: Vec<String>,
    // Declared last: the directory is removed only after `Drop` killed the process using it.
    dir: TempDir,
}

impl RedisServer {
    /// Starts a server that keeps nothing on disk (`--save "" --appendonly no`), and returns
    /// once it accepts connections and answers `PING`.
    ///
    /// Panics if `redis-server` is not installed or does not start.
    pub async fn start() -> Self {
        Self::start_mode(Mode::Plain, Vec::new()).await
    }

    /// Starts a server like [`start`](Self::start) that replicates the server on
    /// `127.0.0.1:primary_port` (`--replicaof`); it answers `PING` before it has synced.
    pub async fn start_replica_of(primary_port: u16) -> Self {
        let extra = ["--replicaof", "127.0.0.1", &primary_port.to_string()].map(str::to_owned);
        Self::start_mode(Mode::Plain, extra.to_vec()).await
    }

    /// Starts a server that writes every command to its append-only file and fsyncs it before
    /// answering (`--appendonly yes --appendfsync always`), so that data acknowledged before a
    /// [`stop`](Self::stop) (SIGKILL) is back after [`restart`](Self::restart).
    pub async fn start_persistent() -> Self {
        Self::start_mode(Mode::Persistent, Vec::new()).await
    }

    /// Whether `redis-server` can be run here, for callers (benchmarks) that skip Redis rather
    /// than fail without it.
    pub fn installed() -> bool {
        Command::new("redis-server")
            .arg("--version")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// A client for this server (connections are made when asked for).
    pub fn client(&self) -> redis::Client {
        redis::Client::open(self.url.as_str())
            .unwrap_or_else(|e| panic!("invalid Redis URL {}: {e}", self.url))
    }

    /// `used_memory` from `INFO memory`, in bytes: lets tests check that what they store is
    /// bounded or released.
    pub async fn info_memory_used(&self) -> u64 {
        let mut connection = self
            .client()
            .get_multiplexed_async_connection()
            .await
            .unwrap_or_else(|e| panic!("could not connect to {}: {e}", self.url));
        let info: String = redis::cmd("INFO")
            .arg("memory")
            .query_async(&mut connection)
            .await
            .unwrap_or_else(|e| panic!("INFO memory failed on {}: {e}", self.url));
        let value = info
            .lines()
            .find_map(|line| line.strip_prefix("used_memory:"))
            .unwrap_or_else(|| panic!("INFO memory on {} has no used_memory:\n{info}", self.url));
        value.trim().parse().unwrap_or_else(|e| {
            panic!("used_memory {value:?} on {} is not a number: {e}", self.url)
        })
    }

    /// Kills the server with SIGKILL, as a crash or a lost machine would, and waits until it is
    /// gone. The data directory stays for [`restart`](Self::restart). Does nothing if stopped.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and data directory (so a persistent server
    /// reloads its append-only file), stopping it first if it runs, and returns once it is
    /// ready. A killed server's port is free again at once: its listening socket closed with it.
    pub async fn restart(&mut self) {
        self.stop();
        match launch(self.mode, &self.extra, self.port, self.dir.path()).await {
            Ok((child, cluster_ok)) => {
                self.child = Some(child);
                self.cluster_ok = cluster_ok;
                answers_ping(&self.url).await;
            }
            Err(failure) => panic!(
                "redis-server did not restart on port {}:\n{}",
                self.port, failure.log
            ),
        }
    }

    async fn start_mode(mode: Mode, extra: Vec<String>) -> Self {
        let mut failures = Vec::new();
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port(mode == Mode::ClusterNode);
            let dir = tempfile::Builder::new()
                .prefix("redis-harness-")
                .tempdir()
                .unwrap_or_else(|e| panic!("could not create a directory for redis-server: {e}"));
            match launch(mode, &extra, port, dir.path()).await {
                Ok((child, cluster_ok)) => {
                    let server = RedisServer {
                        child: Some(child),
                        cluster_ok,
                        port,
                        url: format!("redis://127.0.0.1:{port}"),
                        mode,
                        extra,
                        dir,
                    };
                    answers_ping(&server.url).await;
                    return server;
                }
                // Usually the port was taken between finding it free and the server binding
                // it; any other early exit shows up in the log of the last attempt.
                Err(failure) => failures.push(format!("port {port}:\n{}", failure.log)),
            }
        }
        panic!(
            "redis-server did not start in {PORT_ATTEMPTS} attempts:\n{}",
            failures.join("\n---\n")
        );
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A Redis cluster, each node a [`RedisServer`] in cluster mode with its own port and
/// directory, all slots assigned; stopped on drop.
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
    replicas_per_master: usize,
}

impl RedisCluster {
    /// Starts `masters` nodes (at least 3, as `redis-cli --cluster create` requires), spreads the
    /// slots over them, and returns once every node reports `cluster_state:ok`.
    pub async fn start(masters: usize) -> Self {
        Self::start_with_replicas(masters, 0).await
    }

    /// Like [`start`](Self::start), with `replicas_per_master` replicas of each master; returns
    /// once every replica's link to its master is up.
    pub async fn start_with_replicas(masters: usize, replicas_per_master: usize) -> Self {
        assert!(
            masters >= 3,
            "a Redis cluster needs at least 3 masters (redis-cli --cluster create refuses fewer), \
             asked for {masters}"
        );
        let count = masters * (1 + replicas_per_master);
        let mut nodes = Vec::with_capacity(count);
        for _ in 0..count {
            nodes.push(RedisServer::start_mode(Mode::ClusterNode, Vec::new()).await);
        }
        let mut cluster = RedisCluster {
            nodes,
            replicas_per_master,
        };
        cluster.assign_slots().await;
        cluster.wait_until_ok().await;
        cluster.wait_for_replica_links().await;
        cluster
    }

    /// Stops (SIGKILL) the replicas of the master that owns `key`'s slot, so that writes to that
    /// shard can no longer be acknowledged by a replica while the other shards' still can.
    pub async fn stop_replicas_of_owner(&mut self, key: &str) {
        let slot = self.slot_of(key).await;
        let topology = self.topology().await;
        let owner = topology
            .iter()
            .find(|node| node.owns(slot))
            .unwrap_or_else(|| panic!("no master owns slot {slot}"));
        let replicas: Vec<u16> = topology
            .iter()
            .filter(|node| node.master.as_deref() == Some(owner.id.as_str()))
            .map(|node| node.port)
            .collect();
        assert!(
            !replicas.is_empty(),
            "the owner of slot {slot} has no replica"
        );
        for node in &mut self.nodes {
            if replicas.contains(&node.port) {
                node.stop();
            }
        }
    }

    /// Waits until each master's replicas have acknowledged a write on it
    /// ([`wait_for_replica`] with a key of that master's slots).
    async fn wait_for_replica_links(&self) {
        if self.replicas_per_master == 0 {
            return;
        }
        for master in self
            .topology()
            .await
            .iter()
            .filter(|node| !node.slots.is_empty())
        {
            let mut tag = 0u32;
            let key = loop {
                let key = format!("redis-harness:sync:{{{tag}}}");
                if master.owns(self.slot_of(&key).await) {
                    break key;
                }
                tag += 1;
                assert!(tag < 100_000, "no key found for the slots of {}", master.id);
            };
            let node = self
                .nodes
                .iter()
                .find(|node| node.port == master.port)
                .unwrap_or_else(|| panic!("master {} is not one of the nodes", master.id));
            replication::acknowledged_write(node, &key).await;
        }
    }

    async fn slot_of(&self, key: &str) -> u16 {
        let mut connection = self.nodes[0]
            .client()
            .get_multiplexed_async_connection()
            .await
            .unwrap_or_else(|e| panic!("could not connect to a cluster node: {e}"));
        redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query_async(&mut connection)
            .await
            .unwrap_or_else(|e| panic!("CLUSTER KEYSLOT failed: {e}"))
    }

    /// The cluster's nodes as one of them sees them (`CLUSTER NODES`).
    async fn topology(&self) -> Vec<ClusterNode> {
        let mut connection = self.nodes[0]
            .client()
            .get_multiplexed_async_connection()
            .await
            .unwrap_or_else(|e| panic!("could not connect to a cluster node: {e}"));
        let nodes: String = redis::cmd("CLUSTER")
            .arg("NODES")
            .query_async(&mut connection)
            .await
            .unwrap_or_else(|e| panic!("CLUSTER NODES failed: {e}"));
        // `<id> <ip:port@bus> <flags> <master id or -> <ping> <pong> <epoch> <link> <slots>...`
        nodes
            .lines()
            .map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let address = fields[1].split('@').next().unwrap_or_default();
                let port = address
                    .rsplit(':')
                    .next()
                    .and_then(|port| port.parse().ok())
                    .unwrap_or_else(|| panic!("unreadable node address in {line:?}"));
                let slots = fields
                    .iter()
                    .skip(8)
                    .filter_map(|range| {
                        let (start, end) = range.split_once('-').unwrap_or((range, range));
                        Some((start.parse().ok()?, end.parse().ok()?))
                    })
                    .collect();
                ClusterNode {
                    id: fields[0].to_owned(),
                    port,
                    master: (fields[3] != "-").then(|| fields[3].to_owned()),
                    slots,
                }
            })
            .collect()
    }

    /// The nodes' URLs, `redis://127.0.0.1:PORT` each: the seeds for a `ClusterClient`.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(|node| node.url.clone()).collect()
    }

    async fn assign_slots(&self) {
        let addresses: Vec<String> = self
            .nodes
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.port))
            .collect();
        let replicas = self.replicas_per_master;
        let output = tokio::task::spawn_blocking({
            let addresses = addresses.clone();
            move || {
                Command::new("redis-cli")
                    .args(["--cluster", "create"])
                    .args(&addresses)
                    .arg("--cluster-replicas")
                    .arg(replicas.to_string())
                    .arg("--cluster-yes")
                    .stdin(Stdio::null())
                    .output()
            }
        })
        .await
        .expect("the redis-cli task panicked");
        let output = match output {
            Ok(output) => output,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!("{CLI_NOT_INSTALLED}"),
            Err(e) => panic!("could not run redis-cli: {e}"),
        };
        if !output.status.success() {
            panic!(
                "redis-cli --cluster create {} failed ({}):\n{}{}",
                addresses.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }

    /// Nodes learn the slot assignment by gossip, so some may not serve every slot yet when
    /// `redis-cli` returns: waits until each has logged that the cluster is ok, then checks that
    /// it says so.
    async fn wait_until_ok(&mut self) {
        for node in &mut self.nodes {
            let logged = node
                .cluster_ok
                .take()
                .expect("a cluster node watches its log");
            match tokio::time::timeout(STARTUP_TIMEOUT, logged).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => panic!("cluster node {} exited before the cluster was ok", node.url),
                Err(_) => panic!(
                    "cluster node {} did not log {CLUSTER_OK:?} within {STARTUP_TIMEOUT:?}",
                    node.url
                ),
            }
            let mut connection = node
                .client()
                .get_multiplexed_async_connection()
                .await
                .unwrap_or_else(|e| panic!("could not connect to cluster node {}: {e}", node.url));
            let info: String = redis::cmd("CLUSTER")
                .arg("INFO")
                .query_async(&mut connection)
                .await
                .unwrap_or_else(|e| panic!("CLUSTER INFO failed on {}: {e}", node.url));
            assert!(
                info.lines().any(|line| line.trim() == "cluster_state:ok"),
                "cluster node {} logged {CLUSTER_OK:?} but says:\n{info}",
                node.url
            );
        }
    }
}

/// A line of `CLUSTER NODES`.
struct ClusterNode {
    id: String,
    port: u16,
    /// For a replica, its master's id.
    master: Option<String>,
    /// For a master, the slot ranges it serves.
    slots: Vec<(u16, u16)>,
}

impl ClusterNode {
    fn owns(&self, slot: u16) -> bool {
        self.slots
            .iter()
            .any(|(start, end)| (*start..=*end).contains(&slot))
    }
}

/// Why a server exited before it was ready: its log.
struct Failure {
    log: String,
}

/// Runs `redis-server` on `port` in `dir` and waits for its "ready" log line; a cluster node also
/// gets the receiver told when it logs that the cluster is ok. `Err` if it exits first; panics if
/// it is not installed or neither happens within [`STARTUP_TIMEOUT`].
async fn launch(
    mode: Mode,
    extra: &[String],
    port: u16,
    dir: &Path,
) -> Result<(Child, Option<oneshot::Receiver<()>>), Failure> {
    let spawned = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--daemonize", "no", "--loglevel", "notice"])
        .arg("--dir")
        .arg(dir)
        .args(mode.args())
        .args(extra)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!("{NOT_INSTALLED}"),
        Err(e) => panic!("could not start redis-server: {e}"),
    };
    let stdout = child.stdout.take().expect("redis-server's stdout is piped");
    let (ready_tx, mut ready_rx) = oneshot::channel();
    let (cluster_ok, cluster_ok_rx) = match mode {
        Mode::ClusterNode => {
            let (sender, receiver) = oneshot::channel();
            (Some(sender), Some(receiver))
        }
        Mode::Plain | Mode::Persistent => (None, None),
    };
    std::thread::Builder::new()
        .name(format!("redis-server-{port}-log"))
        .spawn(move || watch_log(stdout, ready_tx, cluster_ok))
        .unwrap_or_else(|e| panic!("could not start a thread to read redis-server's log: {e}"));
    let outcome = match tokio::time::timeout(STARTUP_TIMEOUT, &mut ready_rx).await {
        Ok(outcome) => outcome,
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            // The log ends with the process, so its text arrives now.
            let log = tokio::time::timeout(Duration::from_secs(5), ready_rx)
                .await
                .ok()
                .and_then(Result::ok)
                .and_then(Result::err)
                .unwrap_or_default();
            panic!(
                "redis-server on port {port} did not log {READY:?} within {STARTUP_TIMEOUT:?}:\n{log}"
            );
        }
    };
    match outcome {
        Ok(Ok(())) => Ok((child, cluster_ok_rx)),
        Ok(Err(log)) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(Failure { log })
        }
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the thread reading redis-server's log on port {port} stopped");
        }
    }
}

/// Reads the server's log line by line as it comes: `Ok` once it is ready, or the whole log if
/// it ends (the process exited) first; then tells `cluster_ok`, if given, when the cluster is ok.
/// Keeps reading to the end so that the server never blocks on a full pipe.
fn watch_log(
    stdout: ChildStdout,
    ready: oneshot::Sender<Result<(), String>>,
    mut cluster_ok: Option<oneshot::Sender<()>>,
) {
    let mut reader = BufReader::new(stdout);
    let mut seen = String::new();
    let mut ready = Some(ready);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                let text = String::from_utf8_lossy(&line);
                if ready.is_some() {
                    if text.contains(READY) {
                        let _ = ready.take().map(|ready| ready.send(Ok(())));
                    } else {
                        seen.push_str(&text);
                    }
                } else if text.contains(CLUSTER_OK) {
                    let _ = cluster_ok.take().map(|ok| ok.send(()));
                }
            }
        }
    }
    if let Some(ready) = ready {
        let _ = ready.send(Err(seen));
    }
}

/// Checks that the ready server at `url` answers `PING` (it loads its data before it logs that
/// it is ready, so it never answers `LOADING` here).
async fn answers_ping(url: &str) {
    let client =
        redis::Client::open(url).unwrap_or_else(|e| panic!("invalid Redis URL {url}: {e}"));
    match ping(&client).await {
        Ok(pong) if pong == "PONG" => {}
        Ok(other) => panic!("redis-server at {url} answered PING with {other:?}"),
        Err(e) => panic!("redis-server at {url} does not answer PING: {e}"),
    }
}

async fn ping(client: &redis::Client) -> redis::RedisResult<String> {
    let mut connection = client.get_multiplexed_async_connection().await?;
    redis::cmd("PING").query_async(&mut connection).await
}

/// A loopback port that is free now (the server may still lose it to someone else; callers
/// retry). Cluster nodes need `port + 10000` free too, so their port stays below 55535.
fn free_port(cluster: bool) -> u16 {
    let bindable = |port: u16| TcpListener::bind(("127.0.0.1", port)).is_ok();
    for _ in 0..100 {
        let listener = TcpListener::bind("127.0.0.1:0")
            .unwrap_or_else(|e| panic!("could not bind a loopback port: {e}"));
        let port = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("could not read a bound port: {e}"))
            .port();
        drop(listener);
        if !cluster || (port < CLUSTER_PORT_LIMIT && bindable(port + CLUSTER_BUS_OFFSET)) {
            return port;
        }
    }
    // The system hands out ports above the limit only: look below it ourselves.
    let start = 20000 + (std::process::id() % 30000) as u16;
    (start..CLUSTER_PORT_LIMIT)
        .chain(10000..start)
        .find(|&port| bindable(port) && bindable(port + CLUSTER_BUS_OFFSET))
        .unwrap_or_else(|| {
            panic!("no free loopback port below {CLUSTER_PORT_LIMIT} with port + 10000 free too")
        })
}
