//! Several instances of a service sharing one Redis accept each token exactly once, and refuse
//! with `503` (handler not run) when Redis is gone. The test starts its own `redis-server` on a
//! free port through `handsign-redis-harness` (`apt-get install -y redis-server`), and stops it
//! when done.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::Instant;

use common::*;
use futures_util::StreamExt as _;
use handsign_protocol::keys::SigningKey;
use handsign_redis_harness::RedisServer;
use handsign_verify::{ErrorCode, RedisReplayStore};
use reqwest::{Method, StatusCode};
use tokio::net::TcpListener;

/// An instance of the service using `redis` for its replay store, under the given key prefix.
async fn instance(gateway: &SigningKey, redis: &RedisServer, prefix: &str) -> Service {
    let store = RedisReplayStore::connect(redis.url())
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
                        answer.assert_refused(ErrorCode::TokenReplayed.as_str());
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
        assert_eq!(
            answer.json()["error"],
            ErrorCode::ReplayStoreUnavailable.as_str()
        );
        assert_eq!(answer.headers["retry-after"], "1");
    }
    assert_eq!(service.seen.runs(), 1);
}

/// An instance behind the public URL `PUBLIC_URL` (as behind a load balancer), using `redis`.
async fn instance_behind_balancer(
    gateway: &SigningKey,
    redis: &RedisServer,
    prefix: &str,
) -> Service {
    let store = RedisReplayStore::connect(redis.url())
        .await
        .unwrap()
        .with_prefix(prefix);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let verifier = verifier_builder(PUBLIC_URL, gateway)
        .replay_store(Arc::new(store))
        .build()
        .unwrap();
    serve(listener, url, &verifier)
}

const PUBLIC_URL: &str = "https://travel.test";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_a_restart_forgets_no_use_and_refuses_no_unused_token() {
    let redis = RedisServer::start().await;
    let gateway = SigningKey::generate().unwrap();
    let agent = SigningKey::generate().unwrap();
    let prefix = format!("test-{}:jti:", random_id());
    let client = client();
    let public = format!("{PUBLIC_URL}/bookings");
    let send = async |service: &Service, token: &str, proof: String| {
        Call {
            method: Method::POST,
            url: service.at("/bookings"),
            token: Some(token),
            proof: Some(proof),
            body: Some(FLIGHT.into()),
        }
        .send(&client)
        .await
    };

    let before = instance_behind_balancer(&gateway, &redis, &prefix).await;
    let used = mint(&gateway, &claims(&agent, BOOK, FLIGHT));
    let unused = mint(&gateway, &claims(&agent, BOOK, FLIGHT));
    let captured = proof(&agent, "POST", &public, Some(&used));
    let answer = send(&before, &used, captured.clone()).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");

    drop(before);
    let after = instance_behind_balancer(&gateway, &redis, &prefix).await;
    // The captured pair, and the used token with a new proof: both refused.
    send(&after, &used, captured)
        .await
        .assert_refused(ErrorCode::DpopReplayed.as_str());
    send(&after, &used, proof(&agent, "POST", &public, Some(&used)))
        .await
        .assert_refused(ErrorCode::TokenReplayed.as_str());
    // A token issued before the restart and never used: accepted, since Redis remembers.
    let answer = send(
        &after,
        &unused,
        proof(&agent, "POST", &public, Some(&unused)),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert_eq!(after.seen.runs(), 1);
}
