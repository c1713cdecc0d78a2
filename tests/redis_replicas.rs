//! The gateway on a Redis primary with a replica, waiting for it (`--redis-min-replicas 1`):
//! while the replica does not acknowledge, a decision and a token collection answer `503
//! storage_unavailable` and hand out nothing; once it does again, both go through. The replica
//! replicates through a forwarder the test freezes (`handsign-redis-harness`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{TestGateway, flight};
use handsign_redis_harness::ReplicatedRedis;
use reqwest::StatusCode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_replica_acknowledging_nothing_is_decided_or_handed_out() {
    let redis = ReplicatedRedis::start().await;
    let gateway = TestGateway::start_with(|args| {
        args.redis_url = Some(redis.primary.url().to_owned());
        args.redis_replicas.redis_min_replicas = 1;
        // The longest allowed: a loaded machine can be slow to acknowledge.
        args.redis_replicas.redis_replica_timeout_ms = 1000;
    })
    .await;
    let mut person = gateway.register("alice").await;
    let agent = gateway.agent("alice").await;
    let created = agent.request(flight()).await;
    let id = created["id"].as_str().unwrap();

    redis.link.freeze();
    let (status, answer) = gateway.client.decide(&mut person, id, "approve").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{answer}");
    assert_eq!(answer["error"], "storage_unavailable", "{answer}");
    let (status, answer) = agent.read(id, 0).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{answer}");
    assert_eq!(answer["error"], "storage_unavailable", "{answer}");

    redis.link.thaw();
    redis.sync().await;
    let (status, answer) = agent.read(id, 0).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(
        answer["status"], "pending",
        "the refused decision was not taken: {answer}"
    );
    let (status, answer) = gateway.client.decide(&mut person, id, "approve").await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let (status, answer) = agent.read(id, 0).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["status"], "approved", "{answer}");
    assert!(answer["token"].is_string(), "{answer}");
}
