//! What waiting for a replica costs the Redis replay store, in one run, on loopback: a primary
//! and a replica (`redis-server`, started by `handsign-redis-harness`), one operation at a time,
//! p50 and p99 of:
//!
//! - `SET NX EXAT` alone, sent by hand: the floor;
//! - `RedisReplayStore::consume` waiting for no replica and for one (`WAIT 1` in the same
//!   pipeline as the write);
//! - `SET NX EXAT` then `WAIT 1` as two round trips, for comparison;
//! - a whole guarded request (the approval layer in process, with its token and DPoP checks)
//!   with either store.
//!
//! Rounds of each variant are interleaved so that all see the same machine load.
//!
//! Run with `cargo bench -p handsign-verify --features redis --bench replicas`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "layer.rs"]
#[allow(dead_code)]
mod layer;

use std::sync::Arc;
use std::time::{Duration, Instant};

use handsign_protocol::keys::SigningKey;
use handsign_redis_harness::{RedisServer, wait_for_replica};
use handsign_verify::{RedisReplayStore, ReplayStore, ReplicaWait};

const PER_ROUND: usize = 1000;
const ROUNDS: usize = 5;

fn unix_now() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

/// Latencies of one variant, in microseconds.
#[derive(Default)]
struct Samples(Vec<f64>);

impl Samples {
    fn add(&mut self, started: Instant) {
        self.0.push(started.elapsed().as_secs_f64() * 1e6);
    }

    fn percentile(&self, p: f64) -> f64 {
        let mut sorted = self.0.clone();
        sorted.sort_by(f64::total_cmp);
        let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
        sorted[index]
    }
}

async fn store(redis: &RedisServer, wait: ReplicaWait) -> Arc<dyn ReplayStore> {
    Arc::new(
        RedisReplayStore::connect_waiting(redis.url(), wait)
            .await
            .unwrap(),
    )
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    if !RedisServer::installed() {
        println!("replica wait: not measured (redis-server is not installed)");
        return;
    }
    let primary = RedisServer::start().await;
    let _replica = RedisServer::start_replica_of(primary.port()).await;
    wait_for_replica(&primary).await;
    let one = ReplicaWait::new(1, Duration::from_millis(100)).unwrap();
    let stores = [
        store(&primary, ReplicaWait::NONE).await,
        store(&primary, one).await,
    ];
    let mut raw = primary
        .client()
        .get_multiplexed_async_connection()
        .await
        .unwrap();

    let gateway = SigningKey::from_seed(&[1; 32]);
    let agent = SigningKey::from_seed(&[2; 32]);
    let body = layer::body();
    let routers = [
        layer::guarded(&gateway, stores[0].clone()),
        layer::guarded(&gateway, stores[1].clone()),
    ];

    let names = [
        "SET NX EXAT alone",
        "consume, no replica waited for",
        "consume, WAIT 1 pipelined",
        "SET NX EXAT, then WAIT 1 (two round trips)",
        "guarded request, no replica waited for",
        "guarded request, WAIT 1 pipelined",
    ];
    let mut samples: Vec<Samples> = names.iter().map(|_| Samples::default()).collect();
    for _ in 0..ROUNDS {
        let expires_at = unix_now() + 60;
        for _ in 0..PER_ROUND {
            let started = Instant::now();
            let _: Option<String> = redis::cmd("SET")
                .arg(layer::random_jti())
                .arg(1)
                .arg("NX")
                .arg("EXAT")
                .arg(expires_at)
                .query_async(&mut raw)
                .await
                .unwrap();
            samples[0].add(started);
        }
        for (index, store) in stores.iter().enumerate() {
            for _ in 0..PER_ROUND {
                let jti = layer::random_jti();
                let started = Instant::now();
                assert!(store.consume(&jti, expires_at).await.unwrap());
                samples[1 + index].add(started);
            }
        }
        for _ in 0..PER_ROUND {
            let started = Instant::now();
            let _: Option<String> = redis::cmd("SET")
                .arg(layer::random_jti())
                .arg(1)
                .arg("NX")
                .arg("EXAT")
                .arg(expires_at)
                .query_async(&mut raw)
                .await
                .unwrap();
            let acknowledged: i64 = redis::cmd("WAIT")
                .arg(1)
                .arg(100)
                .query_async(&mut raw)
                .await
                .unwrap();
            assert_eq!(acknowledged, 1);
            samples[3].add(started);
        }
        for (index, router) in routers.iter().enumerate() {
            for presentation in layer::presentations(&gateway, &agent, &body, PER_ROUND) {
                let started = Instant::now();
                layer::through(router, std::slice::from_ref(&presentation), &body).await;
                samples[4 + index].add(started);
            }
        }
    }

    println!(
        "replica wait, {} operations per variant, one at a time, primary and replica on loopback",
        PER_ROUND * ROUNDS
    );
    let floor = samples[0].percentile(0.5);
    for (name, samples) in names.iter().zip(&samples) {
        let (p50, p99) = (samples.percentile(0.5), samples.percentile(0.99));
        println!(
            "{name:44} p50 {p50:7.1} us  p99 {p99:7.1} us  (p50 {:.2}x SET NX alone)",
            p50 / floor
        );
    }
}
