//! Redis benchmarks, all in one run:
//!
//! - throughput: approvals created, decided with a software passkey through the real approval
//!   route, and collected, per second, on a gateway with the Redis store against one with the
//!   embedded store, both in this process, in interleaved rounds (one agent sequentially, as the
//!   end-to-end figure of `benches/gateway.rs`, and several agents with a person each at once);
//! - memory: Redis `used_memory` per pending request with 1 KiB params, stored with
//!   `RedisStore::create_approval`, and what each of its keys costs (`MEMORY USAGE`);
//! - long polls: one `handsign serve --redis-url` process with 10,000 agents long-polling at
//!   once (`GET /v1/approvals/{id}?wait=60`) until their requests expire; its peak resident size.
//!
//! Run with `cargo bench --bench redis` (add `-- throughput`, `-- memory` or `-- long_polls` for
//! one part): it prints a report; BENCHMARKS.md records one. Without
//! `--bench` (`cargo test --benches`) it runs the same code with small sizes, as a smoke test.
//! Needs `redis-server` (`apt-get install -y redis-server`; `scripts/test` installs it).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{GatewayClient, Person, RedisServer, TestAgent, TestGateway, flight};
use futures_util::StreamExt as _;
use handsign::config::ServeArgs;
use handsign::domain::{
    AgentRecord, AgentStatus, ApprovalId, ApprovalKind, ApprovalRecord, ApprovalState,
    InvitationRecord, PasskeyRecord, UserId, UserRecord,
};
use handsign::store::Store as _;
use handsign::store::redis::{DEFAULT_PREFIX, RedisStore, RedisTarget};
use handsign_protocol::canonical::Limits;
use handsign_protocol::dpop;
use handsign_protocol::keys::SigningKey;
use handsign_protocol::params::CanonicalParams;
use serde_json::Value;
use webauthn_authenticator_rs::WebauthnAuthenticator as _;
use webauthn_authenticator_rs::softpasskey::SoftPasskey;
use webauthn_rs::prelude::{Url, WebauthnBuilder};

/// How much each part does: full sizes under `cargo bench`, small ones as a smoke test.
struct Sizes {
    /// Interleaved rounds of the throughput comparison.
    rounds: usize,
    /// Approvals per round for the one sequential agent.
    sequential: usize,
    /// Agents (each with its own person) working at once, and approvals per agent per round.
    lanes: usize,
    per_lane: usize,
    /// Users, agents per user and pending requests per agent for the memory measurement.
    users: usize,
    agents_per_user: usize,
    pending_per_agent: usize,
    /// Agents long-polling the gateway process at once, and their requests' lifetime.
    pollers: usize,
    poll_ttl: i64,
}

const BENCH: Sizes = Sizes {
    rounds: 5,
    sequential: 60,
    lanes: 8,
    per_lane: 15,
    users: 10,
    agents_per_user: 500,
    pending_per_agent: 20,
    pollers: 10_000,
    poll_ttl: 30,
};

const SMOKE: Sizes = Sizes {
    rounds: 1,
    sequential: 50,
    lanes: 4,
    per_lane: 13,
    users: 2,
    agents_per_user: 25,
    pending_per_agent: 20,
    pollers: 200,
    poll_ttl: handsign::config::MIN_TTL,
};

/// Store calls in flight while filling Redis.
const IN_FLIGHT: usize = 64;

fn main() {
    let bench = std::env::args().any(|arg| arg == "--bench");
    let sizes = if bench { &BENCH } else { &SMOKE };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        println!(
            "handsign Redis benchmarks ({}; redis-server on loopback)\n",
            if bench { "full sizes" } else { "smoke sizes" }
        );
        if selected("throughput") {
            throughput(sizes).await;
        }
        if selected("memory") {
            memory(sizes).await;
        }
        if selected("long_polls") {
            long_polls(sizes).await;
        }
    });
}

const PARTS: [&str; 3] = ["throughput", "memory", "long_polls"];

