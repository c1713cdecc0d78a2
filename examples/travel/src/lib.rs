//! The travel example: a flight-booking service whose `POST /bookings` runs only with a person's
//! approval of exactly that booking, once, and the steps an agent takes to get and use one.
//!
//! The service is an ordinary axum route with one layer in front of it; the agent uses the
//! Handsign SDK to ask, wait, and attach the token and its DPoP proof to the booking request.

use std::sync::Arc;

use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use handsign_client::{ApprovalError, ApprovalRequest, Client, PendingApproval};
use handsign_verify::{Approved, BuildError, Clock, Keys, ReplayStore, Verifier};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The action a person approves before a booking is made.
pub const ACTION: &str = "flights.book";

/// A booking request: the JSON body of `POST /bookings`, and the params the person approves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Booking {
    pub from: String,
    pub to: String,
    pub date: String,
    pub passenger: String,
}

/// Where the service gets its trust from.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// The Handsign gateway's URL: the token issuer, serving its keys at
    /// `/.well-known/jwks.json`.
    pub gateway: String,
    /// This service's audience, as agents name it when they ask.
    pub audience: String,
    /// The URL agents call this service at (the DPoP proofs name it).
    pub public_url: String,
    /// The time the token checks read: the system clock, or a test's (give the replay store
    /// the same).
    pub clock: Clock,
}

/// The service's routes: `POST /bookings`, guarded by the approval layer.
pub fn service(config: &ServiceConfig, replay: Arc<dyn ReplayStore>) -> Result<Router, BuildError> {
    let gateway = config.gateway.trim_end_matches('/');
    let verifier = Verifier::builder()
        .issuer(gateway)
        .audience(config.audience.clone())
        .public_url(config.public_url.clone())
        .keys(Keys::jwks_url(format!("{gateway}/.well-known/jwks.json")))
        .replay_store(replay)
        .clock(config.clock.clone())
        .build()?;
    // The body is checked as a Booking before the token is used, so a body `book` would
    // refuse does not use up the approval.
    let layer = verifier.require(ACTION)?.body_parses_as::<Booking>();
    Ok(Router::new().route("/bookings", post(book).layer(layer)))
}

/// Books the flight. It runs only after the layer has checked the approval against these exact
/// body bytes and consumed the token.
async fn book(
    Approved(claims): Approved,
    Json(booking): Json<Booking>,
) -> (StatusCode, Json<Value>) {
    let reference = uuid::Uuid::new_v4().simple().to_string();
    (
        StatusCode::CREATED,
        Json(json!({
            "booking": reference.get(..8).unwrap_or(&reference).to_uppercase(),
            "from": booking.from,
            "to": booking.to,
            "date": booking.date,
            "passenger": booking.passenger,
            "approved_by": claims.sub,
            "approval": claims.approval,
        })),
    )
}

/// The agent's first step: ask the person to approve `booking` for the service `audience`.
pub async fn ask(
    client: &Client,
    audience: &str,
    booking: &Booking,
) -> Result<PendingApproval, ApprovalError> {
    let params = serde_json::to_value(booking).unwrap_or(Value::Null);
    let request = ApprovalRequest::new(ACTION, params, audience).message(format!(
        "Book {} from {} to {} on {}",
        booking.passenger, booking.from, booking.to, booking.date
    ));
    client.request_approval(request).await
}

/// The agent's last step: `POST {service}/bookings` with `booking` as the body and the token and
/// a DPoP proof attached. Returns the service's status and JSON answer.
pub async fn call_service(
    client: &Client,
    service: &str,
    token: &str,
    booking: &Booking,
) -> anyhow::Result<(StatusCode, Value)> {
    // Creating the SDK's `Client` installed the TLS provider this client uses.
    let http = reqwest::Client::new();
    let mut request = http
        .post(format!("{}/bookings", service.trim_end_matches('/')))
        .json(booking)
        .build()?;
    client.authorize(&mut request, token)?;
    let response = http.execute(request).await?;
    let status = StatusCode::from_u16(response.status().as_u16())?;
    let answer = response.json().await.unwrap_or(Value::Null);
    Ok((status, answer))
}
