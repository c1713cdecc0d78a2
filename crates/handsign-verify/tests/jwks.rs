//! Keys from the gateway's JWKS: fetched on demand, refreshed when the gateway rotates keys,
//! never more than once per interval however many made-up `kid`s arrive, and a key source that
//! cannot be reached fails closed with `503`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use common::*;
use futures_util::future::join_all;
use handsign_protocol::keys::{Jwks, SigningKey};
use handsign_verify::{ErrorCode, Keys};
use tokio::net::TcpListener;

/// A stand-in for the gateway's `/.well-known/jwks.json` whose contents the test changes, and
/// that counts how often it is fetched.
struct JwksServer {
    url: String,
    jwks: Arc<Mutex<Jwks>>,
    fetches: Arc<AtomicUsize>,
    failing: Arc<AtomicBool>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl JwksServer {
    async fn start(keys: &[&SigningKey]) -> Self {
        let jwks = Arc::new(Mutex::new(Jwks::from_signing_keys(keys.iter().copied())));
        let fetches = Arc::new(AtomicUsize::new(0));
        let failing = Arc::new(AtomicBool::new(false));
        let app = Router::new().route(
            "/.well-known/jwks.json",
            get({
                let (jwks, fetches, failing) = (jwks.clone(), fetches.clone(), failing.clone());
                move || async move {
                    fetches.fetch_add(1, Ordering::SeqCst);
                    if failing.load(Ordering::SeqCst) {
                        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
                    }
                    let jwks = jwks.lock().unwrap().clone();
                    axum::Json(jwks).into_response()
                }
            }),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/.well-known/jwks.json",
            listener.local_addr().unwrap()
        );
        let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        JwksServer {
            url,
            jwks,
            fetches,
            failing,
            server,
        }
    }

    fn serve(&self, keys: &[&SigningKey]) {
        *self.jwks.lock().unwrap() = Jwks::from_signing_keys(keys.iter().copied());
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

async fn book(service: &Service, gateway: &SigningKey, agent: &SigningKey) -> Answer {
    let token = mint(gateway, &claims(agent, BOOK, FLIGHT));
    post_approved(&client(), &service.at("/bookings"), &token, agent, FLIGHT).await
}

#[tokio::test]
async fn an_unreachable_jwks_url_gives_503_and_the_handler_does_not_run() {
    let gateway = SigningKey::generate().unwrap();
    let agent = SigningKey::generate().unwrap();
    // A port that was free a moment ago: nothing listens there.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let service = spawn_service(&gateway, |b| {
        b.keys(Keys::jwks_url(format!(
            "http://{closed}/.well-known/jwks.json"
        )))
    })
    .await;

    let answer = book(&service, &gateway, &agent).await;

    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE, "{answer:?}");
    assert_eq!(answer.json()["error"], ErrorCode::KeysUnavailable.as_str());
    let retry_after: u64 = answer.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=30).contains(&retry_after), "{retry_after}");
    assert_eq!(service.seen.runs(), 0);
}

#[tokio::test]
async fn keys_are_fetched_again_when_the_gateway_rotates() {
    let (old, new) = (
        SigningKey::generate().unwrap(),
        SigningKey::generate().unwrap(),
    );
    let agent = SigningKey::generate().unwrap();
    let jwks = JwksServer::start(&[&old]).await;
    let service = spawn_service(&old, |b| {
        b.keys(Keys::jwks_url(&jwks.url))
            .jwks_refresh_interval(Duration::ZERO)
    })
    .await;

    assert_eq!(book(&service, &old, &agent).await.status, StatusCode::OK);
    assert_eq!(book(&service, &old, &agent).await.status, StatusCode::OK);
    assert_eq!(jwks.fetches(), 1, "known keys are served from the cache");

    // The gateway starts signing with a new key and keeps the old one listed.
    jwks.serve(&[&new, &old]);
    let answer = book(&service, &new, &agent).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert_eq!(jwks.fetches(), 2);
    assert_eq!(book(&service, &old, &agent).await.status, StatusCode::OK);
    assert_eq!(jwks.fetches(), 2);
    assert_eq!(service.seen.runs(), 4);
}

#[tokio::test]
async fn a_flood_of_unknown_kids_fetches_the_jwks_at_most_once_per_interval() {
    let (gateway, rotated) = (
        SigningKey::generate().unwrap(),
        SigningKey::generate().unwrap(),
    );
    let agent = SigningKey::generate().unwrap();
    let jwks = JwksServer::start(&[&gateway]).await;
    // The default interval, 30 s.
    let service = spawn_service(&gateway, |b| b.keys(Keys::jwks_url(&jwks.url))).await;

    // 100 tokens at once, each signed by a key of its own: 100 random unknown kids.
    let client = client();
    let url = service.at("/bookings");
    let answers = join_all((0..100).map(|_| {
        let stranger = SigningKey::generate().unwrap();
        let token = mint(&stranger, &claims(&agent, BOOK, FLIGHT));
        let (client, url, agent) = (&client, &url, &agent);
        async move { post_approved(client, url, &token, agent, FLIGHT).await }
    }))
    .await;
    for answer in &answers {
        answer.assert_refused("unknown_kid");
    }
    let fetches = jwks.fetches();
    assert!(
        (1..=2).contains(&fetches),
        "{fetches} fetches for 100 unknown kids"
    );

    // The keys fetched then serve the real gateway's tokens without another fetch.
    assert_eq!(
        book(&service, &gateway, &agent).await.status,
        StatusCode::OK
    );
    // Within the interval even a genuinely new key waits for the next allowed fetch.
    jwks.serve(&[&rotated, &gateway]);
    book(&service, &rotated, &agent)
        .await
        .assert_refused("unknown_kid");
    assert_eq!(jwks.fetches(), fetches);
    assert_eq!(service.seen.runs(), 1);
}

#[tokio::test]
async fn a_failed_refresh_keeps_the_known_keys_but_fails_closed_on_an_unknown_kid() {
    let (gateway, rotated) = (
        SigningKey::generate().unwrap(),
        SigningKey::generate().unwrap(),
    );
    let agent = SigningKey::generate().unwrap();
    let jwks = JwksServer::start(&[&gateway]).await;
    // Every request finds the cache stale and may fetch.
    let service = spawn_service(&gateway, |b| {
        b.keys(Keys::jwks_url(&jwks.url))
            .jwks_refresh_interval(Duration::ZERO)
            .jwks_max_age(Duration::ZERO)
    })
    .await;
    assert_eq!(
        book(&service, &gateway, &agent).await.status,
        StatusCode::OK
    );

    jwks.failing.store(true, Ordering::SeqCst);
    let answer = book(&service, &gateway, &agent).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    let answer = book(&service, &rotated, &agent).await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE, "{answer:?}");
    assert_eq!(answer.json()["error"], ErrorCode::KeysUnavailable.as_str());
    assert_eq!(service.seen.runs(), 2);

    // The gateway is back, with the rotated key.
    jwks.failing.store(false, Ordering::SeqCst);
    jwks.serve(&[&rotated, &gateway]);
    assert_eq!(
        book(&service, &rotated, &agent).await.status,
        StatusCode::OK
    );
    assert_eq!(service.seen.runs(), 3);
}