/// Whether to run `part`: every part, unless parts are named on the command line
/// (`cargo bench --bench redis -- memory`).
fn selected(part: &str) -> bool {
    let named: Vec<String> = std::env::args()
        .skip(1)
        .filter(|arg| PARTS.contains(&arg.as_str()))
        .collect();
    named.is_empty() || named.iter().any(|name| name == part)
}

// Throughput.

fn raise_limits(args: &mut ServeArgs) {
    args.limits.agent_requests_per_minute = 1_000_000;
    args.limits.max_pending_per_agent = 1_000_000;
    args.limits.user_prompts_per_minute = 1_000_000;
    args.limits.ceremonies_per_minute = 1_000_000;
}

/// A person and an agent acting for them.
struct Lane {
    person: Person,
    agent: TestAgent,
}

async fn lanes(gateway: &TestGateway, count: usize) -> Vec<Lane> {
    let mut lanes = Vec::with_capacity(count);
    for i in 0..count {
        let name = format!("person{i}");
        let person = gateway.register(&name).await;
        let agent = gateway.agent(&name).await;
        lanes.push(Lane { person, agent });
    }
    lanes
}

/// One approval as `benches/gateway.rs` measures it end to end: the agent creates the request,
/// the person decides with their passkey through the approval route (options, assertion,
/// decision), the agent collects its token.
async fn approve_once(client: &GatewayClient, lane: &mut Lane) {
    let id = lane.agent.request(flight()).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, body) = client.decide(&mut lane.person, &id, "approve").await;
    assert!(status.is_success(), "{body}");
    let (_, answer) = lane.agent.read(&id, 0).await;
    assert!(answer["token"].is_string(), "{answer}");
}

async fn sequential(gateway: &TestGateway, lane: &mut Lane, count: usize) -> Duration {
    let started = Instant::now();
    for _ in 0..count {
        approve_once(gateway, lane).await;
    }
    started.elapsed()
}

/// Every lane approves `per_lane` requests, all lanes at once.
async fn concurrent(gateway: &TestGateway, lanes: &mut Vec<Lane>, per_lane: usize) -> Duration {
    let started = Instant::now();
    let tasks: Vec<_> = lanes
        .drain(..)
        .map(|mut lane| {
            let client = gateway.client.clone();
            tokio::spawn(async move {
                for _ in 0..per_lane {
                    approve_once(&client, &mut lane).await;
                }
                lane
            })
        })
        .collect();
    for task in tasks {
        lanes.push(task.await.unwrap());
    }
    started.elapsed()
}

/// Measured time and approvals, per store and mode.
#[derive(Default)]
struct Tally {
    sequential: (Duration, usize),
    concurrent: (Duration, usize),
}

/// Which of a [`Tally`]'s measurements to report.
type Pick = fn(&Tally) -> (Duration, usize);

impl Tally {
    fn rate((time, count): (Duration, usize)) -> f64 {
        count as f64 / time.as_secs_f64()
    }
}

/// A gateway under measurement, its lanes, and what it measured.
struct Contender {
    label: &'static str,
    gateway: TestGateway,
    lanes: Vec<Lane>,
    tally: Tally,
    /// Keeps the gateway's Redis running.
    _redis: Option<RedisServer>,
}

async fn contender(
    label: &'static str,
    redis: Option<RedisServer>,
    lanes_needed: usize,
) -> Contender {
    let redis_url = redis.as_ref().map(|redis| redis.url().to_owned());
    let gateway = TestGateway::start_with(|args| {
        raise_limits(args);
        args.redis_url = redis_url;
    })
    .await;
    let lanes = lanes(&gateway, lanes_needed).await;
    Contender {
        label,
        gateway,
        lanes,
        tally: Tally::default(),
        _redis: redis,
    }
}

