//! Shutdown and the gateway's background work: a notification being delivered when the gateway
//! is told to stop is finished (within `deliveries::DRAIN_BOUND`), not cut off; expiry watchers,
//! which would wait until their request expires, are stopped.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use common::{TestAgent, flight};
use handsign::deliveries::DRAIN_BOUND;
use handsign::domain::{AgentRecord, AgentStatus, UserId};
use handsign::server;
use handsign::storage::Storage;
use handsign_protocol::keys::SigningKey;
use tokio::sync::{Notify, mpsc};

/// A webhook receiver that reports each delivery as it arrives and answers only once released.
#[derive(Clone)]
struct Held {
    arrived: mpsc::UnboundedSender<()>,
    release: Arc<Notify>,
}

async fn hold(State(held): State<Held>) -> StatusCode {
    let _ = held.arrived.send(());
    held.release.notified().await;
    StatusCode::OK
}

#[tokio::test]
async fn shutdown_waits_for_a_delivery_in_flight_and_stops_expiry_watchers() {
    let (arrived, mut arrivals) = mpsc::unbounded_channel();
    let release = Arc::new(Notify::new());
    let receiver = axum::Router::new().fallback(hold).with_state(Held {
        arrived,
        release: release.clone(),
    });
    let hooks = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hooks_url = format!("http://{}/hook", hooks.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(hooks, receiver).await });

    let data = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://localhost:{}", listener.local_addr().unwrap().port());
    let mut args = common::serve_args(data.path(), &url);
    args.webhooks.webhooks = vec![format!("ntfy={hooks_url}").parse().unwrap()];
    let storage = Storage::embedded(data.path()).unwrap();
    let state = server::open(&args, &storage, handsign::clock::Clock::system())
        .await
        .unwrap();
    let key = SigningKey::generate().unwrap();
    storage
        .store
        .add_agent(&AgentRecord {
            id: key.kid().to_owned(),
            name: "travel bot".into(),
            user: UserId::parse("alice").unwrap(),
            public_jwk: Some(key.public_key().to_jwk()),
            status: AgentStatus::Active,
            created_at: handsign::clock::Clock::system().now(),
            enrollment_expires_at: None,
        })
        .await
        .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let mut running = tokio::spawn(server::run(listener, state.clone(), async {
        let _ = stopped.await;
    }));

    // A request: its webhook is being delivered (the receiver holds it), and its expiry is
    // being watched.
    TestAgent::new(key, &url).request(flight()).await;
    tokio::time::timeout(Duration::from_secs(10), arrivals.recv())
        .await
        .expect("no webhook arrived")
        .unwrap();
    common::until(
        "one delivery and one watcher run (the push found no device)",
        || state.deliveries.len() == 2,
    )
    .await;

    stop.send(()).unwrap();
    // The gateway stops serving, and waits for the delivery.
    common::until("the gateway no longer accepts connections", || {
        std::net::TcpStream::connect(url.trim_start_matches("http://")).is_err()
    })
    .await;
    assert!(
        tokio::time::timeout(Duration::from_millis(500), &mut running)
            .await
            .is_err(),
        "the gateway stopped while a notification was being delivered"
    );
    common::until("only the delivery is left (the watcher stopped)", || {
        state.deliveries.len() == 1
    })
    .await;

    release.notify_waiters();
    // Well within the bound: nothing else holds the gateway up.
    tokio::time::timeout(DRAIN_BOUND / 2, running)
        .await
        .expect("the gateway did not stop once the delivery ended")
        .unwrap()
        .unwrap();
    assert!(state.deliveries.is_empty());
}
