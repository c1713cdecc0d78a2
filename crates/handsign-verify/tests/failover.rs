//! A token is accepted once even when Redis fails over, if the replay store waits for a replica
//! ([`ReplicaWait`]); and why it must: without the wait a failover accepts it twice.
//!
//! Each test runs a primary and a replica whose replication passes through a forwarder it can
//! freeze (`handsign-redis-harness`): the replica stops receiving while the primary keeps
//! answering. Killing the primary and the link then loses what the replica had not received,
//! as a crash does, and the replica is promoted (`REPLICAOF NO ONE`). A service on the promoted
//! replica stands for the service reconnecting after the failover.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use handsign_protocol::keys::SigningKey;
use handsign_redis_harness::{RedisServer, ReplicatedRedis, wait_for_replica};
use handsign_verify::{ErrorCode, RedisReplayStore, ReplayStore as _, ReplicaWait};
use reqwest::StatusCode;
use tokio::net::TcpListener;

/// The longest allowed: a loaded machine can take a while to schedule the replica's
/// acknowledgement, and only the refusals during a frozen link wait it out.
const REPLICA_TIMEOUT: Duration = handsign_verify::replicas::MAX_REPLICA_TIMEOUT;

fn one_replica() -> ReplicaWait {
    ReplicaWait::new(1, REPLICA_TIMEOUT).unwrap()
}

/// A service whose replay store is the Redis at `url`, waiting as `wait` says.
async fn service_on(gateway: &SigningKey, url: &str, wait: ReplicaWait) -> Service {
    let store = RedisReplayStore::connect_waiting(url, wait).await.unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    let verifier = verifier_builder(&address, gateway)
        .replay_store(Arc::new(store))
        .build()
        .unwrap();
    serve(listener, address, &verifier)
}

struct Setup {
    redis: ReplicatedRedis,
    gateway: SigningKey,
    agent: SigningKey,
    token: String,
    client: reqwest::Client,
}

impl Setup {
    async fn start() -> Self {
        let gateway = SigningKey::generate().unwrap();
        let agent = SigningKey::generate().unwrap();
        let token = mint(&gateway, &claims(&agent, BOOK, FLIGHT));
        Setup {
            redis: ReplicatedRedis::start().await,
            gateway,
            agent,
            token,
            client: client(),
        }
    }

    async fn present(&self, service: &Service) -> Answer {
        post_approved(
            &self.client,
            &service.at("/bookings"),
            &self.token,
            &self.agent,
            FLIGHT,
        )
        .await
    }
}

fn assert_store_refused(answer: &Answer) {
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE, "{answer:?}");
    assert_eq!(
        answer.json()["error"],
        ErrorCode::ReplayStoreUnavailable.as_str()
    );
}

/// The failure the wait exists for, kept as a demonstration: without it, a use the replica had
/// not received when the primary died is forgotten, and the token is accepted again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_waiting_a_failover_accepts_a_token_twice() {
    let mut setup = Setup::start().await;
    let primary = service_on(&setup.gateway, setup.redis.primary.url(), ReplicaWait::NONE).await;

    setup.redis.link.freeze();
    let first = setup.present(&primary).await;
    assert_eq!(first.status, StatusCode::OK, "{first:?}");

    setup.redis.fail_over().await;
    let promoted = service_on(&setup.gateway, setup.redis.replica.url(), ReplicaWait::NONE).await;
    let second = setup.present(&promoted).await;
    assert_eq!(
        second.status,
        StatusCode::OK,
        "the promoted replica never had the first use: {second:?}"
    );
    assert_eq!(
        primary.seen.runs() + promoted.seen.runs(),
        2,
        "the booking was made twice"
    );
}

/// With the wait, a use the replica does not acknowledge is refused (503, handler not run);
/// after the failover the token is accepted exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_for_a_replica_accepts_a_token_once_across_a_failover() {
    let mut setup = Setup::start().await;
    let primary = service_on(&setup.gateway, setup.redis.primary.url(), one_replica()).await;

    setup.redis.link.freeze();
    assert_store_refused(&setup.present(&primary).await);
    // The agent's honest retry on the same primary is not accepted either.
    assert_ne!(setup.present(&primary).await.status, StatusCode::OK);
    assert_eq!(
        primary.seen.runs(),
        0,
        "the handler ran without a recorded use"
    );

    setup.redis.fail_over().await;
    // The promoted replica gets a replica of its own, so that writes can be acknowledged.
    let _new_replica = RedisServer::start_replica_of(setup.redis.replica.port()).await;
    wait_for_replica(&setup.redis.replica).await;
    let promoted = service_on(&setup.gateway, setup.redis.replica.url(), one_replica()).await;
    let answers = [
        setup.present(&promoted).await,
        setup.present(&promoted).await,
    ];
    assert_eq!(answers[0].status, StatusCode::OK, "{:?}", answers[0]);
    answers[1].assert_refused(ErrorCode::TokenReplayed.as_str());
    assert_eq!(primary.seen.runs() + promoted.seen.runs(), 1);
}