async fn throughput(sizes: &Sizes) {
    let lanes_needed = sizes.lanes + 1;
    let mut contenders = vec![
        contender("embedded", None, lanes_needed).await,
        contender("redis", Some(RedisServer::start().await), lanes_needed).await,
        contender(
            "redis-fsync",
            Some(RedisServer::start_persistent().await),
            lanes_needed,
        )
        .await,
    ];
    // One approval per lane first, so that none pays for first use (scripts loaded, files
    // grown) inside the measurement.
    for contender in &mut contenders {
        for lane in &mut contender.lanes {
            approve_once(&contender.gateway, lane).await;
        }
    }
    for round in 0..sizes.rounds {
        // Rotate which store goes first, so that none always runs after the same other.
        for turn in 0..contenders.len() {
            let contender = &mut contenders[(round + turn) % 3];
            let mut single = contender.lanes.pop().unwrap();
            let time = sequential(&contender.gateway, &mut single, sizes.sequential).await;
            contender.tally.sequential.0 += time;
            contender.tally.sequential.1 += sizes.sequential;
            let time = concurrent(&contender.gateway, &mut contender.lanes, sizes.per_lane).await;
            contender.tally.concurrent.0 += time;
            contender.tally.concurrent.1 += sizes.lanes * sizes.per_lane;
            contender.lanes.push(single);
        }
    }
    println!(
        "throughput: create + options + assertion + decide + collect over HTTP, gateways in process, {} interleaved rounds",
        sizes.rounds
    );
    println!(
        "  (embedded: redb, durable commits; redis: redis-server without persistence; redis-fsync: appendonly, appendfsync always)"
    );
    let modes: [(String, Pick); 2] = [
        (
            format!(
                "1 agent, sequential ({} per store)",
                sizes.rounds * sizes.sequential
            ),
            |t| t.sequential,
        ),
        (
            format!(
                "{} agents at once, a person each ({} per store)",
                sizes.lanes,
                sizes.rounds * sizes.lanes * sizes.per_lane
            ),
            |t| t.concurrent,
        ),
    ];
    for (mode, pick) in modes {
        let floor = Tally::rate(pick(&contenders[0].tally));
        let line: Vec<String> = contenders
            .iter()
            .map(|contender| {
                let rate = Tally::rate(pick(&contender.tally));
                format!(
                    "{} {rate:.0}/s ({:.2} ms each, {:.2}x embedded)",
                    contender.label,
                    1e3 / rate,
                    rate / floor
                )
            })
            .collect();
        println!("  {mode}: {}", line.join(", "));
    }
    println!();
}

// Memory.

/// The realistic 1 KiB params object of the protocol benchmark.
fn params_1k() -> Value {
    serde_json::from_str(include_str!(
        "../crates/handsign-protocol/benches/params_1k.json"
    ))
    .unwrap()
}

/// A pending request of `agent` for `user`, built as `tests/store_contract.rs` `approval()`
/// does, with `params`.
fn approval(
    agent: &str,
    user: &UserId,
    params: &CanonicalParams,
    now: i64,
    ttl: i64,
) -> ApprovalRecord {
    ApprovalRecord {
        id: ApprovalId::generate().unwrap(),
        kind: ApprovalKind::Action,
        agent: agent.into(),
        agent_name: "travel bot".into(),
        user: user.clone(),
        audience: "https://travel.example".into(),
        action: "flights.book".into(),
        params: params.as_str().into(),
        params_sha256: params.hash(),
        params_order: Default::default(),
        message: Some("Book the flight we discussed".into()),
        code: "471-128".into(),
        nonce: handsign_protocol::base64url::encode([7u8; 32]),
        created_at: now,
        expires_at: now + ttl,
        state: ApprovalState::Pending,
    }
}

/// A user with a passkey from a real registration, added through the store as an invitation
/// redeemed (as `tests/store_contract.rs` `add_user` does).
async fn add_user(store: &RedisStore, name: &str) -> UserId {
    let user = UserId::parse(name).unwrap();
    let now = handsign::clock::Clock::system().now();
    let origin = Url::parse("http://localhost:8080").unwrap();
    let webauthn = WebauthnBuilder::new("localhost", &origin)
        .unwrap()
        .build()
        .unwrap();
    let (ccr, registration) = webauthn
        .start_passkey_registration(uuid::Uuid::new_v4(), name, name, None)
        .unwrap();
    let credential = SoftPasskey::new(true).do_registration(origin, ccr).unwrap();
    let passkey = webauthn
        .finish_passkey_registration(&credential, &registration)
        .unwrap();
    let code = format!("setup-{name}");
    store
        .put_invitation(&InvitationRecord {
            code_sha256: code.clone(),
            user: None,
            expires_at: now + 3600,
        })
        .await
        .unwrap();
    store
        .redeem_invitation(
            &code,
            &UserRecord {
                id: user.clone(),
                created_at: now,
                admin: false,
            },
            &PasskeyRecord {
                credential_id: handsign_protocol::base64url::encode(passkey.cred_id()),
                user: user.clone(),
                name: "phone".into(),
                passkey,
                public_key_cose: "pQECAyYgASFYIA".into(),
                created_at: now,
                last_used_at: None,
            },
            now,
        )
        .await
        .unwrap();
    user
}

