//! `Verifier::verify_token`: the layer's checks for a token presented outside HTTP, with the
//! same codes and the same record of used tokens.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use common::*;
use handsign_protocol::keys::{KeySet, SigningKey};
use handsign_verify::{
    ErrorCode, KeyBinding, Keys, MemoryReplayStore, Presented, ReplayStore, TokenRefused, Verifier,
};
use serde_json::{Value, json};

const BASH: &str = "claude-code.Bash";

fn command() -> Value {
    json!({"command": "git push origin main", "cwd": "/src/app"})
}

/// A verifier with no public URL (it serves no route) whose record goes back an hour.
fn verifier(gateway: &SigningKey) -> Verifier {
    let record = MemoryReplayStore::new().record_began_at(now() - 3600);
    verifier_with(gateway, Arc::new(record))
}

/// A verifier with no public URL recording used tokens in `replay`.
fn verifier_with(gateway: &SigningKey, replay: Arc<dyn ReplayStore>) -> Verifier {
    Verifier::builder()
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .keys(Keys::fixed(KeySet::from_signing_keys([gateway])))
        .replay_store(replay)
        .build()
        .unwrap()
}

fn token_for(gateway: &SigningKey, agent: &SigningKey, action: &str, params: &Value) -> String {
    mint(gateway, &claims(agent, action, &params.to_string()))
}

async fn present(
    verifier: &Verifier,
    token: &str,
    binding: KeyBinding<'_>,
    action: &str,
    params: &Value,
) -> Result<String, TokenRefused> {
    verifier
        .verify_token(&Presented {
            token,
            binding,
            action,
            params,
        })
        .await
        .map(|claims| claims.sub)
}

fn code(outcome: Result<String, TokenRefused>) -> ErrorCode {
    match outcome {
        Ok(user) => panic!("accepted, approved by {user}"),
        Err(refused) => refused.code,
    }
}

#[tokio::test]
async fn the_holder_of_the_bound_key_is_accepted_once() {
    let gateway = SigningKey::generate().unwrap();
    let agent = SigningKey::generate().unwrap();
    let verifier = verifier(&gateway);
    let token = token_for(&gateway, &agent, BASH, &command());
    let holder = KeyBinding::Holder { jkt: agent.kid() };

    let user = present(&verifier, &token, holder, BASH, &command()).await;
    assert_eq!(user.unwrap(), "alice");
    let again = present(&verifier, &token, holder, BASH, &command()).await;
    assert_eq!(code(again), ErrorCode::TokenReplayed);
    let metrics = verifier.metrics();
    assert_eq!(metrics.accepted, 1);
    assert_eq!(metrics.refused("token_replayed"), 1);
}

