//! Several instances of a service sharing one Redis accept each token exactly once, and refuse
//! with `503` (handler not run) when Redis is gone. The test starts its own `redis-server` on a
//! free port (`apt-get install -y redis-server`), and stops it when done.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use common::*;
use futures_util::StreamExt as _;
use handsign_protocol::keys::SigningKey;
use handsign_verify::{RedisReplayStore, codes};
use reqwest::StatusCode;
use tokio::net::TcpListener;

/// A `redis-server` child process on a free port, killed on drop.
struct RedisServer {
    child: Child,
    url: String,
}

impl RedisServer {
    /// Starts the server and returns once it logs that it accepts connections (read from its
    /// output as it comes: no polling, no sleeps) and answers `PING`.
    async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = match Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--loglevel", "notice"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
        {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
                "redis-server is not installed; this test starts its own: \
                 apt-get install -y redis-server"
            ),
            Err(e) => panic!("could not start redis-server: {e}"),
        };
        let stdout = child.stdout.take().unwrap();
        let log = tokio::task::spawn_blocking(move || {
            let mut seen = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let line = line.unwrap_or_default();
                if line.contains("Ready to accept connections") {
                    return Ok(());
                }
                seen.push(line);
            }
            Err(seen.join("\n"))
        })
        .await
        .unwrap();
        if let Err(output) = log {
            let _ = child.kill();
            panic!("redis-server on port {port} did not start:\n{output}");
        }
        let url = format!("redis://127.0.0.1:{port}");
        let mut connection = redis::Client::open(url.as_str())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let pong: String = redis::cmd("PING")
            .query_async(&mut connection)
            .await
            .unwrap();
        assert_eq!(pong, "PONG");
        RedisServer { child, url }
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// An instance of the service using `redis` for its replay store, under the given key prefix.
async fn instance(gateway: &SigningKey, redis: &RedisServer, prefix: &str) -> Service {
    let store = RedisReplayStore::connect(&redis.url)
        .await
        .unwrap()
        .with_prefix(prefix);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let verifier = verifier_builder(&url, gateway)
        .replay_store(Arc::new(store))
        .build()
        .unwrap();
    serve(listener, url, &verifier)
}

const TOKENS: usize = 10_000;
const IN_FLIGHT: usize = 64;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_sharing_redis_accept_each_token_exactly_once() {
    let redis = RedisServer::start().await;
    let gateway = SigningKey::generate().unwrap();
    let agent = Arc::new(SigningKey::generate().unwrap());
    let prefix = format!("test-{}:jti:", random_id());
    let instances = Arc::new([
        instance(&gateway, &redis, &prefix).await,
        instance(&gateway, &redis, &prefix).await,
    ]);
    let client = client();
    let started = Instant::now();

    // Tokens are minted just before they are presented, so none expires while the others
    // queue; each is presented to both instances at once, each time with its own proof.
    let outcomes: Vec<[StatusCode; 2]> = futures_util::stream::iter(0..TOKENS)
        .map(|i| {
            let (gateway, agent, instances, client) = (
                gateway.clone(),
                agent.clone(),
                instances.clone(),
                client.clone(),
            );
            tokio::spawn(async move {
                let body = format!(r#"{{"booking": {i}}}"#);
                let token = mint(&gateway, &claims(&agent, BOOK, &body));
                let [a, b] = [instances[0].at("/bookings"), instances[1].at("/bookings")];
                let (a, b) = tokio::join!(
                    post_approved(&client, &a, &token, &agent, &body),
                    post_approved(&client, &b, &token, &agent, &body),
                );
                for answer in [&a, &b] {
                    if answer.status != StatusCode::OK {
                        answer.assert_refused(codes::TOKEN_REPLAYED);
                    }
                }
                [a.status, b.status]
            })
        })
        .buffer_unordered(IN_FLIGHT)
        .map(|joined| joined.unwrap())
        .collect()
        .await;

    let accepted = outcomes.iter().flatten().filter(|s| **s == StatusCode::OK);
    assert_eq!(accepted.count(), TOKENS, "each token accepted exactly once");
    for outcome in &outcomes {
        assert_eq!(
            outcome.iter().filter(|s| **s == StatusCode::OK).count(),
            1,
            "{outcome:?}"
        );
    }
    let runs = instances[0].seen.runs() + instances[1].seen.runs();
    assert_eq!(runs, TOKENS);
    // Both instances took part: neither won every race.
    assert!(instances[0].seen.runs() > 0 && instances[1].seen.runs() > 0);
    eprintln!(
        "{TOKENS} tokens, 2 presentations each: {:?} ({} and {} accepted by the two instances)",
        started.elapsed(),
        instances[0].seen.runs(),
        instances[1].seen.runs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_the_service_answers_503_and_the_handler_does_not_run() {
    let mut redis = RedisServer::start().await;
    let gateway = SigningKey::generate().unwrap();
    let agent = SigningKey::generate().unwrap();
    let service = instance(&gateway, &redis, "handsign:jti:").await;
    let client = client();
    let url = service.at("/bookings");

    let token = mint(&gateway, &claims(&agent, BOOK, FLIGHT));
    let answer = post_approved(&client, &url, &token, &agent, FLIGHT).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");

    redis.stop();
    for _ in 0..2 {
        let token = mint(&gateway, &claims(&agent, BOOK, FLIGHT));
        let answer = post_approved(&client, &url, &token, &agent, FLIGHT).await;
        assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE, "{answer:?}");
        assert_eq!(answer.json()["error"], codes::REPLAY_STORE_UNAVAILABLE);
        assert_eq!(answer.headers["retry-after"], "1");
    }
    assert_eq!(service.seen.runs(), 1);
}
