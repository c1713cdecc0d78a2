//! What parked long polls cost everyone else: the gateway CPU time of one decide-and-collect
//! round with 10,000 long polls waiting on other requests, against the same round with none, in
//! one run of one gateway process (the release binary, `handsign serve` on the embedded store).
//!
//! A round is what one approval takes: an agent creates a request, a person decides it with a
//! software passkey (options, assertion, decision), the agent collects its token. The gateway's
//! CPU time is `utime + stime` of `/proc/<pid>/stat`, read before and after a batch of rounds.
//! The batches run idle, then with every poll parked, then idle again once the polls are closed,
//! so that both conditions see the same process and machine.
//!
//! Run with `cargo bench --bench waiters`; `HANDSIGN_BENCH_POLLS` sets the number of polls
//! (default 10,000) and `HANDSIGN_BENCH_GATEWAY` another gateway binary to measure (the same
//! benchmark against an older build). It prints a report; BENCHMARKS.md records one.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{GatewayClient, Person, TestAgent, flight};
use futures_util::StreamExt as _;
use handsign::domain::{
    AgentRecord, AgentStatus, ApprovalId, ApprovalKind, ApprovalRecord, ApprovalState, UserId,
};
use handsign::store::Store as _;
use handsign::store::embedded::EmbeddedStore;
use handsign_protocol::canonical::Limits;
use handsign_protocol::dpop;
use handsign_protocol::keys::SigningKey;
use handsign_protocol::params::CanonicalParams;

/// Decide-and-collect rounds per batch: enough clock ticks (10 ms each) for a 1% reading.
const ROUNDS: usize = 300;
/// Requests stored at once while setting up.
const IN_FLIGHT: usize = 64;
/// Parked polls (and pending requests) per agent.
const POLLS_PER_AGENT: usize = 100;

fn main() {
    let polls: usize = std::env::var("HANDSIGN_BENCH_POLLS")
        .map(|n| n.parse().unwrap())
        .unwrap_or(10_000);
    let binary = std::env::var("HANDSIGN_BENCH_GATEWAY")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_handsign").to_owned());
    let limit = open_files_limit();
    assert!(
        limit >= polls as u64 + 200,
        "{polls} long polls need more than {limit} open files per process: raise it (ulimit -n) and run again"
    );
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(run(&binary, polls));
}

