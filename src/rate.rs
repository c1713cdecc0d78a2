//! Limits per minute on what callers make the gateway do and store, counted in fixed one-minute
//! windows in the store (so every instance sharing it counts together), and the client address
//! that limits per address count by.

use handsign_protocol::api::ErrorCode;
use std::net::IpAddr;

use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;

use crate::config::RequestLimits;
use crate::domain::UserId;
use crate::error::ApiError;
use crate::state::AppState;

/// The address a request came from: the TCP peer, or, when the operator names the header its
/// reverse proxy sets (`--client-address-header`), the last address in that header (the one
/// the operator's own proxy added; earlier ones are the client's to invent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddress(pub IpAddr);

/// The TCP peer of a request's connection, which the server puts in every request's extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddress(pub IpAddr);

impl FromRequestParts<AppState> for ClientAddress {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if let Some(header) = &state.limits.client_address_header {
            let forwarded = parts
                .headers
                .get_all(header.as_str())
                .iter()
                .filter_map(|value| value.to_str().ok())
                .flat_map(|value| value.split(','))
                .filter_map(|address| address.trim().parse::<IpAddr>().ok())
                .next_back();
            return forwarded.map(ClientAddress).ok_or_else(|| {
                ApiError::bad_request(
                    ErrorCode::NoClientAddress,
                    format!("the request has no client address in its {header} header"),
                )
            });
        }
        parts
            .extensions
            .get::<PeerAddress>()
            .map(|peer| ClientAddress(peer.0))
            .ok_or_else(|| ApiError::internal("a request without its connection's peer address"))
    }
}

/// What a rate limit counts, per minute.
pub enum Rate<'a> {
    /// Requests created by one agent.
    Agent(&'a str),
    /// Prompts a person is asked to decide, from all their agents and enrollments.
    Prompts(&'a UserId),
    /// Enrollment requests from one client address.
    EnrollmentsFrom(IpAddr),
    /// Enrollment requests for one person.
    EnrollmentsFor(&'a UserId),
    /// Passkey ceremonies started from one client address (login, registration, a decision):
    /// each keeps its state in the store until it is finished or expires.
    CeremoniesFrom(IpAddr),
}

impl Rate<'_> {
    /// The counter's key and limit, and what the limit is, for the refusal.
    fn counter(&self, limits: &RequestLimits) -> (String, u64, String) {
        match self {
            Rate::Agent(agent) => (
                format!("rate:{agent}"),
                limits.agent_requests_per_minute,
                "requests this agent may create".into(),
            ),
            Rate::Prompts(user) => (
                format!("prompts:{user}"),
                limits.user_prompts_per_minute,
                format!("requests {user} may be asked to decide, from all their agents,"),
            ),
            Rate::EnrollmentsFrom(address) => (
                format!("enroll-from:{address}"),
                limits.enrollments_per_minute,
                "enrollment requests from one address".into(),
            ),
            Rate::EnrollmentsFor(user) => (
                format!("enroll-for:{user}"),
                limits.enrollments_per_minute,
                format!("enrollment requests for {user}"),
            ),
            Rate::CeremoniesFrom(address) => (
                format!("ceremonies-from:{address}"),
                limits.ceremonies_per_minute,
                "passkey ceremonies started from one address".into(),
            ),
        }
    }
}

/// Counts one event against `rate` and refuses it (429 with `Retry-After`) past the limit.
pub async fn check_rate(state: &AppState, rate: Rate<'_>, now: i64) -> Result<(), ApiError> {
    let (key, limit, what) = rate.counter(&state.limits);
    let window_start = now - now.rem_euclid(60);
    let count = state.store.count_in_window(&key, window_start, 60).await?;
    if count > limit {
        let retry = u64::try_from(window_start + 60 - now).unwrap_or(1).max(1);
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::RateLimited,
            format!("at most {limit} {what} per minute; try again in {retry} s"),
        )
        .with_retry_after(retry));
    }
    Ok(())
}
