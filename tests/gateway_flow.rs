//! The whole approval flow against the real server: an agent asks, a person approves or denies
//! with a passkey, the agent collects its token once, and the receipt verifies offline.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::{TestGateway, flight, until};
use handsign::clock::TestClock;
use handsign_protocol::canonical::Limits;
use handsign_protocol::params::CanonicalParams;
use handsign_protocol::receipt::{Anchored, Receipt, TrustAnchor};
use handsign_protocol::statement::Decision;
use handsign_protocol::token::{self, Expected};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn params_hash(params: &Value) -> handsign_protocol::params::ParamsHash {
    CanonicalParams::from_value(params, &Limits::default())
        .unwrap()
        .hash()
}

#[tokio::test]
async fn approve_collect_once_and_verify_token_and_receipt() {
    let gateway = TestGateway::start().await;
    let mut alice = gateway.register("alice").await;
    let agent = gateway.agent("alice").await;

    let created = agent.request(flight()).await;
    assert_eq!(created["status"], "pending");
    assert_eq!(created["params_sha256"], params_hash(&flight()).as_str());
    let id = created["id"].as_str().unwrap();
    assert_eq!(
        created["approval_url"],
        format!("{}/approve/{id}", gateway.url)
    );

    let (status, pending) = agent.read(id, 0).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(pending["status"], "pending");
    assert!(pending.get("token").is_none());

    let (status, decided) = gateway.decide(&mut alice, id, "approve").await;
    assert_eq!(status, StatusCode::OK, "{decided}");
    assert_eq!(decided["status"], "approved");

    let (status, collected) = agent.read(id, 0).await;
    assert_eq!(status, StatusCode::OK, "{collected}");
    assert_eq!(collected["status"], "approved");
    let minted = collected["token"].as_str().unwrap();

    let keys = gateway.keys().await;
    let hash = params_hash(&flight());
    let claims = token::verify(
        minted,
        &keys,
        &Expected {
            issuer: &gateway.url,
            audience: "https://travel.example",
            action: "flights.book",
            params_sha256: &hash,
            now: handsign::clock::Clock::system().now(),
            skew: 0,
        },
    )
    .unwrap();
    assert_eq!(claims.sub, "alice");
    assert_eq!(claims.act.sub, agent.id());
    assert_eq!(claims.cnf.unwrap().jkt, agent.id());
    assert_eq!(claims.exp - claims.iat, 30);
    assert_eq!(claims.approval, id);

    let (status, again) = agent.read(id, 0).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again["token_delivered"], true);
    assert!(again.get("token").is_none(), "the token was returned twice");

    let (status, receipt) = agent
        .call(Method::GET, &format!("/v1/approvals/{id}/receipt"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{receipt}");
    let receipt = Receipt::parse(&serde_json::to_vec(&receipt).unwrap()).unwrap();
    let verified = receipt.verify(TrustAnchor::Gateway(&keys)).unwrap();
    assert_eq!(verified.decision, Decision::Approve);
    assert_eq!(verified.user, "alice");
    assert!(matches!(
        verified.anchored,
        Anchored::GatewaySignature { .. }
    ));
}

#[tokio::test]
async fn a_waiting_agent_wakes_when_the_person_decides() {
    let (gateway, mut alice, agent, id) = common::alice_asked().await;

    let waiting = {
        let agent = agent.clone();
        let id = id.clone();
        tokio::spawn(async move { agent.read(&id, 60).await })
    };
    let (status, _) = gateway.decide(&mut alice, &id, "approve").await;
    assert_eq!(status, StatusCode::OK);
    let (status, answer) = waiting.await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["status"], "approved");
    assert!(answer["token"].is_string(), "{answer}");
}

#[tokio::test]
async fn a_denied_request_gives_no_token_and_a_receipt_of_the_denial() {
    let (gateway, mut alice, agent, id) = common::alice_asked().await;

    let (status, decided) = gateway.decide(&mut alice, &id, "deny").await;
    assert_eq!(status, StatusCode::OK, "{decided}");
    let (_, answer) = agent.read(&id, 0).await;
    assert_eq!(answer["status"], "denied");
    assert!(answer.get("token").is_none());

    let (_, receipt) = agent
        .call(Method::GET, &format!("/v1/approvals/{id}/receipt"), None)
        .await;
    let receipt = Receipt::parse(&serde_json::to_vec(&receipt).unwrap()).unwrap();
    assert_eq!(
        receipt
            .verify(TrustAnchor::Gateway(&gateway.keys().await))
            .unwrap()
            .decision,
        Decision::Deny
    );
}

