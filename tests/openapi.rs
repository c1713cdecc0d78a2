//! `GET /openapi.json` describes exactly the API routes the gateway serves: every described
//! operation reaches a handler (not the router's fallback), and the described paths are the
//! API's paths, no more and no fewer. The routes left undescribed are the person's HTML pages,
//! their event streams and forms, the static files and `/metrics` (the operator's, in the
//! Prometheus text format).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeSet;

use common::TestGateway;
use reqwest::{Method, StatusCode};
use serde_json::Value;

/// Every route of the agent API, the passkey ceremonies, the push subscriptions, and the
/// gateway's public documents.
const API: &[(&str, &str)] = &[
    ("post", "/v1/approvals"),
    ("get", "/v1/approvals/{id}"),
    ("get", "/v1/approvals/{id}/events"),
    ("get", "/v1/approvals/{id}/receipt"),
    ("post", "/v1/approvals/{id}/cancel"),
    ("post", "/v1/agents/enroll"),
    ("post", "/approve/{id}/options"),
    ("post", "/approve/{id}"),
    ("post", "/webauthn/register/options"),
    ("post", "/webauthn/register/finish"),
    ("post", "/webauthn/login/options"),
    ("post", "/webauthn/login/finish"),
    ("post", "/webauthn/step-up/options"),
    ("get", "/v1/push/vapid-key"),
    ("get", "/v1/push/subscriptions"),
    ("post", "/v1/push/subscriptions"),
    ("delete", "/v1/push/subscriptions/{id}"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/.well-known/jwks.json"),
];

fn operations(description: &Value) -> BTreeSet<(String, String)> {
    let mut found = BTreeSet::new();
    for (path, item) in description["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            found.insert((method.clone(), path.clone()));
        }
    }
    found
}

#[tokio::test]
async fn the_description_lists_the_api_and_every_operation_reaches_a_handler() {
    let gateway = TestGateway::start().await;
    let response = gateway
        .http
        .get(format!("{}/openapi.json", gateway.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let description: Value = response.json().await.unwrap();
    assert!(
        description["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        description["openapi"]
    );
    let expected: BTreeSet<(String, String)> = API
        .iter()
        .map(|(method, path)| (method.to_string(), path.to_string()))
        .collect();
    assert_eq!(operations(&description), expected);

    // The bodies are the protocol's types, with every error code.
    let schemas = &description["components"]["schemas"];
    for schema in [
        "ApprovalCreated",
        "ApprovalView",
        "CreateApproval",
        "ErrorBody",
        "Device",
        "DeviceAdded",
        "VapidKey",
        "Jwks",
    ] {
        assert!(schemas[schema].is_object(), "{schema} missing");
    }
    let codes = schemas["ErrorCode"].to_string();
    for code in handsign_protocol::api::ErrorCode::ALL {
        assert!(codes.contains(&format!("\"{code}\"")), "{code} missing");
    }

    // Each described operation is served: a handler answers (a JSON refusal, since the calls
    // carry no proof, session or valid body, or the public document itself), never the
    // router's fallback.
    for (method, path) in &expected {
        let url = format!("{}{}", gateway.url, path.replace("{id}", "apr_x"));
        let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let answer = gateway
            .http
            .request(method.clone(), &url)
            .send()
            .await
            .unwrap();
        let status = answer.status();
        let body: Value = answer.json().await.unwrap_or(Value::Null);
        assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        assert!(
            (status.is_success() || body["error"].is_string()) && !is_fallback(&body),
            "{method} {path}: {status} {body} is not a handler's answer"
        );
    }
    // The check tells the fallback apart.
    let fallback = gateway
        .http
        .post(format!("{}/v1/not-a-route", gateway.url))
        .send()
        .await
        .unwrap();
    let body: Value = fallback.json().await.unwrap_or(Value::Null);
    assert!(is_fallback(&body), "{body}");
}

/// The router's answer for a path it does not serve.
fn is_fallback(body: &Value) -> bool {
    body["message"]
        .as_str()
        .is_some_and(|m| m.starts_with("there is no page at "))
}
