//! The person's side of a request: the approval page and the passkey ceremony that decides it.
//!
//! The ceremony's challenge is the digest of the statement with the chosen decision, so the
//! assertion itself says what was approved or denied. Its state is taken out of storage
//! atomically before it is checked: the same assertion submitted twice decides once.

use std::convert::Infallible;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::stream;
use handsign_protocol::api::{
    CeremonyOptions, DecisionOptions, DecisionRecorded, ErrorBody, ErrorCode,
};
use handsign_protocol::base64url;
use handsign_protocol::receipt::{Credential, Evidence, RECEIPT_VERSION, Receipt, ReceiptBody};
use handsign_protocol::statement::{Decision, STATEMENT_VERSION, Statement};
use handsign_protocol::webauthn::CredentialPublicKey;
use serde::Deserialize;
use utoipa_axum::{router::OpenApiRouter, routes};
use webauthn_rs::prelude::{PasskeyAuthentication, PublicKeyCredential};

use crate::domain::{
    ApprovalId, ApprovalKind, ApprovalRecord, ApprovalState, ApprovalStatus, COLLECT_WITHIN_SECS,
    PasskeyRecord,
};
use crate::error::ApiError;
use crate::events::ApprovalWaiter;
use crate::metrics::{DecisionOutcome, DecisionRefusal};
use crate::pages::approve::ApprovePage;
use crate::pages::error::negotiated;
use crate::rate::{ClientAddress, Rate, check_rate};
use crate::routes::{parse_json, passkeys_of, record_passkey_use, require_same_origin};
use crate::state::AppState;
use crate::store;

/// The approval page (HTML) and its live status, beside the decision's JSON calls in [`api`].
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/approve/{id}", get(page))
        .route("/approve/{id}/events", get(events))
}

/// The approval ceremony: options for a decision, and the signed decision, each registered with
/// its OpenAPI description (`tag = "passkeys"`).
pub fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(options))
        .routes(routes!(decide))
}

