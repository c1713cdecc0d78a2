//! Many agents starting their long polls at once, against the `handsign serve` process on the
//! embedded store: the burst waits its turn for the store instead of starting a thread for
//! every operation that waits for redb's write lock (what it costs: BENCHMARKS.md, "Waiters").
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Command;

use common::process::{GatewayProcess, free_port};
use common::{GatewayClient, TestAgent, flight, register};
use futures_util::StreamExt as _;
use handsign_protocol::keys::SigningKey;
use reqwest::StatusCode;

/// Polls started at once: each records its proof's `jti`, one commit at a time.
const POLLS: usize = 300;

/// The gateway's runtime workers (one per core), the store's threads, the main thread, and a
/// margin for the runtime's own; one thread per waiting store operation would be hundreds.
fn thread_bound() -> usize {
    let cores = std::thread::available_parallelism().unwrap().get();
    cores + 4 + 1 + 8
}

#[tokio::test(flavor = "multi_thread")]
async fn a_burst_of_polls_does_not_start_a_thread_per_store_operation() {
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("http://localhost:{port}");
    let data_dir = data.path().as_os_str();
    let gateway = GatewayProcess::start(
        env!("CARGO_BIN_EXE_handsign"),
        port,
        &[
            "--public-url".as_ref(),
            url.as_ref(),
            "--data-dir".as_ref(),
            data_dir,
            "--agent-requests-per-minute".as_ref(),
            "100000".as_ref(),
        ],
    );
    let client = GatewayClient::new(&url);
    register(&client.http, &url, &gateway.setup_code().unwrap(), "alice").await;
    let key = SigningKey::generate().unwrap();
    let jwk = serde_json::to_string(&key.public_key().to_jwk()).unwrap();
    let added = Command::new(env!("CARGO_BIN_EXE_handsign"))
        .args(["agent", "add", "--name", "travel bot", "--user", "alice"])
        .args(["--key", &jwk])
        .arg("--data-dir")
        .arg(data.path())
        .args(["--public-url", &url])
        .output()
        .unwrap();
    assert!(added.status.success(), "{added:?}");
    let agent = TestAgent::new(key, &url);
    let id = agent.request(flight()).await["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let answers: Vec<_> = futures_util::stream::iter(0..POLLS)
        .map(|_| agent.read(&id, 0))
        .buffer_unordered(POLLS)
        .collect()
        .await;
    for (status, answer) in answers {
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(answer["status"], "pending");
    }

    // Threads Tokio's blocking pool starts stay for ten seconds after their last operation.
    let status = std::fs::read_to_string(format!("/proc/{}/status", gateway.id())).unwrap();
    let threads: usize = status
        .lines()
        .find_map(|line| line.strip_prefix("Threads:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        threads <= thread_bound(),
        "{threads} threads after {POLLS} polls (at most {} expected)",
        thread_bound()
    );
}
