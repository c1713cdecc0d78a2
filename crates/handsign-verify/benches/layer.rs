//! What the approval layer adds to a request, in one run:
//!
//! - the same axum route unguarded, and guarded by the layer with the in-memory replay store and
//!   (when `redis-server` is installed) with the Redis replay store;
//! - the floor: bare token verification plus the params hash (`token::verify` after
//!   `CanonicalParams::parse`, as in the protocol benchmark), and that floor plus the DPoP
//!   proof's verification, which every key-bound token also needs.
//!
//! Requests go through the router in process (`tower::ServiceExt::oneshot`), so the figures are
//! the layer's own cost without a network. Tokens and proofs are made before timing. Rounds of
//! each variant are interleaved so that all see the same machine load.
//!
//! Run with `cargo bench -p handsign-verify --features redis --bench layer`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{Request, StatusCode};
use axum::routing::post;
use handsign_protocol::canonical::Limits;
use handsign_protocol::dpop;
use handsign_protocol::keys::{KeySet, SigningKey};
use handsign_protocol::params::CanonicalParams;
use handsign_protocol::token::{self, Actor, ApprovalClaims, Confirmation, Expected};
use handsign_redis_harness::RedisServer;
use handsign_verify::{Keys, MemoryReplayStore, RedisReplayStore, ReplayStore, Verifier};
use serde_json::json;
use tower::ServiceExt as _;

const PER_ROUND: usize = 500;
const ROUNDS: usize = 6;
const ISSUER: &str = "https://gateway.example";
const AUDIENCE: &str = "https://travel.example";
const SERVICE: &str = "https://travel.example";

pub(crate) struct Presentation {
    token: String,
    proof: String,
}

pub(crate) fn body() -> Bytes {
    let passengers: Vec<_> = (0..16)
        .map(|i| json!({"name": format!("Passenger {i}"), "seat": format!("{}C", 10 + i), "meal": null}))
        .collect();
    Bytes::from(
        serde_json::to_vec(&json!({
            "from": "SFO", "to": "NYC", "date": "2026-12-01", "fare": 412.3,
            "currency": "USD", "passengers": passengers, "notes": "Window seats if possible, thank you.",
            "loyalty": {"program": "SkyMiles", "number": "0042 1234 5678", "tier": "gold"},
        }))
        .unwrap(),
    )
}

pub(crate) fn presentations(
    gateway: &SigningKey,
    agent: &SigningKey,
    body: &Bytes,
    n: usize,
) -> Vec<Presentation> {
    let now = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap();
    let hash = CanonicalParams::parse(body, &Limits::default())
        .unwrap()
        .hash();
    (0..n)
        .map(|i| {
            let claims = ApprovalClaims {
                iss: ISSUER.into(),
                sub: "alice".into(),
                aud: AUDIENCE.into(),
                act: Actor {
                    sub: agent.kid().into(),
                },
                action: "flights.book".into(),
                params_sha256: hash.clone(),
                approval: format!("apr_{i}"),
                jti: random_jti(),
                iat: now,
                nbf: now,
                exp: now + 30,
                cnf: Some(Confirmation {
                    jkt: agent.kid().into(),
                }),
            };
            let token = token::mint(gateway, &claims).unwrap();
            let proof = dpop::create(
                agent,
                "POST",
                &format!("{SERVICE}/bookings"),
                now,
                Some(&token),
            )
            .unwrap();
            Presentation { token, proof }
        })
        .collect()
}

/// A fresh token id: every presentation in the run must be a first use.
pub(crate) fn random_jti() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).unwrap();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn request(presentation: Option<&Presentation>, body: &Bytes) -> Request<Body> {
    let mut builder = Request::post("/bookings").header("content-type", "application/json");
    if let Some(p) = presentation {
        builder = builder
            .header("authorization", format!("Approval {}", p.token))
            .header("dpop", &p.proof);
    }
    builder.body(Body::from(body.clone())).unwrap()
}

pub(crate) fn guarded(gateway: &SigningKey, replay: Arc<dyn ReplayStore>) -> Router {
    let verifier = Verifier::builder()
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .public_url(SERVICE)
        .keys(Keys::fixed(KeySet::from_signing_keys([gateway])))
        .replay_store(replay)
        .build()
        .unwrap();
    Router::new().route(
        "/bookings",
        post(handler).layer(verifier.require("flights.book").unwrap()),
    )
}

async fn handler(body: Bytes) -> StatusCode {
    std::hint::black_box(body);
    StatusCode::CREATED
}