async fn run(binary: &str, polls: usize) {
    let data = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let public = format!("http://localhost:{port}");

    // First start: alice registers through the setup link.
    let (gateway, setup) = Gateway::start(binary, data.path(), port);
    let client = GatewayClient::new(&public);
    let mut alice = common::register(&client.http, &public, &setup.unwrap(), "alice").await;
    gateway.stop();

    // The agents and the requests the polls wait on, straight into the store while the gateway
    // is stopped.
    let user = UserId::parse("alice").unwrap();
    let (worker, approvals) = {
        let store = EmbeddedStore::open(&data.path().join("handsign.redb")).unwrap();
        let worker = add_agent(&store, &user).await;
        // Spread over agents: a store counts an agent's pending requests at each creation.
        let mut waiters = Vec::new();
        for _ in 0..polls.div_ceil(POLLS_PER_AGENT) {
            waiters.push(add_agent(&store, &user).await);
        }
        let params = CanonicalParams::from_value(&flight(), &Limits::default()).unwrap();
        let now = handsign::clock::Clock::system().now();
        let approvals: Vec<(SigningKey, ApprovalRecord)> = (0..polls)
            .map(|i| {
                let key = waiters[i / POLLS_PER_AGENT].clone();
                let approval = approval(key.kid(), &user, &params, now);
                (key, approval)
            })
            .collect();
        futures_util::stream::iter(&approvals)
            .map(|(_, approval)| store.create_approval(approval, POLLS_PER_AGENT, now))
            .buffer_unordered(IN_FLIGHT)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .for_each(|created| created.unwrap());
        (worker, approvals)
    };

    let (gateway, _) = Gateway::start(binary, data.path(), port);
    let agent = TestAgent::new(worker, &public);
    println!(
        "handsign waiter benchmark: {} (embedded store, one gateway process, loopback)\n",
        binary
    );
    // Warm-up: the first rounds fill caches and the store's pages.
    batch(&gateway, &client, &agent, &mut alice, 50).await;
    let idle_before = batch(&gateway, &client, &agent, &mut alice, ROUNDS).await;

    let rss_idle = status_bytes(gateway.pid(), "VmRSS");
    // The round's own connections, kept alive between rounds.
    let own_connections = established(port);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        // No TCP keepalive probes (see BENCHMARKS.md, "Connections timed out").
        .tcp_keepalive(None)
        .build()
        .unwrap();
    let opened = Instant::now();
    let parked: Vec<_> = approvals
        .iter()
        .map(|(key, approval)| {
            let (http, key) = (http.clone(), key.clone());
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
                let response = http.get(&url).header("dpop", proof).send().await;
                panic!("a parked poll answered: {response:?}");
            })
        })
        .collect();
    // Parked: every connection is open and the gateway has done its work for them (its CPU
    // time no longer moves).
    while established(port) < own_connections + polls {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    gateway.settle().await;
    let parked_after = opened.elapsed();
    let rss_parked = status_bytes(gateway.pid(), "VmRSS");
    let with_polls = batch(&gateway, &client, &agent, &mut alice, ROUNDS).await;
    assert!(parked.iter().all(|poll| !poll.is_finished()));
    assert!(established(port) >= polls);

    // The polls go (their connections close, the gateway drops them), then idle again.
    for poll in &parked {
        poll.abort();
    }
    for poll in parked {
        let _ = poll.await;
    }
    drop(http);
    while open_at_gateway(port) > own_connections {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    gateway.settle().await;
    let idle_after = batch(&gateway, &client, &agent, &mut alice, ROUNDS).await;
    let hwm = status_bytes(gateway.pid(), "VmHWM");
    gateway.stop();

    let idle = Batch::combined(&idle_before, &idle_after);
    println!(
        "decide-and-collect round (create, options, assertion, decision, collect), {ROUNDS} rounds per batch:"
    );
    for (name, batch) in [
        ("no polls parked (before)", &idle_before),
        (&format!("{polls} polls parked")[..], &with_polls),
        ("no polls parked (after)", &idle_after),
    ] {
        println!(
            "  {name:>26}: gateway CPU {:.2} ms per round, latency p50 {:.2} ms, p99 {:.2} ms",
            batch.cpu_per_round(),
            batch.latency(0.50),
            batch.latency(0.99),
        );
    }
    let ratio = with_polls.cpu_per_round() / idle.cpu_per_round();
    println!(
        "  gateway CPU per round with {polls} parked against none (mean of before and after): {ratio:.2}x (target <= 1.2x: {})",
        if ratio <= 1.2 { "met" } else { "NOT met" }
    );
    println!(
        "  gateway resident size: {:.1} MiB idle, {:.1} MiB with {polls} parked ({:.1} KiB per parked poll, all parked {:.2} s after the first opened), peak (VmHWM) {:.1} MB (target < 150 MB: {})",
        mib(rss_idle),
        mib(rss_parked),
        rss_parked.saturating_sub(rss_idle) as f64 / 1024.0 / polls as f64,
        parked_after.as_secs_f64(),
        hwm as f64 / 1e6,
        if (hwm as f64) < 150e6 {
            "met"
        } else {
            "NOT met"
        }
    );
}

/// The gateway's CPU time and each round's latency over one batch of rounds.
struct Batch {
    cpu_ticks: u64,
    latencies: Vec<Duration>,
}

impl Batch {
    fn combined(a: &Batch, b: &Batch) -> Batch {
        let mut latencies = [a.latencies.clone(), b.latencies.clone()].concat();
        latencies.sort();
        Batch {
            cpu_ticks: a.cpu_ticks + b.cpu_ticks,
            latencies,
        }
    }

    fn cpu_per_round(&self) -> f64 {
        self.cpu_ticks as f64 * 1e3 / clock_ticks_per_second() / self.latencies.len() as f64
    }

    fn latency(&self, q: f64) -> f64 {
        let at = ((self.latencies.len() as f64 * q) as usize).min(self.latencies.len() - 1);
        self.latencies[at].as_secs_f64() * 1e3
    }
}

async fn batch(
    gateway: &Gateway,
    client: &GatewayClient,
    agent: &TestAgent,
    alice: &mut Person,
    rounds: usize,
) -> Batch {
    let mut latencies = Vec::with_capacity(rounds);
    let cpu_before = gateway.cpu_ticks();
    for _ in 0..rounds {
        let started = Instant::now();
        let created = agent.request(flight()).await;
        let id = created["id"].as_str().unwrap();
        let (status, answer) = client.decide(alice, id, "approve").await;
        assert!(status.is_success(), "{answer}");
        let (status, answer) = agent.read(id, 0).await;
        assert!(
            status.is_success() && answer["token"].is_string(),
            "{answer}"
        );
        latencies.push(started.elapsed());
    }
    let cpu_ticks = gateway.cpu_ticks() - cpu_before;
    latencies.sort();
    Batch {
        cpu_ticks,
        latencies,
    }
}

/// `handsign serve` on the embedded store in a data directory, stopped when dropped.
struct Gateway(Child);

impl Gateway {
    /// Starts the gateway and waits until it listens; the setup link if it printed one.
    fn start(binary: &str, data: &Path, port: u16) -> (Gateway, Option<String>) {
        let public = format!("http://localhost:{port}");
        let mut child = Command::new(binary)
            .arg("serve")
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--public-url", &public])
            .arg("--data-dir")
            .arg(data)
            .args(["--agent-requests-per-minute", "100000000"])
            .args(["--max-pending-per-agent", "100000000"])
            .args(["--user-prompts-per-minute", "100000000"])
            .args(["--ceremonies-per-minute", "100000000"])
            .env("HANDSIGN_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
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
        (Gateway(child), setup)
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }

    /// `utime + stime` of `/proc/<pid>/stat` (fields 14 and 15), in clock ticks.
    fn cpu_ticks(&self) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap();
        // The command name (field 2) is in parentheses and may hold spaces.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .collect();
        fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
    }

    /// Waits until the gateway's CPU time stays the same for half a second.
    async fn settle(&self) {
        let mut last = self.cpu_ticks();
        let mut quiet = 0;
        while quiet < 5 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let now = self.cpu_ticks();
            quiet = if now == last { quiet + 1 } else { 0 };
            last = now;
        }
    }

    /// Stops the gateway as an operator would (SIGTERM), so the store is closed cleanly.
    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn add_agent(store: &EmbeddedStore, user: &UserId) -> SigningKey {
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

/// A pending request of `agent` that stays pending for the whole benchmark.
fn approval(agent: &str, user: &UserId, params: &CanonicalParams, now: i64) -> ApprovalRecord {
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
        expires_at: now + 3600,
        state: ApprovalState::Pending,
    }
}

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
        .unwrap();
    let kib: u64 = line.trim().trim_end_matches("kB").trim().parse().unwrap();
    kib * 1024
}

/// Established TCP connections whose local port is `port` (the gateway's side).
fn established(port: u16) -> usize {
    connections(port, &["01"])
}

/// The gateway's connections that it has not closed: established, or closed by the client only
/// (`CLOSE_WAIT`: a poll the gateway still holds).
fn open_at_gateway(port: u16) -> usize {
    connections(port, &["01", "08"])
}

/// TCP connections whose local port is `port` in one of `states` (`/proc/net/tcp`, hex).
fn connections(port: u16, states: &[&str]) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let port = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let mut fields = line.split_whitespace().skip(1);
            let local = fields.next().unwrap_or("");
            let state = fields.nth(1).unwrap_or("");
            local.ends_with(&port) && states.contains(&state)
        })
        .count()
}

/// Clock ticks per second of `/proc/<pid>/stat` times (`getconf CLK_TCK`).
fn clock_ticks_per_second() -> f64 {
    let out = Command::new("getconf").arg("CLK_TCK").output().unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}
