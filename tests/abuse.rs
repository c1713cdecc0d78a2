//! What callers the gateway does not trust yet can make it do: a stranger's proofs store nothing,
//! enrollment is bounded per address, per person and in how many may wait, a person's prompts are
//! bounded across all their agents, and nobody but the browser that asked can take a person's
//! decision ceremony.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::IpAddr;

use common::{TestAgent, TestGateway, flight};
use handsign::domain::AgentStatus;
use handsign_protocol::dpop;
use handsign_protocol::keys::SigningKey;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn request_body() -> Value {
    json!({"action": "flights.book", "params": flight(), "audience": "https://travel.example"})
}

#[tokio::test]
async fn a_strangers_proof_is_refused_without_storing_anything() {
    let gateway = TestGateway::start().await;
    gateway.register("alice").await;
    let stranger = TestAgent::new(SigningKey::generate().unwrap(), &gateway.url);
    let proof = stranger.proof(&Method::POST, "/v1/approvals");
    let (status, answer) = stranger
        .call_with_proof(Method::POST, "/v1/approvals", Some(&request_body()), &proof)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
    assert_eq!(answer["error"], "unknown_agent");

    // Had the refused call recorded the proof's jti, the same proof would now be a replay.
    gateway.add_agent(&stranger.key, "alice", "now known").await;
    let (status, answer) = stranger
        .call_with_proof(Method::POST, "/v1/approvals", Some(&request_body()), &proof)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let (status, answer) = stranger
        .call_with_proof(Method::POST, "/v1/approvals", Some(&request_body()), &proof)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(answer["error"], "dpop_replay");
}

/// A proof for `url` by `key` whose `jti` is `jti`.
fn proof_with_jti(key: &SigningKey, url: &str, jti: &str) -> String {
    let header = json!({"typ": "dpop+jwt", "alg": "EdDSA", "jwk": key.public_key().to_jwk()});
    let claims = json!({"jti": jti, "htm": "POST", "htu": url, "iat": handsign::clock::Clock::system().now()});
    handsign_protocol::jws::sign(key, &header, &claims).unwrap()
}

#[tokio::test]
async fn oversized_and_doubled_proofs_are_refused_before_they_are_read() {
    let gateway = TestGateway::start().await;
    gateway.register("alice").await;
    let agent = gateway.agent("alice").await;
    let url = format!("{}/v1/approvals", gateway.url);

    let huge = proof_with_jti(&agent.key, &url, &"j".repeat(4000));
    let (status, answer) = agent
        .call_with_proof(Method::POST, "/v1/approvals", Some(&request_body()), &huge)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
    assert!(
        answer["message"].as_str().unwrap().contains("2048 bytes"),
        "{answer}"
    );

    let response = gateway
        .http
        .post(&url)
        .header("dpop", agent.proof(&Method::POST, "/v1/approvals"))
        .header("dpop", agent.proof(&Method::POST, "/v1/approvals"))
        .json(&request_body())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["error"], "invalid_dpop_proof");
    assert!(
        answer["message"].as_str().unwrap().contains("exactly one"),
        "{answer}"
    );
}

/// An HTTP client whose connections come from `address` (any of 127.0.0.0/8).
fn client_from(address: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(address.parse::<IpAddr>().unwrap())
        .build()
        .unwrap()
}

/// A fresh key asks to enroll as `name` for `user`, from `http`; the status and answer.
async fn enroll(
    gateway: &TestGateway,
    http: &reqwest::Client,
    user: &str,
    name: &str,
) -> (StatusCode, Value, Option<String>) {
    let key = SigningKey::generate().unwrap();
    let url = format!("{}/v1/agents/enroll", gateway.url);
    let proof = dpop::create(
        &key,
        "POST",
        &url,
        handsign::clock::Clock::system().now(),
        None,
    )
    .unwrap();
    let response = http
        .post(&url)
        .header("dpop", proof)
        .json(&json!({"name": name, "user": user}))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, response.json().await.unwrap(), retry_after)
}

/// Enrolls from `http` until the gateway answers 429; the answer. A rate window may end once
/// in between, so `limit` fits at most twice before the refusal.
async fn enroll_until_limited(
    gateway: &TestGateway,
    http: &reqwest::Client,
    user: &str,
    limit: usize,
) -> (Value, Option<String>) {
    for _ in 0..=2 * limit + 1 {
        let name = format!("bot {}", uuid::Uuid::new_v4());
        let (status, answer, retry_after) = enroll(gateway, http, user, &name).await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            return (answer, retry_after);
        }
        assert_eq!(status, StatusCode::CREATED, "{answer}");
    }
    panic!("never limited");
}

