//! The middleware in front of a real axum app: a request with a token that holds for exactly
//! this request reaches the handler once, with the claims and the very body bytes; every other
//! request is refused with the code of the check it failed, and the handler does not run.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use common::*;
use handsign_protocol::dpop;
use handsign_protocol::keys::{KeySet, SigningKey};
use handsign_protocol::token::ApprovalClaims;
use handsign_verify::{Clock, ErrorCode, Keys, Verifier};
use reqwest::{Method, StatusCode};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

struct Setup {
    gateway: SigningKey,
    agent: SigningKey,
    service: Service,
    client: reqwest::Client,
}

async fn setup() -> Setup {
    let gateway = SigningKey::generate().unwrap();
    let service = spawn_service(&gateway, |b| b).await;
    Setup {
        gateway,
        agent: SigningKey::generate().unwrap(),
        service,
        client: client(),
    }
}

impl Setup {
    fn token(&self, action: &str, params: &str) -> String {
        mint(&self.gateway, &claims(&self.agent, action, params))
    }

    fn bookings(&self) -> String {
        self.service.at("/bookings")
    }

    async fn book(&self, token: &str, body: &str) -> Answer {
        post_approved(&self.client, &self.bookings(), token, &self.agent, body).await
    }
}

#[tokio::test]
async fn approved_request_reaches_the_handler_with_the_claims_and_the_exact_body() {
    let s = setup().await;
    let claims = claims(&s.agent, BOOK, FLIGHT);
    let token = mint(&s.gateway, &claims);

    let answer = s.book(&token, FLIGHT).await;

    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert_eq!(s.service.seen.runs(), 1);
    let (seen_claims, seen_body) = s.service.seen.last().unwrap();
    assert_eq!(seen_claims, claims);
    assert_eq!(
        &seen_body[..],
        FLIGHT.as_bytes(),
        "the bytes that were hashed"
    );
}

#[tokio::test]
async fn proof_names_the_full_path_under_a_nested_router() {
    let s = setup().await;
    let token = s.token(BOOK, FLIGHT);
    let url = s.service.at("/v2/bookings");
    let answer = post_approved(&s.client, &url, &token, &s.agent, FLIGHT).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert_eq!(s.service.seen.runs(), 1);
}