/// An active agent of `user` with a fresh key, added as `handsign agent add` would; its key.
async fn add_agent(store: &RedisStore, user: &UserId) -> SigningKey {
    let key = SigningKey::generate().unwrap();
    store
        .add_agent(&AgentRecord {
            id: key.kid().to_owned(),
            name: "travel bot".into(),
            user: user.clone(),
            public_jwk: Some(key.public_key().to_jwk()),
            status: AgentStatus::Active,
            created_at: handsign::clock::Clock::system().now(),
            enrollment_expires_at: None,
        })
        .await
        .unwrap();
    key
}

/// Adds `count` agents of `user`, [`IN_FLIGHT`] at a time.
async fn add_agents(store: &RedisStore, user: &UserId, count: usize) -> Vec<SigningKey> {
    futures_util::stream::iter(0..count)
        .map(|_| add_agent(store, user))
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await
}

/// Stores `approvals` with `RedisStore::create_approval`, [`IN_FLIGHT`] at a time.
async fn create_all(store: &RedisStore, approvals: &[ApprovalRecord], max_pending: usize) {
    let now = handsign::clock::Clock::system().now();
    futures_util::stream::iter(approvals)
        .map(|approval| async move {
            store
                .create_approval(approval, max_pending, now)
                .await
                .unwrap();
        })
        .buffer_unordered(IN_FLIGHT)
        .collect::<Vec<()>>()
        .await;
}

/// A connection for measuring, with a generous response timeout: while 10,000 polls arrive,
/// Redis and this process are busy and an answer may take seconds.
async fn redis_connection(redis: &RedisServer) -> redis::aio::MultiplexedConnection {
    redis
        .client()
        .get_multiplexed_async_connection_with_config(
            &redis::AsyncConnectionConfig::new()
                .set_response_timeout(Some(Duration::from_secs(60))),
        )
        .await
        .unwrap()
}

/// `MEMORY USAGE key SAMPLES 0` (every element counted), in bytes.
async fn memory_usage(connection: &mut redis::aio::MultiplexedConnection, key: &str) -> u64 {
    let bytes: Option<u64> = redis::cmd("MEMORY")
        .arg("USAGE")
        .arg(key)
        .arg("SAMPLES")
        .arg(0)
        .query_async(connection)
        .await
        .unwrap();
    bytes.unwrap_or_else(|| panic!("no key {key}"))
}

async fn encoding(connection: &mut redis::aio::MultiplexedConnection, key: &str) -> String {
    redis::cmd("OBJECT")
        .arg("ENCODING")
        .arg(key)
        .query_async(connection)
        .await
        .unwrap()
}

async fn count(
    connection: &mut redis::aio::MultiplexedConnection,
    command: &str,
    key: &str,
) -> u64 {
    redis::cmd(command)
        .arg(key)
        .query_async(connection)
        .await
        .unwrap()
}

