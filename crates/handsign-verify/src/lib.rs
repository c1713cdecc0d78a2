//! The Handsign service middleware: a route's handler runs only for a request that carries a
//! person's approval of exactly this action with exactly these params, presented once, by the
//! agent the approval was issued to.
//!
//! The agent sends `Authorization: Approval <token>` (a 30-second EdDSA JWT from the Handsign
//! gateway) and, for a token bound to its key (`cnf.jkt`), a `DPoP` proof for this method and
//! URL naming the token. For every request the [`ApprovalLayer`] checks the token's signature
//! against the gateway's keys, its issuer, audience, time window, action, and the SHA-256 of the
//! request's own params in RFC 8785 form; the DPoP proof; and then consumes the proof's and the
//! token's `jti` in a [`ReplayStore`]. Only then does the handler run, and the [`Approved`]
//! extractor gives it the verified claims. Every refusal of the token is a `401` with
//! `WWW-Authenticate: Approval error="<code>", error_description="<message>"` (see [`ErrorCode`]);
//! a body the route cannot read (not JSON, too large) is refused before the token is used; a
//! replay store or key source that cannot be reached gives `503`, never an unchecked request.
//!
//! The default [`MemoryReplayStore`] lives and dies with the process, so it refuses every token
//! issued before the process started (`issued_before_start`): after a restart it cannot know
//! whether such a token was used. Use a `RedisReplayStore` (feature `redis`) when several
//! instances serve one audience, or when a restart must not refuse the tokens still valid.
//!
//! ```no_run
//! use std::sync::Arc;
//!
//! use axum::{Router, body::Bytes, routing::post};
//! use handsign_verify::{Approved, Keys, MemoryReplayStore, Verifier};
//!
//! /// Runs only with an approval of `flights.book` for exactly this body, once.
//! async fn book(Approved(claims): Approved, body: Bytes) -> String {
//!     format!(
//!         "{} approved agent {} to book {}",
//!         claims.sub,
//!         claims.act.sub,
//!         String::from_utf8_lossy(&body)
//!     )
//! }
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let verifier = Verifier::builder()
//!         .issuer("https://handsign.example")
//!         .audience("https://travel.example")
//!         .public_url("https://travel.example")
//!         .keys(Keys::jwks_url("https://handsign.example/.well-known/jwks.json"))
//!         // One process, refusing tokens issued before it started; several instances share
//!         // a RedisReplayStore (feature `redis`).
//!         .replay_store(Arc::new(MemoryReplayStore::new()))
//!         .build()?;
//!
//!     let app = Router::new()
//!         // Params: the JSON body.
//!         .route("/bookings", post(book).layer(verifier.require("flights.book")?))
//!         // Params: the query string, as a JSON object of strings.
//!         .route(
//!             "/refunds",
//!             post(|Approved(claims): Approved| async move { claims.approval }).layer(
//!                 verifier.require("flights.refund")?.params_from(|parts, _body| {
//!                     let query = parts.uri.query().unwrap_or_default();
//!                     let params: serde_json::Map<String, serde_json::Value> = url::form_urlencoded::parse(query.as_bytes())
//!                         .map(|(k, v)| (k.into_owned(), v.into_owned().into()))
//!                         .collect();
//!                     Ok(serde_json::Value::Object(params))
//!                 }),
//!             ),
//!         );
//!
//!     let listener = tokio::net::TcpListener::bind("0.0.0.0:8080").await?;
//!     axum::serve(listener, app).await?;
//!     Ok(())
//! }
//! ```
//!
//! A query-string extractor like the one above must refuse a key given twice if the handler
//! reads the query differently (a map keeps one value); what `params_from` returns is what the
//! person approved, so the handler must act on exactly that.
//!
//! A service that is not an HTTP route (a tool gate, a hook) checks a token with
//! [`Verifier::verify_token`]: the same checks, the same codes, the same replay record.
//!
//! # Metrics
//!
//! Tokens are consumed here, in the service, not at the gateway: [`Verifier::metrics`] counts
//! the requests the verifier's layers and `verify_token` let through (`accepted`, each
//! consuming a token) and the ones they refused, by the `error` code of the answer (every code in
//! [`metrics::REFUSAL_CODES`]; a code this version does not know counts as `other`). Counting is
//! one atomic add per request, with no lock. [`VerifierMetrics::to_prometheus`] renders the
//! counts in the Prometheus text format, as `handsign_verify_tokens_accepted_total` and
//! `handsign_verify_requests_refused_total{code="..."}`, for the service to serve on its own
//! `/metrics` (the labels are fixed codes: no user, agent or params):
//!
//! ```no_run
//! use axum::{Router, http::header, routing::get};
//! use handsign_verify::{Verifier, metrics};
//!
//! fn metrics_route(verifier: Verifier) -> Router {
//!     Router::new().route(
//!         "/metrics",
//!         get(move || async move {
//!             let text = verifier.metrics().to_prometheus();
//!             ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], text)
//!         }),
//!     )
//! }
//! ```
//!
//! A service that uses a Prometheus client library already can read the fields of
//! [`VerifierMetrics`] in its own collector instead.

mod check;
mod clock;
mod config;
mod direct;
mod extract;
mod key_source;
mod layer;
pub mod metrics;
#[cfg(feature = "redis")]
mod redis_store;
mod refusal;
mod replay;
#[cfg(feature = "redis")]
pub mod replicas;

pub use check::{is_json, media_type};
pub use clock::{Clock, Deadline, TestClock};
pub use config::{
    BuildError, DEFAULT_BODY_LIMIT, DEFAULT_CLOCK_SKEW, DEFAULT_JWKS_MAX_AGE,
    DEFAULT_JWKS_REFRESH_INTERVAL, Keys, Verifier, VerifierBuilder,
};
pub use direct::{KeyBinding, Presented, TokenRefused};
pub use extract::Approved;
/// The `error` codes of the middleware's refusals (and of the gateway's answers).
pub use handsign_protocol::api::ErrorCode;
pub use handsign_protocol::token::ApprovalClaims;
pub use layer::{ApprovalLayer, ApprovalService, Params};
pub use metrics::VerifierMetrics;
#[cfg(feature = "redis")]
pub use redis_store::{DEFAULT_KEY_PREFIX, RedisReplayStore};
pub use replay::{MemoryReplayStore, ReplayError, ReplayStore};
#[cfg(feature = "redis")]
pub use replicas::ReplicaWait;
