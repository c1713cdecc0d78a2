//! Several gateway instances on one Redis, or on a Redis Cluster, behave as one gateway: a
//! request created through one is approved through a second and collected from a third, waiting
//! agents wake whichever instance took the decision, and nothing is done twice or lost when
//! Redis stops, restarts, or an instance is killed in the middle of a decision.
//!
//! Instances share one public URL, as behind a load balancer; the tests talk to each directly.
//! Every test starts its own `redis-server` processes (the test command installs them).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::process::{GatewayProcess, free_port};
use common::{GatewayClient, Person, TestAgent, TestGateway, flight, until};
use handsign::domain::{ApprovalId, ApprovalState};
use handsign::store::Store as _;
use handsign::store::redis::{DEFAULT_PREFIX, RedisStore, RedisTarget};
use handsign_protocol::keys::SigningKey;
use handsign_protocol::params::CanonicalParams;
use handsign_protocol::token::{self, Expected};
use handsign_redis_harness::{RedisCluster, RedisServer};
use reqwest::{Method, StatusCode};
use serde_json::Value;

const BINARY: &str = env!("CARGO_BIN_EXE_handsign");

/// `handsign serve` processes sharing `redis_url` behind the public URL `public`, which no one
/// listens on: like a load balancer's address, it is only what browsers and proofs name.
struct Instances {
    processes: Vec<GatewayProcess>,
    urls: Vec<String>,
    public: String,
    redis_url: String,
    _data: tempfile::TempDir,
}

impl Instances {
    fn start(redis_url: &str, count: usize) -> Self {
        let public = format!("http://localhost:{}", free_port());
        let data = tempfile::tempdir().unwrap();
        let mut instances = Instances {
            processes: Vec::new(),
            urls: Vec::new(),
            public,
            redis_url: redis_url.to_owned(),
            _data: data,
        };
        for _ in 0..count {
            instances.add();
        }
        instances
    }

    /// Starts one more instance; returns its index.
    fn add(&mut self) -> usize {
        let port = free_port();
        let data_dir = self._data.path().join(port.to_string());
        let process = GatewayProcess::start(
            BINARY,
            port,
            &[
                "--redis-url".as_ref(),
                self.redis_url.as_ref(),
                "--public-url".as_ref(),
                self.public.as_ref(),
                "--data-dir".as_ref(),
                data_dir.as_os_str(),
            ],
        );
        self.processes.push(process);
        self.urls.push(format!("http://127.0.0.1:{port}"));
        self.urls.len() - 1
    }

    /// An operator command on the shared Redis.
    fn handsign(&self, args: &[&str]) -> String {
        let output = std::process::Command::new(BINARY)
            .args(args)
            .args(["--redis-url", &self.redis_url, "--public-url", &self.public])
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        String::from_utf8(output.stdout).unwrap()
    }

    /// Registers alice from the setup link the first instance printed, through instance
    /// `through`, and adds an agent for her with the operator command.
    async fn alice_and_her_agent(&self, through: usize) -> (GatewayClient, Person, TestAgent) {
        let setup = self.processes[0]
            .setup_code()
            .unwrap_or_else(|| panic!("no setup link in {:?}", self.processes[0].printed));
        let browser = GatewayClient::new(&self.public);
        let alice = browser
            .via(&self.urls[through])
            .register_with(&setup, "alice")
            .await;
        let key = SigningKey::generate().unwrap();
        let jwk = serde_json::to_string(&key.public_key().to_jwk()).unwrap();
        let added = self.handsign(&[
            "agent",
            "add",
            "--name",
            "travel bot",
            "--user",
            "alice",
            "--key",
            &jwk,
        ]);
        assert!(added.contains(key.kid()), "{added}");
        (browser, alice, TestAgent::new(key, &self.public))
    }
}

fn id_of(created: &Value) -> String {
    created["id"].as_str().unwrap().to_owned()
}

/// Checks `minted` against the JWKS that instance `url` publishes.
async fn assert_valid_token(browser: &GatewayClient, url: &str, minted: &str) {
    let keys = browser.via(url).keys().await;
    let hash = CanonicalParams::from_value(&flight(), &Default::default())
        .unwrap()
        .hash();
    token::verify(
        minted,
        &keys,
        &Expected {
            issuer: &browser.public,
            audience: "https://travel.example",
            action: "flights.book",
            params_sha256: &hash,
            now: handsign::clock::Clock::system().now(),
            skew: 0,
        },
    )
    .unwrap();
}