/// Control: a use the replica acknowledged (the wait held) survives the failover.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_use_the_replica_acknowledged_survives_a_failover() {
    let mut setup = Setup::start().await;
    let primary = service_on(&setup.gateway, setup.redis.primary.url(), one_replica()).await;
    let first = setup.present(&primary).await;
    assert_eq!(first.status, StatusCode::OK, "{first:?}");

    setup.redis.link.freeze();
    setup.redis.fail_over().await;
    let promoted = service_on(&setup.gateway, setup.redis.replica.url(), ReplicaWait::NONE).await;
    setup
        .present(&promoted)
        .await
        .assert_refused(ErrorCode::TokenReplayed.as_str());
    assert_eq!(primary.seen.runs() + promoted.seen.runs(), 1);
}

/// Control without the wait: a use the replica happened to receive before the kill survives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_waiting_a_use_already_replicated_survives_a_failover() {
    let mut setup = Setup::start().await;
    let primary = service_on(&setup.gateway, setup.redis.primary.url(), ReplicaWait::NONE).await;
    assert_eq!(setup.present(&primary).await.status, StatusCode::OK);
    setup.redis.sync().await;

    setup.redis.fail_over().await;
    let promoted = service_on(&setup.gateway, setup.redis.replica.url(), ReplicaWait::NONE).await;
    setup
        .present(&promoted)
        .await
        .assert_refused(ErrorCode::TokenReplayed.as_str());
    assert_eq!(primary.seen.runs() + promoted.seen.runs(), 1);
}

/// A use refused for want of a replica stays recorded on the primary: once the link is back,
/// the token is refused as used, never accepted (the agent asks for a new one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_use_refused_for_want_of_a_replica_stays_used() {
    let setup = Setup::start().await;
    let primary = service_on(&setup.gateway, setup.redis.primary.url(), one_replica()).await;
    setup.redis.link.freeze();
    let forwarded = setup.redis.link.forwarded();
    assert_store_refused(&setup.present(&primary).await);

    setup.redis.link.thaw();
    setup.redis.link.forwarded_more_than(forwarded).await;
    setup.redis.sync().await;
    setup
        .present(&primary)
        .await
        .assert_refused(ErrorCode::TokenReplayed.as_str());
    assert_eq!(primary.seen.runs(), 0);
}

/// At start, the store says what the server's replication means for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_is_checked_at_start() {
    let redis = ReplicatedRedis::start().await;
    let mut connection = redis
        .primary
        .client()
        .get_multiplexed_async_connection()
        .await
        .unwrap();

    let warnings = ReplicaWait::NONE
        .check_server(&mut connection)
        .await
        .unwrap();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("exactly-once does not survive a failover"),
        "{warnings:?}"
    );
    assert_eq!(
        one_replica().check_server(&mut connection).await.unwrap(),
        Vec::<String>::new()
    );
    let two = ReplicaWait::new(2, REPLICA_TIMEOUT).unwrap();
    let warnings = two.check_server(&mut connection).await.unwrap();
    assert!(
        warnings.len() == 1 && warnings[0].contains("fewer than the 2"),
        "{warnings:?}"
    );

    // WAITAOF: Redis 7.2 and later, with an append-only file. The servers here keep none, so
    // the wait is refused either way, for the reason that applies to the installed version.
    let refused = one_replica()
        .with_aof()
        .check_server(&mut connection)
        .await
        .unwrap_err();
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query_async(&mut connection)
        .await
        .unwrap();
    let version = info
        .lines()
        .find_map(|line| line.strip_prefix("redis_version:"))
        .unwrap()
        .trim();
    let (major, minor) = {
        let mut parts = version.split('.').map(|part| part.parse::<u32>().unwrap());
        (parts.next().unwrap(), parts.next().unwrap())
    };
    if (major, minor) < (7, 2) {
        assert!(refused.contains("needs Redis 7.2 or later"), "{refused}");
    } else {
        assert!(refused.contains("needs appendonly yes"), "{refused}");
    }
}

/// A server that refuses `INFO` (an ACL without it) still serves a store that waits for
/// nothing, with a warning; a store that must wait refuses to start, as it cannot check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_refusing_info_serves_only_a_store_that_waits_for_nothing() {
    let redis = RedisServer::start().await;
    let mut admin = redis
        .client()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg("service")
        .arg("on")
        .arg(">secret")
        .arg("~*")
        .arg("+@all")
        .arg("-info")
        .query_async(&mut admin)
        .await
        .unwrap();
    let url = format!("redis://service:secret@127.0.0.1:{}", redis.port());
    let store = RedisReplayStore::connect(&url).await.unwrap();
    assert!(store.consume("jti-1", now() + 30).await.unwrap());
    let refused = RedisReplayStore::connect_waiting(&url, one_replica())
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("INFO failed"), "{refused}");
}