/// Server-sent events for an open approval page: one `status` event (`approved`, `denied`,
/// `cancelled`, `expired`) once the request is no longer pending; for an approved action, then
/// one `token` event, `collected` when its agent collects the token or `expired` when the time
/// to do so runs out unused; then the stream ends. So a tab left open stops offering a decision
/// that another device made, or that nobody waits for, and shows whether the approval was used.
/// It tells no more than the page itself, to the same holders of the link, and lasts at most
/// until the request expires plus the time to collect a token.
async fn events(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let approval = load(&state, &id).await?;
    // Subscribed before reading again, so that a change between the two is not missed.
    let changes = state.events.approval(&approval.id);
    let following = Following {
        state,
        approval,
        changes,
        stage: Stage::Decision,
    };
    let events = stream::unfold(following, |mut following| async move {
        let event = following.next().await?;
        Some((Ok::<_, Infallible>(event), following))
    });
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// An approval page's view of one request, from its decision to the use of its token.
struct Following {
    state: AppState,
    approval: ApprovalRecord,
    changes: ApprovalWaiter,
    stage: Stage,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Waiting for the request to be decided, cancelled or to expire.
    Decision,
    /// Approved: waiting for the agent to collect its token, or for the time to run out.
    Token,
    Done,
}

impl Following {
    /// The next event; `None` when there is none to wait for, or the store could not be read.
    async fn next(&mut self) -> Option<Event> {
        loop {
            self.approval = self.state.store.approval(&self.approval.id).await.ok()??;
            let now = self.state.clock.now();
            let status = self.approval.status(now);
            // When a wait ends: the moment the request reads as expired, or its token as
            // expired unused.
            let deadline = match (self.stage, &self.approval.state) {
                (Stage::Done, _) => return None,
                (Stage::Decision, _) if status != ApprovalStatus::Pending => {
                    let awaits_token = status == ApprovalStatus::Approved
                        && self.approval.kind == ApprovalKind::Action;
                    self.stage = if awaits_token {
                        Stage::Token
                    } else {
                        Stage::Done
                    };
                    return Some(Event::default().event("status").data(status.as_str()));
                }
                (Stage::Decision, _) => self.approval.expires_at,
                (
                    Stage::Token,
                    ApprovalState::Approved {
                        token_delivered_at: Some(_),
                        ..
                    },
                ) => {
                    self.stage = Stage::Done;
                    return Some(Event::default().event("token").data("collected"));
                }
                (Stage::Token, _) if status != ApprovalStatus::Approved => {
                    self.stage = Stage::Done;
                    return Some(Event::default().event("token").data("expired"));
                }
                (Stage::Token, ApprovalState::Approved { decided_at, .. }) => {
                    decided_at + COLLECT_WITHIN_SECS
                }
                (Stage::Token, _) => return None,
            };
            self.changes
                .changed_before(self.state.clock.sleep_until_second(deadline))
                .await;
        }
    }
}

async fn page(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    show(&state, &id)
        .await
        .unwrap_or_else(|error| negotiated(&headers, error))
}

async fn show(state: &AppState, id: &str) -> Result<Response, ApiError> {
    let approval = load(state, id).await?;
    // The agent's name as it is now (an operator may have renamed it), else as it was.
    let agent_name = match state.store.agent(&approval.agent).await? {
        Some(agent) => agent.name,
        None => approval.agent_name.clone(),
    };
    let now = state.clock.now();
    let recorded = state.store.agent_waiting_until(&approval.id, now).await?;
    Ok(
        ApprovePage::new(&approval, &agent_name, &state.public.issuer, now)
            .map_err(ApiError::internal)?
            .with_token_lifetime(state.token_lifetime)
            .with_agent_waiting_until(approval.agent_waiting_until(recorded), now)
            .into_response(),
    )
}

async fn load(state: &AppState, id: &str) -> Result<ApprovalRecord, ApiError> {
    let id = ApprovalId::parse(id).map_err(|_| ApiError::not_found("approval request"))?;
    state
        .store
        .approval(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("approval request"))
}

/// The statement a decision on `approval` signs.
pub fn statement(state: &AppState, approval: &ApprovalRecord, decision: Decision) -> Statement {
    Statement {
        v: STATEMENT_VERSION.into(),
        id: approval.id.as_str().to_owned(),
        iss: state.public.issuer.clone(),
        sub: approval.user.as_str().to_owned(),
        act: approval.agent.clone(),
        aud: approval.audience.clone(),
        action: approval.action.clone(),
        params_sha256: approval.params_sha256.clone(),
        decision,
        nonce: approval.nonce.clone(),
        iat: approval.created_at,
    }
}

/// Where a ceremony's state waits between options and decision: one per browser that asked,
/// named by an unguessable ceremony id that only that browser has, so that nobody else can take
/// (and so burn) a person's ceremony by knowing the request's id.
fn ceremony_key(id: &ApprovalId, decision: Decision, ceremony: &str) -> String {
    format!("approve:{id}:{}:{ceremony}", decision.as_str())
}

fn require_pending(approval: &ApprovalRecord, now: i64) -> Result<(), ApiError> {
    match approval.status(now) {
        ApprovalStatus::Pending => Ok(()),
        status => Err(ApiError::conflict(
            ErrorCode::NotPending,
            format!(
                "the request is {} and can no longer be decided",
                status.as_str()
            ),
        )),
    }
}

#[utoipa::path(post, path = "/approve/{id}/options", tag = "passkeys", params(("id" = String, Path, description = "the request's id")),
    request_body = DecisionOptions,
    responses((status = 200, description = "`{\"ceremony\", \"publicKey\": PublicKeyCredentialRequestOptionsJSON}`", body = Object), (status = "4XX", description = "refused: `{\"error\", \"message\"}`", body = ErrorBody), (status = 503, description = "storage unavailable; nothing was decided or issued", body = ErrorBody)))]
async fn options(
    State(state): State<AppState>,
    client: ClientAddress,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    require_same_origin(&headers, &state.public.origin)?;
    check_rate(&state, Rate::CeremoniesFrom(client.0), state.clock.now()).await?;
    let request: DecisionOptions = parse_json(&body)?;
    let approval = load(&state, &id).await?;
    let now = state.clock.now();
    require_pending(&approval, now)?;
    let passkeys = passkeys_of(&state, &approval.user).await?;
    if passkeys.is_empty() {
        return Err(ApiError::conflict(
            ErrorCode::NoPasskeys,
            format!("{} has no passkey registered", approval.user),
        ));
    }
    let digest = statement(&state, &approval, request.decision)
        .digest()
        .map_err(ApiError::internal)?;
    let (options, ceremony) = state
        .passkeys
        .start_approval(&passkeys, &digest)
        .map_err(ApiError::internal)?;
    let ceremony_state = serde_json::to_vec(&ceremony).map_err(ApiError::internal)?;
    let ceremony = crate::routes::webauthn::ceremony_id()?;
    state
        .store
        .put_ceremony(
            &ceremony_key(&approval.id, request.decision, &ceremony),
            &ceremony_state,
            approval.expires_at.min(now + 600),
        )
        .await?;
    Ok(Json(CeremonyOptions {
        ceremony,
        public_key: options.public_key,
    })
    .into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DecideRequest {
    decision: Decision,
    /// The id the options answer gave this browser.
    ceremony: String,
    credential: PublicKeyCredential,
}

#[utoipa::path(post, path = "/approve/{id}", tag = "passkeys", params(("id" = String, Path, description = "the request's id")),
    request_body(content = Object, description = "`{\"decision\", \"ceremony\", \"credential\": PublicKeyCredential.toJSON()}`"),
    responses((status = 200, body = DecisionRecorded), (status = "4XX", description = "refused: `{\"error\", \"message\"}`", body = ErrorBody), (status = 503, description = "storage unavailable; nothing was decided or issued", body = ErrorBody)))]