/// Created through the first instance, approved through the second, its token streamed by the
/// third to an agent that was already waiting there, refused again by the first.
async fn one_request_across_three_instances(redis_url: &str) {
    let instances = Instances::start(redis_url, 3);
    let [one, two, three] = [0, 1, 2].map(|i| instances.urls[i].clone());
    let (browser, mut alice, agent) = instances.alice_and_her_agent(1).await;

    let id = id_of(&agent.via(&one).request(flight()).await);

    // The agent waits on the third instance; the person decides on the second as soon as the
    // stream shows the agent waiting.
    let states = agent
        .via(&three)
        .stream_states(&id, async || {
            let (status, answer) = browser.via(&two).decide(&mut alice, &id, "approve").await;
            assert_eq!(status, StatusCode::OK, "{answer}");
        })
        .await;
    let last = states.last().unwrap();
    let text = format!("{states:?}");
    assert_eq!(last["status"], "approved", "{text}");
    let minted = last["token"].as_str().unwrap();
    // Every instance publishes the key that signed it.
    for url in [&one, &two, &three] {
        assert_valid_token(&browser, url, minted).await;
    }

    let (status, again) = agent.via(&one).read(&id, 0).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again["token_delivered"], true);
    assert!(
        again.get("token").is_none(),
        "the token was delivered twice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_gateway_processes_on_one_redis_act_as_one() {
    let redis = RedisServer::start().await;
    one_request_across_three_instances(redis.url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_gateway_processes_on_a_redis_cluster_act_as_one() {
    let cluster = RedisCluster::start(3).await;
    one_request_across_three_instances(&cluster.urls().join(",")).await;
}

/// Two in-process gateways on `redis` behind one public URL.
async fn two_gateways(redis: &RedisServer) -> (TestGateway, TestGateway) {
    let public = url::Url::parse(&format!("http://localhost:{}", free_port())).unwrap();
    let configure = |args: &mut handsign::config::ServeArgs| {
        args.redis_url = Some(redis.url().to_owned());
        args.public_url = Some(public.clone());
    };
    (
        TestGateway::start_with(configure).await,
        TestGateway::start_with(configure).await,
    )
}

/// What `gateway` answers at `/readyz`.
async fn readiness(gateway: &GatewayClient) -> StatusCode {
    gateway
        .http
        .get(format!("{}/readyz", gateway.url))
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stopping_fails_closed_and_a_restart_with_aof_loses_nothing() {
    let mut redis = RedisServer::start_persistent().await;
    let (a, b) = two_gateways(&redis).await;
    let mut alice = a.register("alice").await;
    let agent = a.agent("alice").await;
    let waiting = id_of(&agent.request(flight()).await);
    let approved = id_of(&agent.request(flight()).await);
    let (status, _) = b.via(&b.url).decide(&mut alice, &approved, "approve").await;
    assert_eq!(status, StatusCode::OK);

    redis.stop();

    // Every call that needs the store says so, and nothing is issued.
    let (status, refused) = agent
        .call(
            Method::POST,
            "/v1/approvals",
            Some(&serde_json::json!({
                "action": "flights.book", "params": flight(), "audience": "https://travel.example"
            })),
        )
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{refused}");
    assert_eq!(refused["error"], "storage_unavailable", "{refused}");
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("nothing was decided or issued"),
        "{refused}"
    );
    let (status, collected) = agent.via(&b.url).read(&approved, 0).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{collected}");
    assert!(collected.get("token").is_none(), "{collected}");
    let (status, _) = a.options(&waiting, "approve").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(readiness(&a).await, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(readiness(&b).await, StatusCode::SERVICE_UNAVAILABLE);

    // Redis comes back with its append-only file; the gateways were not restarted, and are
    // ready as soon as it answers.
    redis.restart().await;
    assert_eq!(readiness(&a).await, StatusCode::OK);
    assert_eq!(readiness(&b).await, StatusCode::OK);

    // Users, passkeys, agents and requests are all there.
    let alice_id = handsign::domain::UserId::parse("alice").unwrap();
    assert!(a.store.user(&alice_id).await.unwrap().is_some());
    assert_eq!(a.store.passkeys(&alice_id).await.unwrap().len(), 1);
    assert!(a.store.agent(agent.id()).await.unwrap().is_some());
    let (_, pending) = agent.read(&waiting, 0).await;
    assert_eq!(pending["status"], "pending", "{pending}");

    // The token approved before the outage is delivered once, now.
    let (status, collected) = agent.via(&b.url).read(&approved, 0).await;
    assert_eq!(status, StatusCode::OK, "{collected}");
    assert!(collected["token"].is_string(), "{collected}");

    // Waiting on one instance still wakes on a decision taken on the other.
    let parked_before = b.state.events.waiters();
    let poll = tokio::spawn({
        let agent = agent.via(&b.url);
        let id = waiting.clone();
        async move { agent.read(&id, 60).await }
    });
    until("the long poll is parked", || {
        b.state.events.waiters() > parked_before
    })
    .await;
    let (status, _) = a.decide(&mut alice, &waiting, "approve").await;
    assert_eq!(status, StatusCode::OK);
    let (status, answer) = poll.await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["status"], "approved", "{answer}");
    assert!(answer["token"].is_string(), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_assertion_at_two_instances_decides_once_and_one_token_is_delivered_once() {
    let redis = RedisServer::start().await;
    let (a, b) = two_gateways(&redis).await;
    let mut alice = a.register("alice").await;
    let agent = a.agent("alice").await;
    for _ in 0..10 {
        let id = id_of(&agent.request(flight()).await);
        let credential = a.assert(&mut alice, &id, "approve").await;
        let (first, second) = tokio::join!(
            a.submit(&id, "approve", &credential),
            b.submit(&id, "approve", &credential)
        );
        let statuses = [first.0, second.0];
        assert_eq!(
            statuses.iter().filter(|s| **s == StatusCode::OK).count(),
            1,
            "{first:?} {second:?}"
        );

        let at_b = agent.via(&b.url);
        let (first, second) = tokio::join!(agent.read(&id, 0), at_b.read(&id, 0));
        let tokens = [&first.1, &second.1]
            .iter()
            .filter(|answer| answer["token"].is_string())
            .count();
        assert_eq!(tokens, 1, "{first:?} {second:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_killed_during_a_decision_records_it_once_or_not_at_all() {
    let redis = RedisServer::start().await;
    let mut instances = Instances::start(redis.url(), 1);
    let (browser, mut alice, agent) = instances.alice_and_her_agent(0).await;
    let survivor = instances.urls[0].clone();
    let store = RedisStore::connect(&RedisTarget::parse(redis.url()).unwrap(), DEFAULT_PREFIX)
        .await
        .unwrap();
    for round in 0..6 {
        let victim = instances.add();
        let victim_url = instances.urls[victim].clone();
        let id = id_of(&agent.via(&survivor).request(flight()).await);
        let at_victim = browser.via(&victim_url);
        let credential = at_victim.assert(&mut alice, &id, "approve").await;
        let submitted = tokio::spawn({
            let id = id.clone();
            async move { at_victim.submit(&id, "approve", &credential).await }
        });
        // Killed before the decision reaches it in even rounds, and in odd rounds once the
        // decision is stored, whether or not the browser has had the answer.
        if round % 2 == 1 {
            let id = ApprovalId::parse(&id).unwrap();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
            while matches!(
                store.approval(&id).await.unwrap().unwrap().state,
                ApprovalState::Pending
            ) {
                assert!(tokio::time::Instant::now() < deadline, "never decided");
                tokio::task::yield_now().await;
            }
        }
        instances.processes[victim].kill();
        let victim_answered_ok =
            matches!(submitted.await, Ok((status, _)) if status == StatusCode::OK);

        let (_, seen) = agent.via(&survivor).read(&id, 0).await;
        match seen["status"].as_str().unwrap() {
            "pending" => {
                // Not recorded: the person tries again, on another instance.
                let (status, answer) = browser
                    .via(&survivor)
                    .decide(&mut alice, &id, "approve")
                    .await;
                assert_eq!(status, StatusCode::OK, "{answer}");
            }
            "approved" => {
                // Recorded (and its token collected by that read); it cannot be decided again.
                let (status, _) = browser.via(&survivor).options(&id, "approve").await;
                assert_eq!(status, StatusCode::CONFLICT);
            }
            other => panic!("round {round}: the request is {other}: {seen}"),
        }
        assert!(
            !victim_answered_ok || seen["status"] == "approved",
            "round {round}: the killed instance confirmed a decision that was not recorded"
        );
        let at_survivor = agent.via(&survivor);
        let (first, second) = tokio::join!(at_survivor.read(&id, 0), at_survivor.read(&id, 0));
        let answers = [first.1, second.1];
        let tokens = answers.iter().filter(|a| a["token"].is_string()).count()
            + usize::from(seen["token"].is_string());
        assert_eq!(tokens, 1, "round {round}: {answers:?} {seen}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dpop_proof_used_at_one_instance_is_refused_at_the_other() {
    let redis = RedisServer::start().await;
    let (a, b) = two_gateways(&redis).await;
    a.register("alice").await;
    let agent = a.agent("alice").await;
    let id = id_of(&agent.request(flight()).await);
    let path = format!("/v1/approvals/{id}");
    let proof = agent.proof(&Method::GET, &path);
    let (status, _) = agent
        .call_with_proof(Method::GET, &path, None, &proof)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, refused) = agent
        .via(&b.url)
        .call_with_proof(Method::GET, &path, None, &proof)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{refused}");
    assert!(refused.to_string().contains("replay"), "{refused}");
}

#[test]
fn a_bad_or_unreachable_redis_stops_the_gateway_with_a_clear_message() {
    let closed = format!("redis://127.0.0.1:{}", free_port());
    for (url, says) in [
        ("http://example.com", "invalid Redis URL"),
        (closed.as_str(), "cannot reach Redis at"),
    ] {
        let output = std::process::Command::new(BINARY)
            .args(["serve", "--listen", "127.0.0.1:0", "--redis-url", url])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(says), "{url}: {stderr}");
        // The same for operator commands.
        let output = std::process::Command::new(BINARY)
            .args(["agent", "list", "--redis-url", url])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(says), "{url}: {stderr}");
    }
}