#[tokio::test]
async fn the_same_assertion_decides_once() {
    let (gateway, mut alice, _agent, id) = common::alice_asked().await;

    let credential = gateway.assert(&mut alice, &id, "approve").await;
    let (first, _) = gateway.submit(&id, "approve", &credential).await;
    assert_eq!(first, StatusCode::OK);
    let (second, body) = gateway.submit(&id, "approve", &credential).await;
    assert_eq!(second, StatusCode::CONFLICT, "{body}");
}

#[tokio::test]
async fn concurrent_submissions_of_one_assertion_decide_once() {
    let (gateway, mut alice, _agent, id) = common::alice_asked().await;
    let credential = gateway.assert(&mut alice, &id, "approve").await;

    let gateway = std::sync::Arc::new(gateway);
    let submissions: Vec<_> = (0..8)
        .map(|_| {
            let gateway = gateway.clone();
            let id = id.clone();
            let credential = credential.clone();
            tokio::spawn(async move { gateway.submit(&id, "approve", &credential).await.0 })
        })
        .collect();
    let mut accepted = 0;
    for submission in submissions {
        if submission.await.unwrap() == StatusCode::OK {
            accepted += 1;
        }
    }
    assert_eq!(accepted, 1);
}

#[tokio::test]
async fn an_assertion_for_one_request_or_decision_does_not_decide_another() {
    let gateway = TestGateway::start().await;
    let mut alice = gateway.register("alice").await;
    let agent = gateway.agent("alice").await;
    let a = agent.request(flight()).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let b = agent.request(json!({"to": "LAX"})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // An assertion made for A, submitted on B's own open ceremony.
    let mut for_a = gateway.assert(&mut alice, &a, "approve").await;
    let (status, b_options) = gateway.options(&b, "approve").await;
    assert_eq!(status, StatusCode::OK);
    for_a["ceremony"] = b_options["ceremony"].clone();
    let (status, body) = gateway.submit(&b, "approve", &for_a).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"], "passkey_refused");

    // A deny assertion submitted as an approval, on the approval's open ceremony.
    let mut deny = gateway.assert(&mut alice, &a, "deny").await;
    let (status, approve_options) = gateway.options(&a, "approve").await;
    assert_eq!(status, StatusCode::OK);
    deny["ceremony"] = approve_options["ceremony"].clone();
    let (status, body) = gateway.submit(&a, "approve", &deny).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");

    let (_, read_a) = agent.read(&a, 0).await;
    let (_, read_b) = agent.read(&b, 0).await;
    assert_eq!(read_a["status"], "pending");
    assert_eq!(read_b["status"], "pending");
}

#[tokio::test]
async fn another_users_passkey_cannot_decide() {
    let gateway = TestGateway::start().await;
    let _alice = gateway.register("alice").await;
    let mut bob = gateway.register("bob").await;
    let agent = gateway.agent("alice").await;
    let id = agent.request(flight()).await["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // The options name only alice's credentials, so bob's authenticator has nothing to use.
    let (status, options) = gateway.options(&id, "approve").await;
    assert_eq!(status, StatusCode::OK);
    let rcr: webauthn_rs::prelude::RequestChallengeResponse =
        serde_json::from_value(json!({"publicKey": options["publicKey"]})).unwrap();
    use webauthn_authenticator_rs::WebauthnAuthenticator as _;
    assert!(
        bob.passkey
            .do_authentication(gateway.origin(), rcr)
            .is_err()
    );
    let (_, answer) = agent.read(&id, 0).await;
    assert_eq!(answer["status"], "pending");
}

#[tokio::test]
async fn a_decided_request_cannot_be_decided_again() {
    let (gateway, mut alice, agent, id) = common::alice_asked().await;
    let deny = gateway.assert(&mut alice, &id, "deny").await;
    let (status, _) = gateway.decide(&mut alice, &id, "approve").await;
    assert_eq!(status, StatusCode::OK);

    let (status, body) = gateway.options(&id, "deny").await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, body) = gateway.submit(&id, "deny", &deny).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(agent.read(&id, 0).await.1["status"], "approved");
}

#[tokio::test]
async fn the_token_is_delivered_to_exactly_one_of_concurrent_collectors() {
    let (gateway, mut alice, agent, id) = common::alice_asked().await;
    let (status, _) = gateway.decide(&mut alice, &id, "approve").await;
    assert_eq!(status, StatusCode::OK);

    let reads: Vec<_> = (0..16)
        .map(|_| {
            let agent = agent.clone();
            let id = id.clone();
            tokio::spawn(async move { agent.read(&id, 0).await })
        })
        .collect();
    let mut tokens = 0;
    for read in reads {
        let (status, answer) = read.await.unwrap();
        assert_eq!(status, StatusCode::OK);
        if answer.get("token").is_some() {
            tokens += 1;
        }
    }
    assert_eq!(tokens, 1);
}

#[tokio::test]
async fn another_agent_cannot_read_or_collect_the_request() {
    let gateway = TestGateway::start().await;
    let mut alice = gateway.register("alice").await;
    let agent = gateway.agent("alice").await;
    let other = gateway.agent("alice").await;
    let id = agent.request(flight()).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, _) = gateway.decide(&mut alice, &id, "approve").await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = other.read(&id, 0).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, answer) = agent.read(&id, 0).await;
    assert_eq!(status, StatusCode::OK);
    assert!(answer["token"].is_string());
}

