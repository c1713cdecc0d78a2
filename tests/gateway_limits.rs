//! What the gateway refuses from agents, each with a clear 4xx that names the problem: bad DPoP
//! proofs, oversized or malformed requests, and floods.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{TestGateway, flight};
use handsign::domain::AgentStatus;
use handsign_protocol::dpop;
use handsign_protocol::keys::SigningKey;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn request_body(params: Value) -> Value {
    json!({"action": "flights.book", "params": params, "audience": "https://travel.example"})
}

#[tokio::test]
async fn agent_calls_without_a_valid_fresh_proof_are_refused() {
    let gateway = TestGateway::start().await;
    let _alice = gateway.register("alice").await;
    let agent = gateway.agent("alice").await;
    let body = request_body(flight());

    let response = gateway
        .http
        .post(format!("{}/v1/approvals", gateway.url))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        response.json::<Value>().await.unwrap()["error"],
        "dpop_required"
    );

    // A proof is good for one request only.
    let proof = agent.proof(&Method::POST, "/v1/approvals");
    let (status, _) = agent
        .call_with_proof(Method::POST, "/v1/approvals", Some(&body), &proof)
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, answer) = agent
        .call_with_proof(Method::POST, "/v1/approvals", Some(&body), &proof)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(answer["error"], "dpop_replay");

    // A proof for another URL or method.
    let elsewhere = agent.proof(&Method::POST, "/v1/agents/enroll");
    let (status, answer) = agent
        .call_with_proof(Method::POST, "/v1/approvals", Some(&body), &elsewhere)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
    assert_eq!(answer["error"], "invalid_dpop_proof");

    // A stale proof.
    let stale = dpop::create(
        &agent.key,
        "POST",
        &format!("{}/v1/approvals", gateway.url),
        handsign::clock::Clock::system().now() - 120,
        None,
    )
    .unwrap();
    let (status, answer) = agent
        .call_with_proof(Method::POST, "/v1/approvals", Some(&body), &stale)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");

    // A key no agent has.
    let stranger = SigningKey::generate().unwrap();
    let proof = dpop::create(
        &stranger,
        "POST",
        &format!("{}/v1/approvals", gateway.url),
        handsign::clock::Clock::system().now(),
        None,
    )
    .unwrap();
    let (status, answer) = agent
        .call_with_proof(Method::POST, "/v1/approvals", Some(&body), &proof)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(answer["error"], "unknown_agent");
}

#[tokio::test]
async fn suspended_and_revoked_agents_cannot_ask_and_revoking_cancels_pending_requests() {
    let gateway = TestGateway::start().await;
    let _alice = gateway.register("alice").await;
    let agent = gateway.agent("alice").await;
    let id = agent.request(flight()).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let now = handsign::clock::Clock::system().now();

    gateway
        .store
        .set_agent_status(agent.id(), AgentStatus::Suspended, now)
        .await
        .unwrap();
    let (status, answer) = agent
        .call(Method::POST, "/v1/approvals", Some(&request_body(flight())))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(answer["error"], "agent_suspended");

    gateway
        .store
        .set_agent_status(agent.id(), AgentStatus::Revoked, now)
        .await
        .unwrap();
    let (status, answer) = agent.read(&id, 0).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(answer["error"], "agent_revoked");
    let (status, body) = gateway.options(&id, "approve").await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("cancelled"),
        "{body}"
    );
}