async fn memory(sizes: &Sizes) {
    let redis = RedisServer::start().await;
    let store = RedisStore::connect(&RedisTarget::parse(redis.url()).unwrap(), DEFAULT_PREFIX)
        .await
        .unwrap();
    let params = CanonicalParams::from_value(&params_1k(), &Limits::default()).unwrap();
    let mut agents = Vec::new();
    for u in 0..sizes.users {
        let user = add_user(&store, &format!("user{u}")).await;
        for key in add_agents(&store, &user, sizes.agents_per_user).await {
            agents.push((user.clone(), key.kid().to_owned()));
        }
    }
    let now = handsign::clock::Clock::system().now();
    let approvals: Vec<ApprovalRecord> = agents
        .iter()
        .flat_map(|(user, agent)| {
            (0..sizes.pending_per_agent).map(|_| approval(agent, user, &params, now, 3600))
        })
        .collect();
    let n = approvals.len() as u64;

    let before = redis.info_memory_used().await;
    let started = Instant::now();
    create_all(&store, &approvals, sizes.pending_per_agent).await;
    let elapsed = started.elapsed();
    let after = redis.info_memory_used().await;
    assert_eq!(
        store
            .pending_count(handsign::clock::Clock::system().now())
            .await
            .unwrap(),
        approvals.len()
    );
    let per_request = (after - before) as f64 / n as f64;
    println!(
        "memory: {n} pending requests with {}-byte canonical params ({} users, {} agents, {} pending each), stored with RedisStore::create_approval, {IN_FLIGHT} in flight, in {:.1} s ({:.0}/s)",
        params.as_str().len(),
        sizes.users,
        agents.len(),
        sizes.pending_per_agent,
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64()
    );
    println!(
        "  used_memory {before} -> {after} bytes: {per_request:.0} bytes per pending request (target <= 2048: {})",
        if per_request <= 2048.0 {
            "met"
        } else {
            "NOT met"
        }
    );

    // What each key costs, for one request and per index entry.
    let keys = store.keys();
    let sample = &approvals[approvals.len() / 2];
    let (user, agent) = (&sample.user, &sample.agent);
    let mut connection = redis_connection(&redis).await;
    let request_key = keys.approval(&sample.id);
    let request = memory_usage(&mut connection, &request_key).await;
    let request_json = count(&mut connection, "STRLEN", &request_key).await;
    let history_key = keys.history(user);
    let history = memory_usage(&mut connection, &history_key).await;
    let history_len = count(&mut connection, "ZCARD", &history_key).await;
    let history_encoding = encoding(&mut connection, &history_key).await;
    let agent_pending_key = keys.agent_pending(user, agent);
    let agent_pending = memory_usage(&mut connection, &agent_pending_key).await;
    let agent_pending_len = count(&mut connection, "ZCARD", &agent_pending_key).await;
    let agent_pending_encoding = encoding(&mut connection, &agent_pending_key).await;
    let per = |bytes: u64, len: u64| bytes as f64 / len as f64;
    let accounted =
        request as f64 + per(history, history_len) + per(agent_pending, agent_pending_len);
    println!("  one request's keys (MEMORY USAGE ... SAMPLES 0):");
    println!("    the request as created (string, {request_json} bytes of JSON): {request} bytes");
    println!(
        "    history index ({history_encoding}, {history_len} entries): {:.0} bytes per entry",
        per(history, history_len)
    );
    println!(
        "    agent-pending set ({agent_pending_encoding}, {agent_pending_len} entries): {:.0} bytes per entry",
        per(agent_pending, agent_pending_len)
    );
    println!(
        "    sum {accounted:.0} bytes; the other {:.0} of the {per_request:.0} are outside these keys' MEMORY USAGE (the keyspace's bucket array, the zsets' growth)\n",
        per_request - accounted
    );
}

// Long polls against the gateway process.

/// The soft limit on open files of this process (inherited by the gateway it spawns).
fn open_files_limit() -> u64 {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .unwrap();
    line.split_whitespace().nth(3).unwrap().parse().unwrap()
}

/// A `kB` field of `/proc/<pid>/status` (`VmRSS`, `VmHWM`), in bytes.
fn status_bytes(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"));
    let kib: u64 = line.trim().trim_end_matches("kB").trim().parse().unwrap();
    kib * 1024
}

/// Established TCP connections whose local port is `port` (the gateway's side), from
/// `/proc/net/tcp`.
fn established(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let port = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let mut fields = line.split_whitespace().skip(1);
            let local = fields.next().unwrap_or("");
            let state = fields.nth(1).unwrap_or("");
            local.ends_with(&port) && state == "01"
        })
        .count()
}