#[tokio::test]
async fn the_approval_page_shows_the_request_under_a_strict_policy() {
    let gateway = TestGateway::start().await;
    let _alice = gateway.register("alice").await;
    let agent = gateway.agent("alice").await;
    let created = agent
        .request(json!({"note": "<script>alert(1)</script>", "to": "NYC"}))
        .await;
    let response = gateway
        .http
        .get(format!(
            "{}/approve/{}",
            gateway.url,
            created["id"].as_str().unwrap()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers().clone();
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
    assert!(!csp.contains("unsafe-inline"));
    assert_eq!(headers["referrer-policy"], "no-referrer");
    let html = response.text().await.unwrap();
    assert!(html.contains(created["code"].as_str().unwrap()));
    assert!(!html.contains("<script>alert(1)</script>"));
    assert!(html.contains("&#60;script&#62;alert(1)&#60;/script&#62;"));
}

#[tokio::test]
async fn browser_endpoints_refuse_other_origins() {
    let gateway = TestGateway::start().await;
    let _alice = gateway.register("alice").await;
    let agent = gateway.agent("alice").await;
    let id = agent.request(flight()).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for origin in [Some("https://evil.example"), None] {
        let mut request = gateway
            .http
            .post(format!("{}/approve/{id}/options", gateway.url))
            .json(&json!({"decision": "approve"}));
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
    }
}

#[tokio::test]
async fn the_event_stream_reports_pending_then_the_decision_with_the_token() {
    let (gateway, mut alice, agent, id) = common::alice_asked().await;
    let states = agent
        .stream_states(&id, async || {
            let (status, _) = gateway.decide(&mut alice, &id, "approve").await;
            assert_eq!(status, StatusCode::OK);
        })
        .await;
    let text = format!("{states:?}");
    // The stream ends after the final state, which carries the token.
    assert_eq!(states.first().unwrap()["status"], "pending");
    let last = states.last().unwrap();
    assert_eq!(last["status"], "approved");
    assert!(last["token"].is_string(), "{text}");
    let (_, again) = agent.read(&id, 0).await;
    assert!(again.get("token").is_none());
}

/// Every wait that ends at a request's expiry follows the gateway's clock: the agent's long poll
/// and event stream and the approval page's stream all end with `expired` once the clock passes
/// the expiry (a test clock moved on here, instead of ten seconds waited).
#[tokio::test]
async fn every_wait_ends_when_the_gateways_clock_passes_the_expiry() {
    let time = TestClock::starting_now();
    let gateway = TestGateway::start_reading(time.clock(), |_| {}).await;
    let _alice = gateway.register("alice").await;
    let agent = gateway.agent("alice").await;
    let (status, created) = agent
        .call(
            Method::POST,
            "/v1/approvals",
            Some(&json!({
                "action": "flights.book",
                "params": flight(),
                "audience": "https://travel.example",
                "ttl": 10,
            })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let page = tokio::spawn(
        gateway
            .http
            .get(format!("{}/approve/{id}/events", gateway.url))
            .send(),
    );
    let poll = tokio::spawn({
        let (agent, id) = (agent.clone(), id.clone());
        async move { agent.read(&id, 60).await }
    });
    let everything = async {
        let states = agent
            .stream_states(&id, async || {
                // The page's stream, the long poll and this stream.
                until("every wait is parked", || {
                    gateway.state.events.waiters() == 3
                })
                .await;
                time.advance(Duration::from_secs(10));
            })
            .await;
        (states, poll.await.unwrap(), page.await.unwrap().unwrap())
    };
    // Far less than the ttl of real time.
    let (states, (status, polled), page) = tokio::time::timeout(Duration::from_secs(5), everything)
        .await
        .expect("every wait ends once the clock passes the expiry");
    assert_eq!(states.last().unwrap()["status"], "expired", "{states:?}");
    assert_eq!(status, StatusCode::OK, "{polled}");
    assert_eq!(polled["status"], "expired", "{polled}");
    let said = page.text().await.unwrap();
    assert!(said.contains("event: status\ndata: expired\n"), "{said}");
}

#[tokio::test]
async fn an_agent_enrolls_itself_once_its_user_approves() {
    let gateway = TestGateway::start().await;
    let mut alice = gateway.register("alice").await;
    let key = handsign_protocol::keys::SigningKey::generate().unwrap();
    let agent = common::TestAgent::new(key, &gateway.url);

    let (status, created) = agent
        .call(
            Method::POST,
            "/v1/agents/enroll",
            Some(&json!({"name": "mail bot", "user": "alice"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap();

    // Not active yet: it may read its enrollment and nothing else.
    let (status, answer) = agent
        .call(
            Method::POST,
            "/v1/approvals",
            Some(&json!({"action": "mail.send", "params": {}, "audience": "https://mail.example"})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    assert_eq!(agent.read(id, 0).await.1["status"], "pending");

    let (status, _) = gateway.decide(&mut alice, id, "approve").await;
    assert_eq!(status, StatusCode::OK);
    let (_, enrolled) = agent.read(id, 0).await;
    assert_eq!(enrolled["status"], "approved");
    assert!(
        enrolled.get("token").is_none(),
        "an enrollment carries no token"
    );
    agent.request(flight()).await;
}

#[tokio::test]
async fn health_readiness_and_the_published_keys() {
    let gateway = TestGateway::start().await;
    for (path, body) in [("/healthz", "ok\n"), ("/readyz", "ready\n")] {
        let response = gateway
            .http
            .get(format!("{}{path}", gateway.url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert_eq!(response.text().await.unwrap(), body);
    }
    let jwks: Value = gateway
        .http
        .get(format!("{}/.well-known/jwks.json", gateway.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = &jwks["keys"][0];
    assert_eq!(
        (&key["kty"], &key["crv"], &key["use"], &key["alg"]),
        (
            &json!("OKP"),
            &json!("Ed25519"),
            &json!("sig"),
            &json!("EdDSA")
        )
    );
    assert!(key.get("d").is_none(), "the private key was published");
    assert_eq!(
        key["kid"],
        gateway.state.keyring.current().kid(),
        "the JWKS must publish the signing key"
    );
}

#[tokio::test]
async fn the_ceremony_requires_user_verification_and_allows_only_the_users_passkeys() {
    let gateway = TestGateway::start().await;
    let _alice = gateway.register("alice").await;
    let _bob = gateway.register("bob").await;
    let agent = gateway.agent("alice").await;
    let id = agent.request(flight()).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, options) = gateway.options(&id, "approve").await;
    assert_eq!(status, StatusCode::OK);
    let public_key = &options["publicKey"];
    assert_eq!(public_key["userVerification"], "required");
    let allowed: Vec<&str> = public_key["allowCredentials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    let alices: Vec<String> = gateway
        .store
        .passkeys(&handsign::domain::UserId::parse("alice").unwrap())
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.credential_id)
        .collect();
    assert_eq!(allowed, alices);

    // The challenge is the statement digest, not a random one.
    let approval = gateway
        .store
        .approval(&handsign::domain::ApprovalId::parse(&id).unwrap())
        .await
        .unwrap()
        .unwrap();
    let digest = handsign::routes::approve::statement(&gateway.state, &approval, Decision::Approve)
        .digest()
        .unwrap();
    assert_eq!(
        public_key["challenge"],
        handsign_protocol::base64url::encode(digest)
    );
}

#[tokio::test]
async fn session_cookies_are_http_only_and_same_site_strict() {
    let gateway = TestGateway::start().await;
    let code =
        handsign::invitations::issue(gateway.store.as_ref(), None, gateway.state.clock.now())
            .await
            .unwrap();
    let (status, options) = gateway
        .browser_post(
            "/webauthn/register/options",
            &json!({"code": code, "user": "alice"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let ccr: webauthn_rs::prelude::CreationChallengeResponse =
        serde_json::from_value(json!({"publicKey": options["publicKey"]})).unwrap();
    use webauthn_authenticator_rs::WebauthnAuthenticator as _;
    let credential = webauthn_authenticator_rs::softpasskey::SoftPasskey::new(true)
        .do_registration(gateway.origin(), ccr)
        .unwrap();
    let response = gateway
        .http
        .post(format!("{}/webauthn/register/finish", gateway.url))
        .header("origin", &gateway.url)
        .json(&json!({"ceremony": options["ceremony"], "credential": credential}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(cookie.starts_with("handsign_session="), "{cookie}");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    // Served over plain http (localhost), so not Secure; over https it would be.
    assert!(!cookie.contains("Secure"), "{cookie}");
}