#[tokio::test]
async fn params_are_compared_canonically_and_other_params_or_actions_are_refused() {
    let gateway = SigningKey::generate().unwrap();
    let agent = SigningKey::generate().unwrap();
    let verifier = verifier(&gateway);
    let token = token_for(&gateway, &agent, BASH, &command());
    let holder = KeyBinding::Holder { jkt: agent.kid() };

    let other = json!({"command": "git push --force origin main", "cwd": "/src/app"});
    assert_eq!(
        code(present(&verifier, &token, holder, BASH, &other).await),
        ErrorCode::ParamsMismatch
    );
    assert_eq!(
        code(present(&verifier, &token, holder, "claude-code.Write", &command()).await),
        ErrorCode::ActionMismatch
    );
    let huge = json!({"content": "x".repeat(65 * 1024)});
    assert_eq!(
        code(present(&verifier, &token, holder, BASH, &huge).await),
        ErrorCode::InvalidParams
    );
    // None of the refusals used the token; the same params in another key order are accepted.
    let reordered: Value =
        serde_json::from_str(r#"{"cwd": "/src/app", "command": "git push origin main"}"#).unwrap();
    assert!(
        present(&verifier, &token, holder, BASH, &reordered)
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn another_key_is_refused_without_using_the_token() {
    let gateway = SigningKey::generate().unwrap();
    let agent = SigningKey::generate().unwrap();
    let thief = SigningKey::generate().unwrap();
    let verifier = verifier(&gateway);
    let token = token_for(&gateway, &agent, BASH, &command());

    let by_thief = KeyBinding::Holder { jkt: thief.kid() };
    assert_eq!(
        code(present(&verifier, &token, by_thief, BASH, &command()).await),
        ErrorCode::DpopKeyMismatch
    );
    let url = "https://tools.test/call";
    let thief_proof = proof(&thief, "POST", url, Some(&token));
    let binding = KeyBinding::Proof {
        proof: &thief_proof,
        method: "POST",
        url,
    };
    assert_eq!(
        code(present(&verifier, &token, binding, BASH, &command()).await),
        ErrorCode::DpopKeyMismatch
    );
    let holder = KeyBinding::Holder { jkt: agent.kid() };
    assert!(
        present(&verifier, &token, holder, BASH, &command())
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn a_proof_is_checked_for_its_method_url_and_token_and_used_once() {
    let gateway = SigningKey::generate().unwrap();
    let agent = SigningKey::generate().unwrap();
    let verifier = verifier(&gateway);
    let url = "https://tools.test/call";
    let token = token_for(&gateway, &agent, BASH, &command());
    let for_other_url = proof(&agent, "POST", "https://tools.test/other", Some(&token));
    let binding = KeyBinding::Proof {
        proof: &for_other_url,
        method: "POST",
        url,
    };
    assert_eq!(
        code(present(&verifier, &token, binding, BASH, &command()).await),
        ErrorCode::InvalidDpop
    );

    let good = proof(&agent, "POST", url, Some(&token));
    let binding = KeyBinding::Proof {
        proof: &good,
        method: "POST",
        url,
    };
    assert!(
        present(&verifier, &token, binding, BASH, &command())
            .await
            .is_ok()
    );
    // The same proof with a second token for the same call: the proof's `ath` names the first.
    let second = token_for(&gateway, &agent, BASH, &command());
    assert_eq!(
        code(present(&verifier, &second, binding, BASH, &command()).await),
        ErrorCode::InvalidDpop
    );
}

#[tokio::test]
async fn a_token_used_at_a_route_is_refused_here_and_the_other_way_round() {
    let gateway = SigningKey::generate().unwrap();
    let agent = SigningKey::generate().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let verifier = verifier_builder(&url, &gateway).build().unwrap();
    let service = serve(listener, url, &verifier);
    let flight: Value = serde_json::from_str(FLIGHT).unwrap();
    let holder = KeyBinding::Holder { jkt: agent.kid() };

    let token = mint(&gateway, &claims(&agent, BOOK, FLIGHT));
    let answer = post_approved(&client(), &service.at("/bookings"), &token, &agent, FLIGHT).await;
    assert_eq!(answer.status, reqwest::StatusCode::OK, "{answer:?}");
    assert_eq!(
        code(present(&verifier, &token, holder, BOOK, &flight).await),
        ErrorCode::TokenReplayed
    );

    let token = mint(&gateway, &claims(&agent, BOOK, FLIGHT));
    assert!(
        present(&verifier, &token, holder, BOOK, &flight)
            .await
            .is_ok()
    );
    let answer = post_approved(&client(), &service.at("/bookings"), &token, &agent, FLIGHT).await;
    answer.assert_refused("token_replayed");
    assert_eq!(service.seen.runs(), 1);
}

#[tokio::test]
async fn an_unbound_token_is_refused_unless_explicitly_allowed() {
    let gateway = SigningKey::generate().unwrap();
    let agent = SigningKey::generate().unwrap();
    let mut unbound = claims(&agent, BASH, &command().to_string());
    unbound.cnf = None;
    let token = mint(&gateway, &unbound);
    let holder = KeyBinding::Holder { jkt: agent.kid() };
    assert_eq!(
        code(present(&verifier(&gateway), &token, holder, BASH, &command()).await),
        ErrorCode::DpopRequired
    );
}

#[tokio::test]
async fn a_token_issued_before_an_in_memory_record_began_is_refused() {
    let gateway = SigningKey::generate().unwrap();
    let agent = SigningKey::generate().unwrap();
    let verifier = verifier_with(&gateway, Arc::new(MemoryReplayStore::new()));
    let token = token_for(&gateway, &agent, BASH, &command());
    let holder = KeyBinding::Holder { jkt: agent.kid() };
    assert_eq!(
        code(present(&verifier, &token, holder, BASH, &command()).await),
        ErrorCode::IssuedBeforeStart
    );
}

#[tokio::test]
async fn an_unreachable_replay_store_refuses_as_unavailable() {
    let gateway = SigningKey::generate().unwrap();
    let agent = SigningKey::generate().unwrap();
    let verifier = verifier_with(&gateway, Arc::new(DownStore));
    let token = token_for(&gateway, &agent, BASH, &command());
    let holder = KeyBinding::Holder { jkt: agent.kid() };
    let refused = present(&verifier, &token, holder, BASH, &command())
        .await
        .unwrap_err();
    assert_eq!(refused.code, ErrorCode::ReplayStoreUnavailable);
    assert!(refused.unavailable);
    assert!(!refused.message.contains("connection refused"));
}
