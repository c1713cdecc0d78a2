//! The whole loop with the travel example: the gateway, the agent SDK, a person's software
//! passkey, and the example service, which books exactly the approved flight, once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use common::TestGateway;
use handsign_client::{AgentKey, Client};
use handsign_example_travel::{Booking, ServiceConfig, ask, call_service, service};
use handsign_verify::{Clock, MemoryReplayStore};
use reqwest::StatusCode;

const AUDIENCE: &str = "https://travel.example";

/// The example service on a free loopback port, trusting `gateway`; returns its URL.
async fn start_service(gateway: &TestGateway) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let config = ServiceConfig {
        gateway: gateway.url.clone(),
        audience: AUDIENCE.into(),
        public_url: url.clone(),
        clock: Clock::system(),
    };
    // The gateway and its keys are this test's own: no earlier process accepted its tokens, so
    // the record may begin at 0 and tokens minted right after the start are accepted.
    let replay = MemoryReplayStore::new().record_began_at(0);
    let app = service(&config, Arc::new(replay)).unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

fn sfo_to_nyc() -> Booking {
    Booking {
        from: "SFO".into(),
        to: "NYC".into(),
        date: "2026-12-01".into(),
        passenger: "Alice Ng".into(),
    }
}

#[tokio::test]
async fn the_agent_books_exactly_the_approved_flight_once() {
    let gateway = TestGateway::start().await;
    let mut alice = gateway.register("alice").await;
    let agent = gateway.agent("alice").await;
    let client = Client::new(&gateway.url, AgentKey::from_signing_key(agent.key.clone())).unwrap();
    let travel = start_service(&gateway).await;
    let booking = sfo_to_nyc();

    let pending = ask(&client, AUDIENCE, &booking).await.unwrap();
    let (status, _) = gateway.decide(&mut alice, pending.id(), "approve").await;
    assert_eq!(status, StatusCode::OK);
    let approval = pending.wait().await.unwrap();

    // One field changed: refused before the token is used up.
    let changed = Booking {
        to: "LAX".into(),
        ..booking.clone()
    };
    let (status, answer) = call_service(&client, &travel, approval.token(), &changed)
        .await
        .unwrap();
    assert_eq!(status.as_u16(), 401, "{answer}");
    assert_eq!(answer["error"], "params_mismatch");

    // The approved booking goes through, once.
    let (status, answer) = call_service(&client, &travel, approval.token(), &booking)
        .await
        .unwrap();
    assert_eq!(status.as_u16(), 201, "{answer}");
    assert_eq!(answer["approved_by"], "alice");
    assert_eq!(answer["to"], "NYC");
    assert_eq!(answer["approval"], pending.id());

    let (status, answer) = call_service(&client, &travel, approval.token(), &booking)
        .await
        .unwrap();
    assert_eq!(status.as_u16(), 401, "{answer}");
    assert_eq!(answer["error"], "token_replayed");
}

#[tokio::test]
async fn another_agent_cannot_use_the_token() {
    let gateway = TestGateway::start().await;
    let mut alice = gateway.register("alice").await;
    let agent = gateway.agent("alice").await;
    let thief = gateway.agent("alice").await;
    let client = Client::new(&gateway.url, AgentKey::from_signing_key(agent.key.clone())).unwrap();
    let thief = Client::new(&gateway.url, AgentKey::from_signing_key(thief.key.clone())).unwrap();
    let travel = start_service(&gateway).await;
    let booking = sfo_to_nyc();

    let pending = ask(&client, AUDIENCE, &booking).await.unwrap();
    gateway.decide(&mut alice, pending.id(), "approve").await;
    let approval = pending.wait().await.unwrap();

    let (status, answer) = call_service(&thief, &travel, approval.token(), &booking)
        .await
        .unwrap();
    assert_eq!(status.as_u16(), 401, "{answer}");
    assert_eq!(answer["error"], "dpop_key_mismatch");
    // The rightful agent still can.
    let (status, _) = call_service(&client, &travel, approval.token(), &booking)
        .await
        .unwrap();
    assert_eq!(status.as_u16(), 201);
}

#[tokio::test]
async fn handsign_call_attaches_the_token_and_proof_for_agents_in_any_language() {
    let gateway = TestGateway::start().await;
    let mut alice = gateway.register("alice").await;
    let agent = gateway.agent("alice").await;
    let key = AgentKey::from_signing_key(agent.key.clone());
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("agent.jwk");
    key.save_new(&key_file).unwrap();
    let client = Client::new(&gateway.url, key).unwrap();
    let travel = start_service(&gateway).await;
    let booking = sfo_to_nyc();

    let pending = ask(&client, AUDIENCE, &booking).await.unwrap();
    gateway.decide(&mut alice, pending.id(), "approve").await;
    let token = pending.wait().await.unwrap().into_token();

    let call = |body: String| {
        let key_file = key_file.clone();
        let gateway = gateway.url.clone();
        let token = token.clone();
        let url = format!("{travel}/bookings");
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_handsign"))
                .args([
                    "call",
                    "--gateway",
                    &gateway,
                    "--token",
                    &token,
                    "--data",
                    &body,
                ])
                .arg("--key")
                .arg(&key_file)
                .arg(&url)
                .output()
                .unwrap()
        })
    };
    let body = serde_json::to_string(&booking).unwrap();
    let first = call(body.clone()).await.unwrap();
    assert_eq!(first.status.code(), Some(0), "{first:?}");
    assert!(String::from_utf8_lossy(&first.stdout).contains("\"approved_by\":\"alice\""));
    let again = call(body).await.unwrap();
    assert_eq!(again.status.code(), Some(1), "{again:?}");
    assert!(String::from_utf8_lossy(&again.stdout).contains("token_replayed"));
}