/// Time per request through `router` for `presentations` (each used once).
pub(crate) async fn through(
    router: &Router,
    presentations: &[Presentation],
    body: &Bytes,
) -> Duration {
    let started = Instant::now();
    for p in presentations {
        let response = router
            .clone()
            .oneshot(request(Some(p), body))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
    }
    started.elapsed() / u32::try_from(presentations.len()).unwrap()
}

async fn unguarded_once(router: &Router, n: usize, body: &Bytes) -> Duration {
    let started = Instant::now();
    for _ in 0..n {
        let response = router.clone().oneshot(request(None, body)).await.unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
    }
    started.elapsed() / u32::try_from(n).unwrap()
}

fn floor(presentations: &[Presentation], keys: &KeySet, body: &Bytes, with_dpop: bool) -> Duration {
    let started = Instant::now();
    for p in presentations {
        let hash = CanonicalParams::parse(body, &Limits::default())
            .unwrap()
            .hash();
        let expected = Expected {
            issuer: ISSUER,
            audience: AUDIENCE,
            action: "flights.book",
            params_sha256: &hash,
            now: i64::try_from(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs(),
            )
            .unwrap(),
            skew: 5,
        };
        std::hint::black_box(token::verify(&p.token, keys, &expected).unwrap());
        if with_dpop {
            let proof = dpop::Expected {
                method: "POST",
                url: &format!("{SERVICE}/bookings"),
                now: expected.now,
                access_token: Some(&p.token),
            };
            std::hint::black_box(dpop::verify(&p.proof, &proof).unwrap());
        }
    }
    started.elapsed() / u32::try_from(presentations.len()).unwrap()
}

/// The Redis replay store on `redis`, which already answers (the harness waits for it).
async fn redis_store(redis: &RedisServer) -> Arc<dyn ReplayStore> {
    let connection = redis::aio::ConnectionManager::new(redis.client())
        .await
        .unwrap();
    Arc::new(RedisReplayStore::new(connection))
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let gateway = SigningKey::from_seed(&[1; 32]);
    let agent = SigningKey::from_seed(&[2; 32]);
    let keys = KeySet::from_signing_keys([&gateway]);
    let body = body();
    // The bench's gateway key is its own: no earlier process accepted its tokens, so the
    // memory store's record may begin at 0 and tokens minted right away are accepted.
    let memory = guarded(
        &gateway,
        Arc::new(MemoryReplayStore::new().record_began_at(0)),
    );
    // A throwaway redis-server on a free port, stopped on drop; skipped when not installed.
    let redis = if RedisServer::installed() {
        Some(RedisServer::start().await)
    } else {
        None
    };
    let redis_router = match &redis {
        Some(redis) => Some(guarded(&gateway, redis_store(redis).await)),
        None => None,
    };
    let unguarded = Router::new().route("/bookings", post(handler));

    let mut totals = [Duration::ZERO; 5];
    for _ in 0..ROUNDS {
        let batch = presentations(&gateway, &agent, &body, PER_ROUND);
        totals[0] += unguarded_once(&unguarded, PER_ROUND, &body).await;
        totals[1] += floor(&batch, &keys, &body, false);
        totals[2] += floor(&batch, &keys, &body, true);
        totals[3] += through(&memory, &batch, &body).await;
        if let Some(router) = &redis_router {
            let batch = presentations(&gateway, &agent, &body, PER_ROUND);
            totals[4] += through(router, &batch, &body).await;
        }
    }
    let us = |d: Duration| d.as_secs_f64() * 1e6 / ROUNDS as f64;
    let (plain, floor_token, floor_dpop, memory) =
        (us(totals[0]), us(totals[1]), us(totals[2]), us(totals[3]));
    println!(
        "approval layer, {} requests per variant, {}-byte JSON body, in process",
        PER_ROUND * ROUNDS,
        body.len()
    );
    println!(
        "unguarded route:                                  {plain:8.1} us/request ({:.0}/s)",
        1e6 / plain
    );
    println!("floor, token verification + params hash:          {floor_token:8.1} us");
    println!("floor + DPoP proof verification:                  {floor_dpop:8.1} us");
    println!(
        "guarded, in-memory replay store:                  {memory:8.1} us/request ({:.0}/s); added {:.1} us = {:.2}x the token floor, {:.2}x the floor with DPoP",
        1e6 / memory,
        memory - plain,
        (memory - plain) / floor_token,
        (memory - plain) / floor_dpop
    );
    match redis_router {
        Some(_) => {
            let redis = us(totals[4]);
            println!(
                "guarded, Redis replay store (loopback):           {redis:8.1} us/request ({:.0}/s); added {:.1} us = {:.2}x the floor with DPoP",
                1e6 / redis,
                redis - plain,
                (redis - plain) / floor_dpop
            );
        }
        None => {
            println!("guarded, Redis replay store: not measured (redis-server is not installed)")
        }
    }
}