#[tokio::test]
async fn enrollment_requests_are_limited_per_address_and_per_person() {
    let gateway = TestGateway::start_with(|args| {
        args.limits.enrollments_per_minute = 2;
        args.limits.max_pending_enrollments = 100;
    })
    .await;
    gateway.register("alice").await;
    gateway.register("bob").await;

    let (answer, retry_after) =
        enroll_until_limited(&gateway, &client_from("127.0.0.1"), "alice", 2).await;
    assert_eq!(answer["error"], "rate_limited", "{answer}");
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .contains("from one address"),
        "{answer}"
    );
    let retry_after: u64 = retry_after.unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after));

    // Another address is held to alice's own limit, and may still enroll for bob.
    let other = client_from("127.0.0.2");
    let (answer, _) = enroll_until_limited(&gateway, &other, "alice", 2).await;
    let message = answer["message"].as_str().unwrap();
    assert!(
        message.contains("for alice") || message.contains("from one address"),
        "{answer}"
    );
    let (status, answer, _) = enroll(&gateway, &client_from("127.0.0.3"), "bob", "bot").await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
}

#[tokio::test]
async fn few_enrollments_may_wait_for_one_person_and_none_may_copy_an_agents_name() {
    let gateway = TestGateway::start_with(|args| {
        args.limits.max_pending_enrollments = 2;
    })
    .await;
    gateway.register("alice").await;
    let agent = gateway.agent("alice").await;
    let http = reqwest::Client::new();
    let real_name = gateway.store.agent(agent.id()).await.unwrap().unwrap().name;

    let (status, answer, _) = enroll(&gateway, &http, "alice", &real_name.to_uppercase()).await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    assert_eq!(answer["error"], "name_taken");

    for name in ["first", "second"] {
        let (status, answer, _) = enroll(&gateway, &http, "alice", name).await;
        assert_eq!(status, StatusCode::CREATED, "{answer}");
    }
    let (status, answer, _) = enroll(&gateway, &http, "alice", "third").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{answer}");
    assert_eq!(answer["error"], "too_many_enrollments");
    // A waiting enrollment's name is taken too.
    let (status, answer, _) = enroll(&gateway, &http, "alice", "First").await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
}

#[tokio::test]
async fn a_person_is_asked_at_most_so_often_whatever_the_number_of_agents() {
    let gateway = TestGateway::start_with(|args| {
        args.limits.user_prompts_per_minute = 2;
    })
    .await;
    gateway.register("alice").await;
    let mut refused = None;
    // Two fit in one minute; a window boundary may reset the count once.
    for _ in 0..6 {
        let agent = gateway.agent("alice").await;
        let (status, answer) = agent
            .call(Method::POST, "/v1/approvals", Some(&request_body()))
            .await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            refused = Some(answer);
            break;
        }
        assert_eq!(status, StatusCode::CREATED, "{answer}");
    }
    let answer = refused.expect("the per-person limit never applied");
    assert_eq!(answer["error"], "rate_limited");
    assert!(
        answer["message"].as_str().unwrap().contains("alice"),
        "{answer}"
    );
}

#[tokio::test]
async fn nobody_but_the_browser_that_asked_can_take_a_decision_ceremony() {
    let (gateway, mut alice, _agent, id) = common::alice_asked().await;
    let assertion = gateway.assert(&mut alice, &id, "approve").await;

    // Someone who knows the request's id submits junk, with and without a guessed ceremony.
    let junk = json!({
        "id": "AAAA", "rawId": "AAAA", "type": "public-key", "extensions": {},
        "response": {"authenticatorData": "AAAA", "clientDataJSON": "AAAA", "signature": "AAAA"},
    });
    for body in [
        json!({"decision": "approve", "credential": junk}),
        json!({"decision": "approve", "ceremony": "guessed", "credential": junk}),
    ] {
        let (status, answer) = gateway.browser_post(&format!("/approve/{id}"), &body).await;
        assert!(status.is_client_error(), "{status} {answer}");
    }

    let (status, answer) = gateway.submit(&id, "approve", &assertion).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
}