async fn decide(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let answer = record_decision(&state, &id, &headers, &body).await;
    if let Err(error) = &answer {
        state
            .metrics
            .decision_refused(DecisionRefusal::of_error(error));
    }
    answer
}

async fn record_decision(
    state: &AppState,
    id: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    require_same_origin(headers, &state.public.origin)?;
    let request: DecideRequest = parse_json(body)?;
    let approval = load(state, id).await?;
    let now = state.clock.now();
    require_pending(&approval, now)?;

    let ceremony = state
        .store
        .take_ceremony(
            &ceremony_key(&approval.id, request.decision, &request.ceremony),
            now,
        )
        .await?
        .ok_or_else(|| {
            ApiError::conflict(
                ErrorCode::NoCeremony,
                "no passkey ceremony is in progress for this decision (it was used or expired); start again",
            )
        })?;
    let ceremony: PasskeyAuthentication =
        serde_json::from_slice(&ceremony).map_err(ApiError::internal)?;
    let result = state
        .passkeys
        .finish_authentication(&request.credential, &ceremony)
        .map_err(|e| ApiError::forbidden(ErrorCode::PasskeyRefused, e.to_string()))?;

    // The ceremony allowed only this user's credentials; our own records must agree.
    let passkey =
        record_passkey_use(state, &approval.user, &request.credential, &result, now).await?;

    let receipt = receipt(
        state,
        &approval,
        request.decision,
        &request.credential,
        &passkey,
    )?;
    let decided = match request.decision {
        Decision::Approve => store::Decision::Approved {
            decided_at: now,
            receipt: Box::new(receipt),
        },
        Decision::Deny => store::Decision::Denied {
            decided_at: now,
            receipt: Box::new(receipt),
        },
    };
    let decided = state.approvals.decide(&approval.id, decided, now).await?;
    state.metrics.decided(
        match request.decision {
            Decision::Approve => DecisionOutcome::Approved,
            Decision::Deny => DecisionOutcome::Denied,
        },
        now - decided.created_at,
    );
    tracing::info!(id = %decided.id, decision = request.decision.as_str(), user = %decided.user, "request decided");
    let status = decided.status(now);
    Ok(Json(DecisionRecorded {
        id: decided.id.as_str().to_owned(),
        status,
        action: decided.action.clone(),
    })
    .into_response())
}

/// The evidence of a decision, signed by the gateway.
pub fn receipt(
    state: &AppState,
    approval: &ApprovalRecord,
    decision: Decision,
    credential: &PublicKeyCredential,
    passkey: &PasskeyRecord,
) -> Result<Receipt, ApiError> {
    let cose = base64url::decode(&passkey.public_key_cose).map_err(ApiError::internal)?;
    let public_key = CredentialPublicKey::from_cose(&cose).map_err(ApiError::internal)?;
    let params: serde_json::Value =
        serde_json::from_str(&approval.params).map_err(ApiError::internal)?;
    let response = &credential.response;
    ReceiptBody {
        v: RECEIPT_VERSION.into(),
        statement: statement(state, approval, decision),
        params,
        evidence: Evidence {
            credential_id: base64url::encode(&credential.raw_id),
            authenticator_data: base64url::encode(&response.authenticator_data),
            client_data_json: base64url::encode(&response.client_data_json),
            signature: base64url::encode(&response.signature),
            user_handle: response.user_handle.as_ref().map(base64url::encode),
        },
        credential: Credential {
            public_key_cose: passkey.public_key_cose.clone(),
            public_key_jwk: public_key.to_jwk(),
        },
        rp_id: state.passkeys.rp_id().to_owned(),
        origins: state.passkeys.origins(),
    }
    .sign(state.keyring.current())
    .map_err(ApiError::internal)
}
