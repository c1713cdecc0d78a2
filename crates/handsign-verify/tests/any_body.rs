//! The layer outside axum: a request whose body is not axum's (a stream of frames, as hyper's
//! `Incoming` is), guarding a plain tower service that is not an axum handler.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::convert::Infallible;

use axum::http::{Request, Response, StatusCode};
use bytes::Bytes;
use common::{BOOK, FLIGHT, claims, mint, proof, verifier_builder};
use handsign_protocol::keys::SigningKey;
use handsign_protocol::token::ApprovalClaims;
use http_body::Frame;
use http_body_util::{BodyExt as _, Full, StreamBody};
use tower::{ServiceBuilder, ServiceExt as _};

const URL: &str = "http://127.0.0.1:1";

/// A request for `/bookings` carrying `token` and a fresh proof, its body [`FLIGHT`] sent in
/// two frames.
fn request(
    agent: &SigningKey,
    token: &str,
) -> Request<StreamBody<impl futures_util::Stream<Item = Result<Frame<Bytes>, Infallible>> + use<>>>
{
    let (first, second) = FLIGHT.split_at(10);
    let frames = [first, second].map(|part| Ok(Frame::data(Bytes::from(part))));
    Request::post("/bookings")
        .header("content-type", "application/json")
        .header("authorization", format!("Approval {token}"))
        .header(
            "dpop",
            proof(agent, "POST", &format!("{URL}/bookings"), Some(token)),
        )
        .body(StreamBody::new(futures_util::stream::iter(frames)))
        .unwrap()
}

#[tokio::test]
async fn a_streamed_body_reaches_a_plain_tower_service_once() {
    let gateway = SigningKey::generate().unwrap();
    let agent = SigningKey::generate().unwrap();
    let verifier = verifier_builder(URL, &gateway).build().unwrap();
    // Answers with the body it was given and the approval it ran under.
    let echo = tower::service_fn(|request: Request<Full<Bytes>>| async move {
        let approval = request
            .extensions()
            .get::<ApprovalClaims>()
            .map(|claims| claims.approval.clone())
            .unwrap_or_default();
        let body = request.into_body().collect().await.unwrap().to_bytes();
        let text = format!("{approval} {}", String::from_utf8_lossy(&body));
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(text))))
    });
    let service = ServiceBuilder::new()
        .layer(verifier.require(BOOK).unwrap())
        .service(echo);
    let token = mint(&gateway, &claims(&agent, BOOK, FLIGHT));

    let answer = service
        .clone()
        .oneshot(request(&agent, &token))
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    let body = answer.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, format!("apr_test {FLIGHT}").as_bytes());

    let again = service.oneshot(request(&agent, &token)).await.unwrap();
    assert_eq!(again.status(), StatusCode::UNAUTHORIZED);
    let body = again.into_body().collect().await.unwrap().to_bytes();
    let refusal: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(refusal["error"], "token_replayed");
}