#[tokio::test]
async fn malformed_requests_name_what_is_wrong() {
    let gateway = TestGateway::start().await;
    let _alice = gateway.register("alice").await;
    let agent = gateway.agent("alice").await;
    let cases = [
        (
            json!({"action": "flights book", "params": {}, "audience": "https://a.example"}),
            "invalid_action",
        ),
        (
            json!({"action": "handsign.agent.enroll", "params": {}, "audience": "https://a.example"}),
            "invalid_action",
        ),
        (
            json!({"action": "a", "params": {}, "audience": "has space"}),
            "invalid_audience",
        ),
        (
            json!({"action": "a", "params": {}, "audience": "https://a.example", "ttl": 5}),
            "invalid_ttl",
        ),
        (
            json!({"action": "a", "params": {}, "audience": "https://a.example", "ttl": 3601}),
            "invalid_ttl",
        ),
        (
            json!({"action": "a", "params": {}, "audience": "https://a.example", "user": "bob"}),
            "wrong_user",
        ),
        (
            json!({"action": "a", "params": {}, "audience": "https://a.example", "extra": 1}),
            "invalid_json",
        ),
        (json!({"action": "a", "params": {}}), "invalid_json"),
    ];
    for (body, code) in cases {
        let (status, answer) = agent.call(Method::POST, "/v1/approvals", Some(&body)).await;
        assert!(status.is_client_error(), "{body}: {status}");
        assert_eq!(answer["error"], code, "{body}: {answer}");
        assert!(answer["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
}

#[tokio::test]
async fn params_that_cannot_be_represented_exactly_are_refused_with_the_reason() {
    let gateway = TestGateway::start().await;
    let _alice = gateway.register("alice").await;
    let agent = gateway.agent("alice").await;
    let cases = [
        (
            r#"{"action":"a","audience":"x","params":{"amount":9007199254740993}}"#,
            "9007199254740993",
        ),
        (
            r#"{"action":"a","audience":"x","params":{"a":1,"a":2}}"#,
            "duplicate key",
        ),
        (
            r#"{"action":"a","audience":"x","params":{"s":"\ud800"}}"#,
            "surrogate",
        ),
    ];
    for (body, needle) in cases {
        let proof = agent.proof(&Method::POST, "/v1/approvals");
        let response = gateway
            .http
            .post(format!("{}/v1/approvals", gateway.url))
            .header("dpop", proof)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body}");
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["error"], "invalid_params", "{answer}");
        assert!(
            answer["message"].as_str().unwrap().contains(needle),
            "{answer}"
        );
    }
}

#[tokio::test]
async fn params_size_and_depth_limits_are_named() {
    let gateway = TestGateway::start().await;
    let _alice = gateway.register("alice").await;
    let agent = gateway.agent("alice").await;

    let big = json!({"text": "x".repeat(70 * 1024)});
    let (status, answer) = agent
        .call(Method::POST, "/v1/approvals", Some(&request_body(big)))
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{answer}");
    assert!(
        answer["message"].as_str().unwrap().contains("65536"),
        "{answer}"
    );

    let mut deep = json!(1);
    for _ in 0..33 {
        deep = json!([deep]);
    }
    let (status, answer) = agent
        .call(Method::POST, "/v1/approvals", Some(&request_body(deep)))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(
        answer["message"].as_str().unwrap().contains("32"),
        "{answer}"
    );

    let huge = json!({"text": "x".repeat(300 * 1024)});
    let proof = agent.proof(&Method::POST, "/v1/approvals");
    let response = gateway
        .http
        .post(format!("{}/v1/approvals", gateway.url))
        .header("dpop", proof)
        .json(&request_body(huge))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn an_agent_cannot_flood_a_person() {
    let gateway = TestGateway::start_with(|args| {
        args.limits.max_pending_per_agent = 3;
    })
    .await;
    let _alice = gateway.register("alice").await;
    let agent = gateway.agent("alice").await;
    for _ in 0..3 {
        agent.request(flight()).await;
    }
    let (status, answer) = agent
        .call(Method::POST, "/v1/approvals", Some(&request_body(flight())))
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(answer["error"], "too_many_pending");
    assert!(answer["message"].as_str().unwrap().contains('3'));

    // Another agent of the same user is not affected.
    let other = gateway.agent("alice").await;
    other.request(flight()).await;
}

#[tokio::test]
async fn the_request_rate_per_agent_is_limited_with_retry_after() {
    let gateway = TestGateway::start_with(|args| {
        args.limits.agent_requests_per_minute = 2;
    })
    .await;
    let _alice = gateway.register("alice").await;
    let agent = gateway.agent("alice").await;
    let mut limited = None;
    // Two fit in one minute; a window boundary may reset the count once, so four always hit it.
    for _ in 0..6 {
        let proof = agent.proof(&Method::POST, "/v1/approvals");
        let response = gateway
            .http
            .post(format!("{}/v1/approvals", gateway.url))
            .header("dpop", proof)
            .json(&request_body(flight()))
            .send()
            .await
            .unwrap();
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(response);
            break;
        }
        assert_eq!(response.status(), StatusCode::CREATED);
    }
    let limited = limited.expect("the rate limit never applied");
    let retry_after: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after));
    let answer: Value = limited.json().await.unwrap();
    assert_eq!(answer["error"], "rate_limited");
}