#[tokio::test]
async fn an_agent_suspended_while_it_waits_gets_no_token() {
    let (gateway, mut alice, agent, id) = common::alice_asked().await;

    let parked = gateway.state.events.waiters();
    let waiting = tokio::spawn({
        let agent = agent.clone();
        let id = id.clone();
        async move { agent.read(&id, 30).await }
    });
    common::until("the long poll is parked", || {
        gateway.state.events.waiters() > parked
    })
    .await;
    gateway
        .store
        .set_agent_status(
            agent.id(),
            AgentStatus::Suspended,
            handsign::clock::Clock::system().now(),
        )
        .await
        .unwrap();
    let (status, answer) = gateway.decide(&mut alice, &id, "approve").await;
    assert_eq!(status, StatusCode::OK, "{answer}");

    let (status, answer) = waiting.await.unwrap();
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    assert!(answer.get("token").is_none(), "{answer}");
    let approval = gateway
        .store
        .approval(&handsign::domain::ApprovalId::parse(&id).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(
            approval.state,
            handsign::domain::ApprovalState::Approved {
                token_delivered_at: None,
                ..
            }
        ),
        "{:?}",
        approval.state
    );
}

/// Waiting costs memory only while someone waits: the gateway keeps one event sender per
/// request being waited on, and none once its waiters have gone, however many requests there
/// were.
#[tokio::test]
async fn waiters_leave_no_event_senders_behind() {
    let (gateway, mut alice, agent, id) = common::alice_asked().await;
    let others: Vec<String> = {
        let mut others = Vec::new();
        for _ in 0..3 {
            others.push(
                agent.request(flight()).await["id"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            );
        }
        others
    };
    let polls: Vec<_> = std::iter::once(&id)
        .chain(&others)
        .map(|id| {
            let (agent, id) = (agent.clone(), id.clone());
            tokio::spawn(async move { agent.read(&id, 30).await })
        })
        .collect();
    common::until("every long poll is parked", || {
        gateway.state.events.waiters() == 4
    })
    .await;
    assert_eq!(gateway.state.events.senders(), 4);

    for (id, poll) in std::iter::once(&id).chain(&others).zip(polls) {
        let (status, answer) = gateway.decide(&mut alice, id, "approve").await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        let (status, answer) = poll.await.unwrap();
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert!(answer["token"].is_string(), "{answer}");
    }
    common::until("no event sender is left", || {
        gateway.state.events.senders() == 0 && gateway.state.events.waiters() == 0
    })
    .await;
}

/// Starts login ceremonies from `http` (with `forwarded` as X-Forwarded-For, if any) until the
/// gateway answers 429; how many it started.
async fn logins_until_limited(
    gateway: &TestGateway,
    http: &reqwest::Client,
    forwarded: Option<&str>,
    limit: usize,
) -> usize {
    for started in 0..=2 * limit + 1 {
        let mut request = http
            .post(format!("{}/webauthn/login/options", gateway.url))
            .header("origin", &gateway.public)
            .json(&json!({}));
        if let Some(forwarded) = forwarded {
            request = request.header("x-forwarded-for", forwarded);
        }
        let response = request.send().await.unwrap();
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            assert!(response.headers().contains_key("retry-after"));
            return started;
        }
        assert_eq!(response.status(), StatusCode::OK);
    }
    panic!("never limited");
}

#[tokio::test]
async fn passkey_ceremonies_that_anyone_may_start_are_limited_per_address() {
    let gateway = TestGateway::start_with(|args| args.limits.ceremonies_per_minute = 3).await;
    let started = logins_until_limited(&gateway, &client_from("127.0.0.1"), None, 3).await;
    assert!((3..=6).contains(&started), "{started}");
    // Another address starts its own.
    let response = client_from("127.0.0.2")
        .post(format!("{}/webauthn/login/options", gateway.url))
        .header("origin", &gateway.public)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn behind_a_proxy_the_address_it_adds_is_the_one_counted() {
    let gateway = TestGateway::start_with(|args| {
        args.limits.ceremonies_per_minute = 3;
        args.limits.client_address_header = Some("x-forwarded-for".into());
    })
    .await;
    let http = reqwest::Client::new();
    // Whatever a client puts first, the proxy's last entry decides.
    let started = logins_until_limited(&gateway, &http, Some("1.2.3.4, 203.0.113.7"), 3).await;
    assert!((3..=6).contains(&started), "{started}");
    let started = logins_until_limited(&gateway, &http, Some("1.2.3.4, 203.0.113.8"), 3).await;
    assert!((3..=6).contains(&started), "{started}");

    let response = http
        .post(format!("{}/webauthn/login/options", gateway.url))
        .header("origin", &gateway.public)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["error"], "no_client_address");
}
