//! The harness starts what it promises: a persistent server keeps acknowledged writes across a
//! SIGKILL, and a cluster serves keys from every slot range.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use handsign_redis_harness::{RedisCluster, RedisServer};
use redis::AsyncCommands as _;
use redis::cluster::ClusterClient;

#[tokio::test]
async fn a_persistent_server_keeps_a_key_across_stop_and_restart() {
    let mut server = RedisServer::start_persistent().await;
    let port = server.port();
    assert_eq!(server.url(), format!("redis://127.0.0.1:{port}"));
    let mut connection = server
        .client()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let () = connection.set("kept", "before the crash").await.unwrap();

    server.stop();
    assert!(
        server
            .client()
            .get_multiplexed_async_connection()
            .await
            .is_err(),
        "the server still answers after stop()"
    );
    server.restart().await;

    assert_eq!(server.port(), port);
    let mut connection = server
        .client()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let value: Option<String> = connection.get("kept").await.unwrap();
    assert_eq!(value.as_deref(), Some("before the crash"));
    assert!(server.info_memory_used().await > 0);
}

#[tokio::test]
async fn a_plain_server_forgets_everything_on_restart() {
    let mut server = RedisServer::start().await;
    let mut connection = server
        .client()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let () = connection.set("gone", "soon").await.unwrap();
    server.restart().await;
    let mut connection = server
        .client()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let value: Option<String> = connection.get("gone").await.unwrap();
    assert_eq!(value, None);
}

#[tokio::test]
async fn a_cluster_of_three_masters_serves_keys_in_different_slots() {
    let cluster = RedisCluster::start(3).await;
    assert_eq!(cluster.urls().len(), 3);
    let client = ClusterClient::new(cluster.urls()).unwrap();
    let mut connection = client.get_async_connection().await.unwrap();

    let keys = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"];
    let slots: std::collections::BTreeSet<u16> =
        keys.iter().map(|key| slot(key.as_bytes())).collect();
    assert!(slots.len() > 1, "the keys should span several slots");
    // The three masters hold slots 0-5460, 5461-10922 and 10923-16383: cover them all.
    for range in [0..5461, 5461..10923, 10923..16384] {
        assert!(
            slots.iter().any(|slot| range.contains(slot)),
            "no key in slots {range:?}: {slots:?}"
        );
    }

    for key in keys {
        let () = connection
            .set(key, format!("value of {key}"))
            .await
            .unwrap();
    }
    for key in keys {
        let value: String = connection.get(key).await.unwrap();
        assert_eq!(value, format!("value of {key}"));
    }
}

/// The cluster slot of a key without hash tag: CRC16 (XMODEM) modulo 16384.
fn slot(key: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for byte in key {
        crc ^= u16::from(*byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % 16384
}
