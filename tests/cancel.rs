//! An agent withdraws its own request (`POST /v1/approvals/{id}/cancel`): the person can no
//! longer decide it, it never yields a token, waiters hear of it, and no other agent can cancel
//! it. Runs on the store `HANDSIGN_TEST_STORE` names, like every gateway suite.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{TestAgent, flight};
use handsign::domain::{ApprovalId, ApprovalStatus};
use handsign::store::StoreError;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

async fn cancel(agent: &TestAgent, id: &str, body: Option<&Value>) -> (StatusCode, Value) {
    agent
        .call(Method::POST, &format!("/v1/approvals/{id}/cancel"), body)
        .await
}

#[tokio::test]
async fn a_cancelled_request_can_no_longer_be_approved_and_never_yields_a_token() {
    let (gateway, mut alice, agent, id) = common::alice_asked().await;
    // The person has the page open and signed already: the assertion arrives too late.
    let late = gateway.assert(&mut alice, &id, "approve").await;

    let (status, answer) = cancel(&agent, &id, Some(&json!({"reason": "plans changed"}))).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["id"], id.as_str());
    assert_eq!(answer["status"], "cancelled");
    assert_eq!(answer["reason"], "plans changed");
    assert_eq!(answer["action"], "flights.book");
    assert!(answer.get("token").is_none(), "{answer}");

    let (status, refused) = gateway.submit(&id, "approve", &late).await;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    assert_eq!(refused["error"], "not_pending");
    let (status, refused) = gateway.options(&id, "approve").await;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");

    let (status, read) = agent.read(&id, 0).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(read["status"], "cancelled");
    assert_eq!(read["reason"], "plans changed");
    assert!(read.get("token").is_none(), "{read}");

    let (status, again) = cancel(&agent, &id, None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{again}");
    assert_eq!(again["error"], "not_pending");
    let dashboard = gateway
        .store
        .approvals(
            &handsign::domain::UserId::parse("alice").unwrap(),
            handsign::store::ApprovalFilter::Pending,
            handsign::clock::Clock::system().now(),
            10,
        )
        .await
        .unwrap();
    assert!(dashboard.is_empty(), "{dashboard:?}");
}

#[tokio::test]
async fn another_agent_cannot_cancel_and_is_answered_as_for_an_unknown_id() {
    let (gateway, _alice, agent, id) = common::alice_asked().await;
    let other = gateway.agent("alice").await;

    let (status, refused) = cancel(&other, &id, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{refused}");
    let unknown = ApprovalId::generate().unwrap();
    let (unknown_status, unknown_answer) = cancel(&other, unknown.as_str(), None).await;
    assert_eq!((status, &refused), (unknown_status, &unknown_answer));
    let (status, _) = cancel(&other, "not-an-id", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The store refuses it too, whoever calls it.
    let parsed = ApprovalId::parse(&id).unwrap();
    let stored = gateway
        .store
        .cancel_approval(
            &parsed,
            other.id(),
            "x",
            handsign::clock::Clock::system().now(),
        )
        .await;
    assert!(matches!(stored, Err(StoreError::NotFound(_))), "{stored:?}");

    let (_, read) = agent.read(&id, 0).await;
    assert_eq!(read["status"], "pending");
}

#[tokio::test]
async fn a_decided_request_cannot_be_cancelled_and_keeps_its_token() {
    let (gateway, mut alice, agent, id) = common::alice_asked().await;
    let (status, _) = gateway.decide(&mut alice, &id, "approve").await;
    assert_eq!(status, StatusCode::OK);

    let (status, refused) = cancel(&agent, &id, Some(&json!({"reason": "too late"}))).await;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    assert_eq!(refused["error"], "not_pending");
    assert!(
        refused["message"].as_str().unwrap().contains("approved"),
        "{refused}"
    );
    let (_, read) = agent.read(&id, 0).await;
    assert_eq!(read["status"], "approved");
    assert!(read["token"].is_string(), "{read}");
}

#[tokio::test]
async fn the_reason_is_optional_and_bounded() {
    let gateway = common::TestGateway::start().await;
    let _alice = gateway.register("alice").await;
    let agent = gateway.agent("alice").await;
    let ask = async || {
        agent.request(flight()).await["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };

    let id = ask().await;
    let (status, refused) = cancel(&agent, &id, Some(&json!({"reason": "x".repeat(201)}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    assert_eq!(refused["error"], "invalid_reason");
    assert!(
        refused["message"].as_str().unwrap().contains("200"),
        "{refused}"
    );
    let (status, refused) = cancel(&agent, &id, Some(&json!({"reason": "a\nb"}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    let (status, refused) = cancel(&agent, &id, Some(&json!({"why": "x"}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    assert_eq!(refused["error"], "invalid_json");
    // Refusals changed nothing.
    let (_, read) = agent.read(&id, 0).await;
    assert_eq!(read["status"], "pending");

    let (status, answer) = cancel(&agent, &id, None).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["reason"], "cancelled by the agent");

    let id = ask().await;
    let reason = "é".repeat(200);
    let (status, answer) = cancel(&agent, &id, Some(&json!({"reason": reason}))).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["reason"], reason.as_str());
}

#[tokio::test]
async fn waiters_hear_of_the_cancellation_at_once() {
    let (_gateway, _alice, agent, id) = common::alice_asked().await;
    let waiting = {
        let (agent, id) = (agent.clone(), id.clone());
        tokio::spawn(async move { agent.read(&id, 60).await })
    };
    let states = agent
        .stream_states(&id, async || {
            let (status, answer) = cancel(&agent, &id, Some(&json!({"reason": "done"}))).await;
            assert_eq!(status, StatusCode::OK, "{answer}");
        })
        .await;
    let last = states.last().unwrap();
    assert_eq!(last["status"], "cancelled");
    assert_eq!(last["reason"], "done");
    let (status, read) = waiting.await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(read["status"], "cancelled");
    assert_eq!(read["reason"], "done");
}

#[tokio::test]
async fn of_two_concurrent_cancellations_one_wins() {
    let (gateway, _alice, agent, id) = common::alice_asked().await;
    let parsed = ApprovalId::parse(&id).unwrap();
    let now = handsign::clock::Clock::system().now();
    let (a, b) = tokio::join!(
        gateway.store.cancel_approval(&parsed, agent.id(), "a", now),
        gateway.store.cancel_approval(&parsed, agent.id(), "b", now),
    );
    let outcomes = [a, b];
    assert_eq!(outcomes.iter().filter(|o| o.is_ok()).count(), 1);
    assert!(
        outcomes
            .iter()
            .any(|o| matches!(o, Err(StoreError::NotPending(ApprovalStatus::Cancelled))))
    );
    let (_, read) = agent.read(&id, 0).await;
    assert_eq!(read["status"], "cancelled");
}

#[tokio::test]
async fn an_expired_request_cannot_be_cancelled() {
    let (gateway, _alice, agent, id) = common::alice_asked().await;
    let parsed = ApprovalId::parse(&id).unwrap();
    let expires_at = gateway
        .store
        .approval(&parsed)
        .await
        .unwrap()
        .unwrap()
        .expires_at;
    let refused = gateway
        .store
        .cancel_approval(&parsed, agent.id(), "late", expires_at)
        .await;
    assert!(
        matches!(
            refused,
            Err(StoreError::NotPending(ApprovalStatus::Expired))
        ),
        "{refused:?}"
    );
}