/// How many times Redis has run `command` (`INFO commandstats`).
async fn command_calls(connection: &mut redis::aio::MultiplexedConnection, command: &str) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(connection)
        .await
        .unwrap();
    info.lines()
        .find_map(|line| line.strip_prefix(&format!("cmdstat_{command}:calls=")))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |calls| calls.parse().unwrap())
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// The gateway process, killed when dropped.
struct Gateway(std::process::Child);

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn long_polls(sizes: &Sizes) {
    let n = sizes.pollers;
    // Each poll is one connection: this process holds n sockets and so does the gateway, which
    // inherits this limit.
    let limit = open_files_limit();
    assert!(
        limit >= n as u64 + 200,
        "{n} long polls need more than {limit} open files per process: raise it (ulimit -n {}) and run again",
        n + 1000
    );
    let redis = RedisServer::start().await;
    let data = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let public = format!("http://localhost:{port}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_handsign"))
        .args(["serve", "--redis-url", redis.url()])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--public-url", &public])
        .arg("--data-dir")
        .arg(data.path())
        .env("HANDSIGN_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let gateway = Gateway(child);
    let pid = gateway.0.id();
    // The setup link comes first (Redis is empty), "listening on" last.
    let mut setup = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some(code) = line.trim().strip_prefix(&format!("{public}/setup?code=")) {
            setup = Some(code.to_owned());
        }
        if line.contains("listening on") {
            break;
        }
    }
    let client = GatewayClient::new(&public);
    common::register(&client.http, &public, &setup.unwrap(), "alice").await;
    let started_rss = status_bytes(pid, "VmRSS");

    // The agents and their pending requests, straight into the gateway's Redis.
    let store = RedisStore::connect(&RedisTarget::parse(redis.url()).unwrap(), DEFAULT_PREFIX)
        .await
        .unwrap();
    let alice = UserId::parse("alice").unwrap();
    let keys = add_agents(&store, &alice, n).await;
    let params = CanonicalParams::from_value(&flight(), &Limits::default()).unwrap();
    let now = handsign::clock::Clock::system().now();
    let approvals: Vec<ApprovalRecord> = keys
        .iter()
        .map(|key| approval(key.kid(), &alice, &params, now, sizes.poll_ttl))
        .collect();
    create_all(&store, &approvals, 20).await;
    let expires_at = now + sizes.poll_ttl;
    let idle_rss = status_bytes(pid, "VmRSS");

    // Every poll passes the DPoP check, reads its agent and its request (one HGETALL each), and
    // then waits: once Redis has answered 2n HGETALLs, every poll is parked.
    let mut connection = redis_connection(&redis).await;
    let hgetall_before = command_calls(&mut connection, "hgetall").await;
    let http = {
        let _ = handsign::http_client::new(); // installs the TLS provider reqwest asks for
        reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            // No TCP keepalive probes. reqwest sends one after 15 s idle, and its TCP user
            // timeout (30 s) aborts the connection if that probe goes unanswered. Here every
            // agent shares one loopback: the kernel sends the probes of connections opened close
            // together in batches (about 2,600 at once), and drops what exceeds its input queue
            // of 1,000 packets (`net.core.netdev_max_backlog`, counted in
            // `/proc/net/softnet_stat`). With probes, runs lost up to 844 polls to "Connection
            // timed out".
            .tcp_keepalive(None)
            .build()
            .unwrap()
    };
    let answered = Arc::new(AtomicUsize::new(0));
    let opened = Instant::now();
    let open_poll = |(key, approval): (SigningKey, &ApprovalRecord)| {
        let http = http.clone();
        let answered = answered.clone();
        let path = format!("/v1/approvals/{}", approval.id);
        let htu = format!("{public}{path}");
        let url = format!("http://127.0.0.1:{port}{path}?wait=60");
        tokio::spawn(async move {
            let proof = dpop::create(
                &key,
                "GET",
                &htu,
                handsign::clock::Clock::system().now(),
                None,
            )
            .unwrap();
            let result = async {
                let response = http.get(&url).header("dpop", proof).send().await?;
                let status = response.status();
                let body: Value = response.json().await?;
                Ok::<_, reqwest::Error>((status, body))
            }
            .await;
            answered.fetch_add(1, Ordering::SeqCst);
            (result, unix_now())
        })
    };
    // All at once: the gateway queues a burst of connections (`server::LISTEN_BACKLOG`).
    let polls: Vec<_> = keys.into_iter().zip(&approvals).map(open_poll).collect();
    let mut peak_sampled = idle_rss;
    let mut sampler = tokio::time::interval(Duration::from_millis(5));
    let (parked_after, parked_rss, parked_connections) = loop {
        let reads = command_calls(&mut connection, "hgetall").await - hgetall_before;
        peak_sampled = peak_sampled.max(status_bytes(pid, "VmRSS"));
        let connections = established(port);
        if reads >= 2 * n as u64 && connections >= n {
            break (opened.elapsed(), status_bytes(pid, "VmRSS"), connections);
        }
        assert_eq!(
            answered.load(Ordering::SeqCst),
            0,
            "a long poll answered before all were parked"
        );
        assert!(
            handsign::clock::Clock::system().now() < expires_at,
            "not all {n} long polls were parked before their requests expired ({reads} of {} reads, {connections} connections): raise poll_ttl",
            2 * n
        );
        sampler.tick().await;
    };
    assert_eq!(answered.load(Ordering::SeqCst), 0);
    let parked_at = handsign::clock::Clock::system().now();
    assert!(parked_at < expires_at);
    while answered.load(Ordering::SeqCst) < n {
        sampler.tick().await;
        peak_sampled = peak_sampled.max(status_bytes(pid, "VmRSS"));
    }
    let hwm = status_bytes(pid, "VmHWM");
    // Each poll reads its request once more when it wakes at expiry.
    let reads = command_calls(&mut connection, "hgetall").await - hgetall_before;
    let mut last_answer = 0f64;
    let mut failures = Vec::new();
    for poll in polls {
        let (result, at) = poll.await.unwrap();
        last_answer = last_answer.max(at);
        match result {
            Ok((status, body)) if status.is_success() && body["status"] == "expired" => {}
            Ok((status, body)) => failures.push(format!("{status} {body}")),
            Err(e) => {
                let mut text = format!("at expires_at{:+.2} s: {e}", at - expires_at as f64);
                let mut source = std::error::Error::source(&e);
                while let Some(cause) = source {
                    text.push_str(&format!(": {cause}"));
                    source = cause.source();
                }
                failures.push(text);
            }
        }
    }
    drop(gateway);
    assert!(
        failures.is_empty(),
        "{} of {n} long polls did not end as expired ({reads} store reads, {} expected), e.g. {:?}",
        failures.len(),
        3 * n,
        &failures[..failures.len().min(5)]
    );
    println!(
        "long polls: {n} agents (DPoP) long-polling one `handsign serve --redis-url` process at once, requests expiring {} s after creation",
        sizes.poll_ttl
    );
    println!(
        "  all {n} parked {:.2} s after the first was opened ({parked_connections} established connections); all answered \"expired\", the last {:.2} s after expires_at ({reads} HGETALLs in Redis: 2 per poll to park, 1 at expiry)",
        parked_after.as_secs_f64(),
        last_answer - expires_at as f64
    );
    println!(
        "  gateway resident size: {:.1} MiB after start and registration, {:.1} MiB with the agents and requests stored, {:.1} MiB with all {n} parked ({:.1} KiB per parked poll)",
        mib(started_rss),
        mib(idle_rss),
        mib(parked_rss),
        (parked_rss.saturating_sub(idle_rss)) as f64 / 1024.0 / n as f64
    );
    println!(
        "  peak (VmHWM): {:.1} MiB = {:.1} MB (target for 10,000 polls < 150 MB: {}); highest sampled VmRSS {:.1} MiB; open-files limit {limit}",
        mib(hwm),
        hwm as f64 / 1e6,
        match (n >= 10_000, (hwm as f64) < 150e6) {
            (false, _) => "not judged at this size",
            (true, true) => "met",
            (true, false) => "NOT met",
        },
        mib(peak_sampled)
    );
}