#[tokio::test]
async fn other_params_are_refused() {
    let s = setup().await;
    let token = s.token(BOOK, FLIGHT);
    let changed = FLIGHT.replace(r#""seats": 2"#, r#""seats": 3"#);
    s.book(&token, &changed)
        .await
        .assert_refused("params_mismatch");
    assert_eq!(s.service.seen.runs(), 0);
}

#[tokio::test]
async fn params_are_compared_canonically() {
    let s = setup().await;
    let token = s.token(BOOK, FLIGHT);
    let reordered = r#"{"seats":2.0,"date":"2026-12-01","from":"SFO","to":"NYC"}"#;
    let answer = s.book(&token, reordered).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert_eq!(&s.service.seen.last().unwrap().1[..], reordered.as_bytes());
}

#[tokio::test]
async fn a_token_for_another_action_is_refused() {
    let s = setup().await;
    let token = s.token("flights.cancel", FLIGHT);
    s.book(&token, FLIGHT)
        .await
        .assert_refused("action_mismatch");
    assert_eq!(s.service.seen.runs(), 0);
}

#[tokio::test]
async fn a_token_for_another_audience_is_refused_with_an_escaped_description() {
    let s = setup().await;
    let mut claims = claims(&s.agent, BOOK, FLIGHT);
    claims.aud = "https://other.test".into();
    let answer = s.book(&mint(&s.gateway, &claims), FLIGHT).await;
    answer.assert_refused("wrong_audience");
    // The message quotes both audiences; the quotes are escaped inside the header parameter.
    assert!(
        answer.www_authenticate().contains(
            r#"wrong audience \"https://other.test\": this service is \"https://travel.test\""#
        ),
        "{}",
        answer.www_authenticate()
    );
    assert_eq!(s.service.seen.runs(), 0);
}

#[tokio::test]
async fn a_token_from_another_issuer_is_refused() {
    let s = setup().await;
    let mut claims = claims(&s.agent, BOOK, FLIGHT);
    claims.iss = "https://evil.test".into();
    s.book(&mint(&s.gateway, &claims), FLIGHT)
        .await
        .assert_refused("wrong_issuer");
    assert_eq!(s.service.seen.runs(), 0);
}

#[tokio::test]
async fn a_token_is_accepted_once() {
    let s = setup().await;
    let token = s.token(BOOK, FLIGHT);
    assert_eq!(s.book(&token, FLIGHT).await.status, StatusCode::OK);
    // A second presentation, with a fresh valid proof, by the same agent.
    s.book(&token, FLIGHT)
        .await
        .assert_refused("token_replayed");
    assert_eq!(s.service.seen.runs(), 1);
}

#[tokio::test]
async fn a_refused_request_does_not_use_the_token_up() {
    let s = setup().await;
    let token = s.token(BOOK, FLIGHT);
    let wrong_body = FLIGHT.replace("NYC", "LAX");
    s.book(&token, &wrong_body)
        .await
        .assert_refused("params_mismatch");
    assert_eq!(s.book(&token, FLIGHT).await.status, StatusCode::OK);
    assert_eq!(s.service.seen.runs(), 1);
}

#[tokio::test]
async fn an_expired_token_is_refused() {
    let s = setup().await;
    let mut claims = claims(&s.agent, BOOK, FLIGHT);
    claims.iat = now() - 40;
    claims.nbf = claims.iat;
    claims.exp = claims.iat + 30;
    s.book(&mint(&s.gateway, &claims), FLIGHT)
        .await
        .assert_refused("expired");
    assert_eq!(s.service.seen.runs(), 0);
}

#[tokio::test]
async fn a_token_not_yet_valid_is_refused() {
    let s = setup().await;
    let mut claims = claims(&s.agent, BOOK, FLIGHT);
    claims.iat = now() + 20;
    claims.nbf = claims.iat;
    claims.exp = claims.iat + 30;
    s.book(&mint(&s.gateway, &claims), FLIGHT)
        .await
        .assert_refused("not_yet_valid");
    assert_eq!(s.service.seen.runs(), 0);
}

#[tokio::test]
async fn a_token_living_longer_than_30_seconds_is_refused() {
    let s = setup().await;
    let mut claims = claims(&s.agent, BOOK, FLIGHT);
    claims.exp = claims.iat + 31;
    s.book(&mint(&s.gateway, &claims), FLIGHT)
        .await
        .assert_refused("lifetime_too_long");
    assert_eq!(s.service.seen.runs(), 0);
}

#[tokio::test]
async fn a_token_without_authorization_or_with_another_scheme_is_refused() {
    let s = setup().await;
    let token = s.token(BOOK, FLIGHT);
    let answer = Call {
        method: Method::POST,
        url: s.bookings(),
        token: None,
        proof: Some(proof(&s.agent, "POST", &s.bookings(), Some(&token))),
        body: Some(FLIGHT.into()),
    }
    .send(&s.client)
    .await;
    answer.assert_refused(ErrorCode::MissingToken.as_str());

    let answer = s
        .client
        .post(s.bookings())
        .header("authorization", format!("Bearer {token}"))
        .body(FLIGHT)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
    assert!(
        answer.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with(r#"Approval error="missing_token""#)
    );
    assert_eq!(s.service.seen.runs(), 0);
}

#[tokio::test]
async fn a_tampered_token_is_refused() {
    let s = setup().await;
    let token = s.token(BOOK, FLIGHT);
    let (head, signature) = token.rsplit_once('.').unwrap();
    let flipped = if signature.starts_with('A') { "B" } else { "A" };
    let tampered = format!("{head}.{flipped}{}", &signature[1..]);
    s.book(&tampered, FLIGHT)
        .await
        .assert_refused("bad_signature");
    s.book("not-a-token", FLIGHT)
        .await
        .assert_refused("malformed_token");
    assert_eq!(s.service.seen.runs(), 0);
}

#[tokio::test]
async fn a_key_bound_token_without_a_proof_is_refused() {
    let s = setup().await;
    let token = s.token(BOOK, FLIGHT);
    let answer = Call {
        method: Method::POST,
        url: s.bookings(),
        token: Some(&token),
        proof: None,
        body: Some(FLIGHT.into()),
    }
    .send(&s.client)
    .await;
    answer.assert_refused(ErrorCode::DpopRequired.as_str());
    assert_eq!(s.service.seen.runs(), 0);
}

#[tokio::test]
async fn a_proof_by_another_agent_is_refused() {
    let s = setup().await;
    let token = s.token(BOOK, FLIGHT);
    let thief = SigningKey::generate().unwrap();
    post_approved(&s.client, &s.bookings(), &token, &thief, FLIGHT)
        .await
        .assert_refused(ErrorCode::DpopKeyMismatch.as_str());
    assert_eq!(s.service.seen.runs(), 0);
}

#[tokio::test]
async fn a_proof_for_another_url_or_method_is_refused() {
    let s = setup().await;
    let token = s.token(BOOK, FLIGHT);
    for (method, url) in [
        ("POST", s.service.at("/small")),
        ("POST", format!("http://localhost:1{}", "/bookings")),
        ("PUT", s.bookings()),
    ] {
        let answer = Call {
            method: Method::POST,
            url: s.bookings(),
            token: Some(&token),
            proof: Some(proof(&s.agent, method, &url, Some(&token))),
            body: Some(FLIGHT.into()),
        }
        .send(&s.client)
        .await;
        answer.assert_refused(ErrorCode::InvalidDpop.as_str());
    }
    assert_eq!(s.service.seen.runs(), 0);
    // None of them used the token up.
    assert_eq!(s.book(&token, FLIGHT).await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_proof_without_or_with_another_token_hash_is_refused() {
    let s = setup().await;
    let token = s.token(BOOK, FLIGHT);
    let other_token = s.token(BOOK, FLIGHT);
    for ath in [None, Some(other_token.as_str())] {
        let answer = Call {
            method: Method::POST,
            url: s.bookings(),
            token: Some(&token),
            proof: Some(proof(&s.agent, "POST", &s.bookings(), ath)),
            body: Some(FLIGHT.into()),
        }
        .send(&s.client)
        .await;
        answer.assert_refused(ErrorCode::InvalidDpop.as_str());
        assert!(answer.json()["message"].as_str().unwrap().contains("ath"));
    }
    assert_eq!(s.service.seen.runs(), 0);
}

#[tokio::test]
async fn an_unbound_token_is_refused_unless_explicitly_allowed() {
    let s = setup().await;
    let mut unbound = claims(&s.agent, BOOK, FLIGHT);
    unbound.cnf = None;
    let token = mint(&s.gateway, &unbound);
    let call = |url: String| Call {
        method: Method::POST,
        url,
        token: Some(&token),
        proof: None,
        body: Some(FLIGHT.into()),
    };
    call(s.bookings())
        .send(&s.client)
        .await
        .assert_refused(ErrorCode::DpopRequired.as_str());
    assert_eq!(s.service.seen.runs(), 0);

    let lenient = spawn_service(&s.gateway, |b| b.danger_allow_unbound_tokens()).await;
    let answer = call(lenient.at("/bookings")).send(&s.client).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert_eq!(lenient.seen.runs(), 1);
}

#[tokio::test]
async fn a_token_signed_by_an_unknown_key_is_refused() {
    let s = setup().await;
    let stranger = SigningKey::generate().unwrap();
    let token = mint(&stranger, &claims(&s.agent, BOOK, FLIGHT));
    let answer = s.book(&token, FLIGHT).await;
    answer.assert_refused("unknown_kid");
    assert_eq!(s.service.seen.runs(), 0);
}

#[tokio::test]
async fn an_imprecise_number_in_the_body_is_refused() {
    let s = setup().await;
    // 9007199254740993 rounds to the double 9007199254740992: a lax parser would take the
    // request for the approved params.
    let approved = r#"{"amount": 9007199254740992}"#;
    let sent = r#"{"amount": 9007199254740993}"#;
    let token = s.token(BOOK, approved);
    let answer = s.book(&token, sent).await;
    answer.assert_refused(ErrorCode::InvalidParams.as_str());
    assert!(
        answer.json()["message"]
            .as_str()
            .unwrap()
            .contains("9007199254740993")
    );
    let token = s.token(BOOK, r#"{"a": 1}"#);
    s.book(&token, r#"{"a": 1, "a": 2}"#)
        .await
        .assert_refused(ErrorCode::InvalidParams.as_str());
    assert_eq!(s.service.seen.runs(), 0);
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused_with_413() {
    let s = setup().await;
    let big = format!(r#"{{"note": "{}"}}"#, "x".repeat(100));
    let token = s.token(BOOK, &big);
    let answer = post_approved(&s.client, &s.service.at("/small"), &token, &s.agent, &big).await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE, "{answer:?}");
    assert_eq!(answer.json()["error"], ErrorCode::BodyTooLarge.as_str());
    assert_eq!(s.service.seen.runs(), 0);
}

#[tokio::test]
async fn a_chunked_body_over_the_limit_is_refused_with_413() {
    let s = setup().await;
    let big = format!(r#"{{"note": "{}"}}"#, "x".repeat(100));
    let url = s.service.at("/small");
    let token = s.token(BOOK, &big);
    let proof = proof(&s.agent, "POST", &url, Some(&token));
    // No Content-Length: the limit must hold while reading.
    let mut stream = tokio::net::TcpStream::connect(s.service.url.trim_start_matches("http://"))
        .await
        .unwrap();
    let (first, second) = big.split_at(50);
    let request = format!(
        "POST /small HTTP/1.1\r\nhost: x\r\nauthorization: Approval {token}\r\ndpop: {proof}\r\n\
         content-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n\
         {:x}\r\n{first}\r\n{:x}\r\n{second}\r\n0\r\n\r\n",
        first.len(),
        second.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    assert!(response.contains(ErrorCode::BodyTooLarge.as_str()));
    assert_eq!(s.service.seen.runs(), 0);
}

#[tokio::test]
async fn params_from_the_query_string() {
    let s = setup().await;
    let approved = r#"{"from": "SFO", "to": "NYC"}"#;
    let token = s.token(SEARCH, approved);
    let token = token.as_str();
    let get = |query: &str| {
        let url = s.service.at(&format!("/flights?{query}"));
        Call {
            method: Method::GET,
            proof: Some(proof(&s.agent, "GET", &url, Some(token))),
            url,
            token: Some(token),
            body: None,
        }
        .send(&s.client)
    };
    get("to=NYC&from=LAX")
        .await
        .assert_refused("params_mismatch");
    get("to=NYC&from=SFO&to=LAX")
        .await
        .assert_refused(ErrorCode::InvalidParams.as_str());
    assert_eq!(s.service.seen.runs(), 0);

    let answer = get("to=NYC&from=SFO").await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    let (claims, _) = s.service.seen.last().unwrap();
    assert_eq!(claims.action, SEARCH);
    assert_eq!(s.service.seen.runs(), 1);
}

#[tokio::test]
async fn the_extractor_without_the_layer_refuses_to_run_the_handler() {
    let s = setup().await;
    let answer = s
        .client
        .post(s.service.at("/unguarded"))
        .body(FLIGHT)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(s.service.seen.runs(), 0);
}

#[tokio::test]
async fn an_unreachable_replay_store_gives_503_and_the_handler_does_not_run() {
    let gateway = SigningKey::generate().unwrap();
    let agent = SigningKey::generate().unwrap();
    let service = spawn_service(&gateway, |b| b.replay_store(Arc::new(DownStore))).await;
    let token = mint(&gateway, &claims(&agent, BOOK, FLIGHT));
    let answer = post_approved(&client(), &service.at("/bookings"), &token, &agent, FLIGHT).await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE, "{answer:?}");
    assert_eq!(
        answer.json()["error"],
        ErrorCode::ReplayStoreUnavailable.as_str()
    );
    assert!(answer.headers.contains_key("retry-after"));
    assert!(
        !answer.body.contains("connection refused"),
        "no internals in a 5xx body"
    );
    assert_eq!(service.seen.runs(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_concurrent_presentations_of_one_token_succeed_once() {
    let s = Arc::new(setup().await);
    let token = Arc::new(s.token(BOOK, FLIGHT));
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let (s, token) = (s.clone(), token.clone());
            // Each presentation carries its own valid proof.
            let proof = proof(&s.agent, "POST", &s.bookings(), Some(&token));
            tokio::spawn(async move {
                Call {
                    method: Method::POST,
                    url: s.bookings(),
                    token: Some(&token),
                    proof: Some(proof),
                    body: Some(FLIGHT.into()),
                }
                .send(&s.client)
                .await
            })
        })
        .collect();
    let mut accepted = 0;
    for task in tasks {
        let answer = task.await.unwrap();
        match answer.status {
            StatusCode::OK => accepted += 1,
            _ => answer.assert_refused(ErrorCode::TokenReplayed.as_str()),
        }
    }
    assert_eq!(accepted, 1);
    assert_eq!(s.service.seen.runs(), 1);
}

#[tokio::test]
async fn metrics_count_the_accepted_token_and_the_replay_by_code() {
    let gateway = SigningKey::generate().unwrap();
    let agent = SigningKey::generate().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let verifier = verifier_builder(&url, &gateway).build().unwrap();
    let service = serve(listener, url, &verifier);
    let client = client();
    assert_eq!(verifier.metrics().accepted, 0);
    assert_eq!(verifier.metrics().refused_total(), 0);

    let token = mint(&gateway, &claims(&agent, BOOK, FLIGHT));
    let bookings = service.at("/bookings");
    let answer = post_approved(&client, &bookings, &token, &agent, FLIGHT).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    post_approved(&client, &bookings, &token, &agent, FLIGHT)
        .await
        .assert_refused(ErrorCode::TokenReplayed.as_str());

    // Counted before the answer is sent: no waiting.
    let metrics = verifier.metrics();
    assert_eq!(metrics.accepted, 1);
    assert_eq!(metrics.refused(ErrorCode::TokenReplayed.as_str()), 1);
    assert_eq!(metrics.refused_total(), 1, "{metrics:?}");

    let text = metrics.to_prometheus();
    let mut family = None;
    let mut samples = Vec::new();
    for line in text.lines() {
        if let Some(declared) = line.strip_prefix("# TYPE ") {
            let (name, kind) = declared.split_once(' ').unwrap();
            assert_eq!(kind, "counter", "{line}");
            family = Some(name.to_owned());
        } else if !line.starts_with("# HELP ") {
            // name{code="..."} value, of the family last declared.
            let (series, value) = line.rsplit_once(' ').unwrap();
            let value: u64 = value.parse().unwrap_or_else(|_| panic!("{line}"));
            let name = series.split('{').next().unwrap();
            assert_eq!(Some(name), family.as_deref(), "{line}");
            if let Some(labels) = series.strip_prefix(name).filter(|l| !l.is_empty()) {
                let code = labels
                    .strip_prefix("{code=\"")
                    .and_then(|l| l.strip_suffix("\"}"))
                    .unwrap_or_else(|| panic!("{line}"));
                assert!(handsign_verify::metrics::REFUSAL_CODES.contains(&code));
            }
            samples.push((series.to_owned(), value));
        }
    }
    assert!(samples.contains(&("handsign_verify_tokens_accepted_total".into(), 1)));
    assert!(samples.contains(&(
        "handsign_verify_requests_refused_total{code=\"token_replayed\"}".into(),
        1
    )));
    assert_eq!(samples.iter().map(|(_, v)| v).sum::<u64>(), 2, "{text}");
}

/// A clock the test sets, starting at `start`.
fn settable_clock(start: i64) -> (Arc<AtomicI64>, Clock) {
    let time = Arc::new(AtomicI64::new(start));
    let clock = {
        let time = time.clone();
        Clock::from_fn(move || time.load(Ordering::SeqCst))
    };
    (time, clock)
}

/// A service started at `clock`'s now with the builder's default replay store (in memory).
async fn start_with_default_store(gateway: &SigningKey, clock: &Clock) -> Service {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let verifier = Verifier::builder()
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .public_url(&url)
        .keys(Keys::fixed(KeySet::from_signing_keys([gateway])))
        .clock(clock.clone())
        .build()
        .unwrap();
    serve(listener, url, &verifier)
}

/// Claims minted at `iat` (the gateway's clock), good for 30 s.
fn claims_at(agent: &SigningKey, iat: i64) -> ApprovalClaims {
    let mut claims = claims(agent, BOOK, FLIGHT);
    (claims.iat, claims.nbf, claims.exp) = (iat, iat, iat + 30);
    claims
}

/// `POST /bookings` with `token` and a proof made at `iat`.
async fn book_at(service: &Service, agent: &SigningKey, token: &str, iat: i64) -> Answer {
    let url = service.at("/bookings");
    Call {
        method: Method::POST,
        url: url.clone(),
        token: Some(token),
        proof: Some(dpop::create(agent, "POST", &url, iat, Some(token)).unwrap()),
        body: Some(FLIGHT.into()),
    }
    .send(&client())
    .await
}

#[tokio::test]
async fn a_token_accepted_before_a_restart_is_refused_after_it() {
    let gateway = SigningKey::generate().unwrap();
    let agent = SigningKey::generate().unwrap();
    let t0 = now();
    let (time, clock) = settable_clock(t0 - 100);
    let before = start_with_default_store(&gateway, &clock).await;

    // 100 s after the start, a token is accepted and its use recorded in memory.
    time.store(t0, Ordering::SeqCst);
    let token = mint(&gateway, &claims_at(&agent, t0));
    let answer = book_at(&before, &agent, &token, t0).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert_eq!(before.seen.runs(), 1);

    // The service restarts a second later, with an empty memory: the token, still within its
    // 30 seconds, is refused for what it is, not accepted a second time.
    drop(before);
    time.store(t0 + 1, Ordering::SeqCst);
    let after = start_with_default_store(&gateway, &clock).await;
    let answer = book_at(&after, &agent, &token, t0 + 1).await;
    answer.assert_refused(ErrorCode::IssuedBeforeStart.as_str());
    assert!(
        answer.json()["message"]
            .as_str()
            .unwrap()
            .contains("new approval")
    );

    // A token minted after the start is refused while the gateway's clock may be up to the
    // skew (5 s) ahead of the service's, so that the old process could have accepted it...
    time.store(t0 + 6, Ordering::SeqCst);
    let token = mint(&gateway, &claims_at(&agent, t0 + 6));
    book_at(&after, &agent, &token, t0 + 6)
        .await
        .assert_refused(ErrorCode::IssuedBeforeStart.as_str());
    // ...and accepted from the next second on.
    time.store(t0 + 7, Ordering::SeqCst);
    let token = mint(&gateway, &claims_at(&agent, t0 + 7));
    let answer = book_at(&after, &agent, &token, t0 + 7).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert_eq!(after.seen.runs(), 1);
}

#[tokio::test]
async fn a_captured_token_and_proof_pair_is_refused_as_a_replayed_proof() {
    let s = setup().await;
    let token = s.token(BOOK, FLIGHT);
    let captured = proof(&s.agent, "POST", &s.bookings(), Some(&token));
    let send = || Call {
        method: Method::POST,
        url: s.bookings(),
        token: Some(&token),
        proof: Some(captured.clone()),
        body: Some(FLIGHT.into()),
    };
    assert_eq!(send().send(&s.client).await.status, StatusCode::OK);
    send()
        .send(&s.client)
        .await
        .assert_refused(ErrorCode::DpopReplayed.as_str());
    assert_eq!(s.service.seen.runs(), 1);
}

#[tokio::test]
async fn a_body_not_sent_as_json_is_refused_before_the_token_is_used() {
    let s = setup().await;
    let token = s.token(BOOK, FLIGHT);
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("application/jsonx"),
        None,
    ] {
        let mut request = s
            .client
            .post(s.bookings())
            .header("authorization", format!("Approval {token}"))
            .header("dpop", proof(&s.agent, "POST", &s.bookings(), Some(&token)))
            .body(FLIGHT);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let answer = request.send().await.unwrap();
        assert_eq!(answer.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        let body: serde_json::Value = answer.json().await.unwrap();
        assert_eq!(
            body["error"],
            ErrorCode::UnsupportedMediaType.as_str(),
            "{content_type:?}"
        );
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("application/json")
        );
    }
    assert_eq!(s.service.seen.runs(), 0);

    // The token is still unused: the same request sent as JSON goes through. Any JSON media
    // type will do.
    let answer = s
        .client
        .post(s.bookings())
        .header("authorization", format!("Approval {token}"))
        .header("dpop", proof(&s.agent, "POST", &s.bookings(), Some(&token)))
        .header(
            "content-type",
            "Application/Merge-Patch+JSON; charset=utf-8",
        )
        .body(FLIGHT)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(s.service.seen.runs(), 1);
}

#[tokio::test]
async fn a_body_the_handler_cannot_read_is_refused_before_the_token_is_used() {
    let s = setup().await;
    let no_seats = r#"{"from": "SFO", "to": "NYC", "date": "2026-12-01"}"#;
    let token = s.token(BOOK, no_seats);
    let typed = s.service.at("/typed");
    let answer = post_approved(&s.client, &typed, &token, &s.agent, no_seats).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{answer:?}");
    assert_eq!(answer.json()["error"], ErrorCode::InvalidBody.as_str());
    assert!(
        answer.json()["message"]
            .as_str()
            .unwrap()
            .contains("missing field `seats`"),
        "{answer:?}"
    );
    assert_eq!(s.service.seen.runs(), 0);
    // Unused: a route that reads any JSON accepts it.
    assert_eq!(s.book(&token, no_seats).await.status, StatusCode::OK);

    let token = s.token(BOOK, FLIGHT);
    let answer = post_approved(&s.client, &typed, &token, &s.agent, FLIGHT).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
}
