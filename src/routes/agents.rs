//! The agent API (`/v1`): create approval requests, wait for and collect their outcome, fetch
//! receipts, and enroll. Every call is authenticated by a DPoP proof only.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use handsign_protocol::api::{
    ApprovalCreated, ApprovalView, CancelApproval, CreateApproval, EnrollAgent, ErrorBody,
    ErrorCode, MAX_CANCEL_REASON_CHARS,
};
use handsign_protocol::canonical::CanonicalError;
use handsign_protocol::params::CanonicalParams;
use handsign_protocol::token::{self, Actor, ApprovalClaims, Confirmation};
use serde::Deserialize;
use serde_json::json;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::agent_auth::{Agent, Proof};
use crate::config::{DEFAULT_TTL, MIN_TTL};
use crate::domain::{
    AGENT_GAP_SECS, Action, AgentName, AgentRecord, AgentStatus, ApprovalId, ApprovalKind,
    ApprovalRecord, ApprovalState, ApprovalStatus, Audience, UserId, random_bytes,
};
use crate::error::ApiError;
use crate::metrics::RequestOutcome;
use crate::params_order::ParamsOrder;
use crate::rate::{ClientAddress, Rate, check_rate};
use crate::routes::parse_json;
use crate::state::AppState;
use crate::store::{Collection, StoreError};

/// The action of an agent's enrollment request; `handsign.` actions are the gateway's own.
pub const ENROLL_ACTION: &str = "handsign.agent.enroll";
/// The longest a long poll may wait.
const MAX_WAIT_SECS: u64 = 60;

/// The agent API, each route registered with its OpenAPI description (`tag = "agents"`).
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create))
        .routes(routes!(read))
        .routes(routes!(events_stream))
        .routes(routes!(receipt))
        .routes(routes!(cancel))
        .routes(routes!(enroll))
}

#[utoipa::path(post, path = "/v1/approvals", tag = "agents", request_body = CreateApproval,
    responses((status = 201, body = ApprovalCreated), (status = "4XX", description = "refused: `{\"error\", \"message\"}`", body = ErrorBody), (status = 503, description = "storage unavailable; nothing was decided or issued", body = ErrorBody)))]
async fn create(
    State(state): State<AppState>,
    agent: Agent,
    body: Bytes,
) -> Result<Response, ApiError> {
    counted(&state, request_approval(&state, agent, &body).await)
}

/// Records how an agent's request to be approved ended, and passes the answer on.
fn counted(state: &AppState, answer: Result<Response, ApiError>) -> Result<Response, ApiError> {
    state.metrics.approval_request(match &answer {
        Ok(_) => RequestOutcome::Created,
        Err(error) => RequestOutcome::of_error(error),
    });
    answer
}

async fn request_approval(
    state: &AppState,
    agent: Agent,
    body: &[u8],
) -> Result<Response, ApiError> {
    let agent = agent.require_active()?.clone();
    let request: CreateApproval = parse_json(body)?;
    let now = state.clock.now();
    check_rate(state, Rate::Agent(&agent.id), now).await?;
    check_rate(state, Rate::Prompts(&agent.user), now).await?;

    let action = Action::parse(&request.action)
        .map_err(|e| ApiError::bad_request(ErrorCode::InvalidAction, e.to_string()))?;
    let audience = Audience::parse(&request.audience)
        .map_err(|e| ApiError::bad_request(ErrorCode::InvalidAudience, e.to_string()))?;
    if let Some(user) = &request.user
        && *user != agent.user.as_str()
    {
        return Err(ApiError::forbidden(
            ErrorCode::WrongUser,
            format!("this agent acts for {}, not {user}", agent.user.as_str()),
        ));
    }
    let message = validate_message(request.message)?;
    let ttl = request.ttl.unwrap_or(DEFAULT_TTL);
    if !(MIN_TTL..=state.limits.max_ttl).contains(&ttl) {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidTtl,
            format!(
                "ttl must be between {MIN_TTL} and {} seconds, got {ttl}",
                state.limits.max_ttl
            ),
        ));
    }
    let params = CanonicalParams::parse(request.params.get().as_bytes(), &state.limits.params())
        .map_err(params_error)?;
    let params_order =
        ParamsOrder::of_agent_json(request.params.get()).map_err(ApiError::internal)?;

    let ask = Ask {
        kind: ApprovalKind::Action,
        action: action.into(),
        audience: audience.into(),
        params,
        params_order,
        message,
        ttl,
    };
    let approval = new_approval(&agent, ask, now)?;
    state
        .approvals
        .create(&approval, state.limits.max_pending_per_agent, now)
        .await?;
    tracing::info!(id = %approval.id, agent = %agent.id, action = %approval.action, "approval requested");
    Ok((StatusCode::CREATED, Json(created(state, &approval))).into_response())
}

fn params_error(error: CanonicalError) -> ApiError {
    use handsign_protocol::canonical::CanonicalErrorKind;
    let status = match error.kind() {
        CanonicalErrorKind::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        _ => StatusCode::BAD_REQUEST,
    };
    ApiError::new(
        status,
        ErrorCode::InvalidParams,
        format!("params refused: {error}"),
    )
}

const MAX_MESSAGE_CHARS: usize = 1000;

fn validate_message(message: Option<String>) -> Result<Option<String>, ApiError> {
    match message {
        Some(text) if text.chars().count() > MAX_MESSAGE_CHARS => Err(ApiError::bad_request(
            ErrorCode::InvalidMessage,
            format!("message must be at most {MAX_MESSAGE_CHARS} characters"),
        )),
        Some(text) if text.is_empty() => Ok(None),
        other => Ok(other),
    }
}

/// What an agent asks for, checked.
struct Ask {
    kind: ApprovalKind,
    action: String,
    audience: String,
    params: CanonicalParams,
    params_order: ParamsOrder,
    message: Option<String>,
    ttl: i64,
}

/// A new pending request from `agent`, with a fresh id, nonce and match code.
fn new_approval(agent: &AgentRecord, ask: Ask, now: i64) -> Result<ApprovalRecord, ApiError> {
    let random = |e: getrandom::Error| ApiError::internal(e);
    let code = u32::from_be_bytes(random_bytes::<4>().map_err(random)?) % 1_000_000;
    Ok(ApprovalRecord {
        id: ApprovalId::generate().map_err(random)?,
        kind: ask.kind,
        agent: agent.id.clone(),
        agent_name: agent.name.clone(),
        user: agent.user.clone(),
        audience: ask.audience,
        action: ask.action,
        params: ask.params.as_str().to_owned(),
        params_sha256: ask.params.hash(),
        params_order: ask.params_order,
        message: ask.message,
        code: format!("{:03}-{:03}", code / 1000, code % 1000),
        nonce: handsign_protocol::base64url::encode(random_bytes::<32>().map_err(random)?),
        created_at: now,
        expires_at: now + ask.ttl,
        state: ApprovalState::Pending,
    })
}

fn created(state: &AppState, approval: &ApprovalRecord) -> ApprovalCreated {
    ApprovalCreated {
        id: approval.id.as_str().to_owned(),
        status: ApprovalStatus::Pending,
        approval_url: state.public.join(&format!("/approve/{}", approval.id)),
        params_sha256: approval.params_sha256.as_str().to_owned(),
        code: approval.code.clone(),
        expires_at: approval.expires_at,
    }
}

/// The reason recorded when the agent gives none.
const DEFAULT_CANCEL_REASON: &str = "cancelled by the agent";

/// The agent withdraws its own request, so the person is no longer asked: it can never be
/// decided nor yield a token. Another agent's request is "not found", as for a read. The body,
/// `{"reason"}`, may be empty.
#[utoipa::path(post, path = "/v1/approvals/{id}/cancel", tag = "agents", params(("id" = String, Path, description = "the request's id")),
    request_body(content = Option<CancelApproval>, description = "may be empty"),
    responses((status = 200, body = ApprovalView), (status = "4XX", description = "refused: `{\"error\", \"message\"}`", body = ErrorBody), (status = 503, description = "storage unavailable; nothing was decided or issued", body = ErrorBody)))]
async fn cancel(
    State(state): State<AppState>,
    agent: Agent,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<ApprovalView>, ApiError> {
    let id = ApprovalId::parse(&id).map_err(|_| ApiError::not_found("approval request"))?;
    let request: CancelApproval = if body.is_empty() {
        CancelApproval::default()
    } else {
        parse_json(&body)?
    };
    let reason = cancel_reason(request.reason)?;
    own_approval(&state, &agent, &id).await?;
    let now = state.clock.now();
    let cancelled = match state.approvals.cancel(&id, &agent.0.id, &reason, now).await {
        Ok(cancelled) => cancelled,
        Err(StoreError::NotFound(_)) => return Err(ApiError::not_found("approval request")),
        Err(StoreError::NotPending(status)) => {
            return Err(ApiError::conflict(
                ErrorCode::NotPending,
                format!("the request is {status} and can no longer be cancelled"),
            ));
        }
        Err(other) => return Err(other.into()),
    };
    tracing::info!(id = %cancelled.id, agent = %agent.0.id, "request cancelled by its agent");
    Ok(Json(view(&state, &cancelled, cancelled.status(now))))
}

/// The reason as recorded: trimmed, [`DEFAULT_CANCEL_REASON`] when none, refused when longer
/// than [`MAX_CANCEL_REASON_CHARS`] or holding control characters (it is shown to people).
fn cancel_reason(reason: Option<String>) -> Result<String, ApiError> {
    let reason = reason.as_deref().map(str::trim).unwrap_or_default();
    if reason.chars().count() > MAX_CANCEL_REASON_CHARS {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidReason,
            format!("reason must be at most {MAX_CANCEL_REASON_CHARS} characters"),
        ));
    }
    if reason.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidReason,
            "reason may not contain control characters such as newlines",
        ));
    }
    Ok(if reason.is_empty() {
        DEFAULT_CANCEL_REASON.to_owned()
    } else {
        reason.to_owned()
    })
}

#[derive(Debug, Deserialize)]
struct ReadQuery {
    /// Seconds to wait for a decision (long poll), at most 60.
    #[serde(default)]
    wait: Option<u64>,
}

/// The request's state; waits up to `wait` seconds while it is pending; delivers the token at the
/// first read after approval, and never again.
#[utoipa::path(get, path = "/v1/approvals/{id}", tag = "agents",
    params(("id" = String, Path, description = "the request's id"), ("wait" = Option<u64>, Query, description = "seconds to wait for a decision, at most 60")),
    responses((status = 200, body = ApprovalView), (status = "4XX", description = "refused: `{\"error\", \"message\"}`", body = ErrorBody), (status = 503, description = "storage unavailable; nothing was decided or issued", body = ErrorBody)))]
async fn read(
    State(state): State<AppState>,
    agent: Agent,
    Path(id): Path<String>,
    Query(query): Query<ReadQuery>,
) -> Result<Json<ApprovalView>, ApiError> {
    let id = ApprovalId::parse(&id).map_err(|_| ApiError::not_found("approval request"))?;
    let wait = query.wait.unwrap_or(0);
    if wait > MAX_WAIT_SECS {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidWait,
            format!("wait is at most {MAX_WAIT_SECS} seconds"),
        ));
    }
    // Subscribe before the first read, so a decision between read and wait still wakes us.
    let mut changes = state.events.approval(&id);
    let mut approval = own_approval(&state, &agent, &id).await?;
    let now = state.clock.now();
    if approval.status(now) == ApprovalStatus::Pending {
        let until = now + i64::try_from(wait).unwrap_or(0) + AGENT_GAP_SECS;
        note_waiting(&state, &approval, until).await?;
    }
    // The wait and the expiry are both times of the gateway's clock (a test may set it).
    let deadline = state.clock.after(std::time::Duration::from_secs(wait));
    while approval.status(state.clock.now()) == ApprovalStatus::Pending {
        if state.clock.has_passed(deadline) {
            break;
        }
        // One timer: the end of the wait or the request's expiry, whichever comes first.
        let wake_at = deadline.min(state.clock.at_second(approval.expires_at));
        // Read again on waking: thousands of agents may be waiting at once, and each record
        // holds its params (a kilobyte or more).
        drop(approval);
        changes
            .changed_before(state.clock.sleep_until(wake_at))
            .await;
        approval = own_approval(&state, &agent, &id).await?;
    }
    // Boxed: a future is as large as its largest step, and collecting and minting is this one's;
    // inline, every waiting poll would hold room for it.
    Box::pin(outcome(&state, &agent, approval)).await.map(Json)
}

/// Records that the agent waits for `approval`'s outcome until `until`, so that the pages can
/// tell the person when nobody waits for their decision any more.
async fn note_waiting(
    state: &AppState,
    approval: &ApprovalRecord,
    until: i64,
) -> Result<(), ApiError> {
    Ok(state
        .store
        .note_agent_waiting(&approval.id, until, approval.expires_at)
        .await?)
}

/// The request's state as server-sent events: one `state` event now and one at every change,
/// the last when the request is final. The first event after approval carries the token (it is
/// collected then, once, as by a read).
#[utoipa::path(get, path = "/v1/approvals/{id}/events", tag = "agents", params(("id" = String, Path, description = "the request's id")),
    responses((status = 200, description = "server-sent events named `state`, each an ApprovalView", content_type = "text/event-stream", body = ApprovalView), (status = "4XX", description = "refused: `{\"error\", \"message\"}`", body = ErrorBody), (status = 503, description = "storage unavailable; nothing was decided or issued", body = ErrorBody)))]
async fn events_stream(
    State(state): State<AppState>,
    agent: Agent,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    use axum::response::sse::{Event, KeepAlive, Sse};
    let id = ApprovalId::parse(&id).map_err(|_| ApiError::not_found("approval request"))?;
    let changes = state.events.approval(&id);
    // Checked before streaming, so that a request that is not the agent's is a plain 404.
    let approval = own_approval(&state, &agent, &id).await?;
    // The stream follows the request to its end: its agent counts as waiting until then.
    note_waiting(&state, &approval, approval.expires_at).await?;
    let stream = futures_util::stream::unfold(
        Some((state, agent, id, changes, None::<String>)),
        |progress| async move {
            let (state, agent, id, mut changes, last) = progress?;
            loop {
                let approval = match own_approval(&state, &agent, &id).await {
                    Ok(approval) => approval,
                    Err(e) => return Some((Err(e.message), None)),
                };
                let status = approval.status(state.clock.now());
                let expiry = approval.expires_at;
                if last.as_deref() != Some(status.as_str()) {
                    let answer = match Box::pin(outcome(&state, &agent, approval)).await {
                        Ok(answer) => answer,
                        Err(e) => return Some((Err(e.message), None)),
                    };
                    let event = Event::default().event("state").json_data(&answer);
                    let next = (!status.is_final())
                        .then(|| (state, agent, id, changes, Some(status.as_str().to_owned())));
                    return Some((event.map_err(|e| e.to_string()), next));
                }
                // As in `read`: not held while waiting, and room for `outcome` is boxed.
                drop(approval);
                changes
                    .changed_before(state.clock.sleep_until_second(expiry))
                    .await;
            }
        },
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// The request if it belongs to this agent; someone else's request is "not found", so that ids
/// cannot be probed.
async fn own_approval(
    state: &AppState,
    agent: &Agent,
    id: &ApprovalId,
) -> Result<ApprovalRecord, ApiError> {
    match state.store.approval(id).await? {
        Some(approval) if approval.agent == agent.0.id => {
            // A pending enrollment may read its own request and nothing else.
            if agent.0.status == AgentStatus::Pending && approval.kind != ApprovalKind::Enrollment {
                return Err(ApiError::not_found("approval request"));
            }
            Ok(approval)
        }
        _ => Err(ApiError::not_found("approval request")),
    }
}

/// The answer for a request as it stands, collecting the token if this is the first read after
/// approval.
async fn outcome(
    state: &AppState,
    agent: &Agent,
    approval: ApprovalRecord,
) -> Result<ApprovalView, ApiError> {
    let now = state.clock.now();
    let status = approval.status(now);
    let mut answer = view(state, &approval, status);
    let deliverable = matches!(
        approval.state,
        ApprovalState::Approved {
            token_delivered_at: None,
            ..
        }
    ) && status == ApprovalStatus::Approved
        && approval.kind == ApprovalKind::Action;
    if deliverable {
        agent.require_active()?;
        if let Collection::Deliver(collected) = state.approvals.deliver(&approval.id, now).await? {
            answer.token = Some(mint(state, &collected, now)?);
            state.metrics.token_issued();
            answer.token_delivered = Some(true);
            answer.receipt_url = None;
            return Ok(answer);
        }
    }
    Ok(answer)
}

/// The request as it stands at `status`, without a token.
fn view(state: &AppState, approval: &ApprovalRecord, status: ApprovalStatus) -> ApprovalView {
    let (token_delivered, reason) = match &approval.state {
        ApprovalState::Approved {
            token_delivered_at, ..
        } => (Some(token_delivered_at.is_some()), None),
        ApprovalState::Cancelled { reason, .. } => (None, Some(reason.clone())),
        ApprovalState::Pending | ApprovalState::Denied { .. } => (None, None),
    };
    ApprovalView {
        id: approval.id.as_str().to_owned(),
        status,
        action: approval.action.clone(),
        audience: approval.audience.clone(),
        params_sha256: approval.params_sha256.as_str().to_owned(),
        code: approval.code.clone(),
        expires_at: approval.expires_at,
        token: None,
        token_delivered,
        receipt_url: approval.receipt().map(|_| {
            state
                .public
                .join(&format!("/v1/approvals/{}/receipt", approval.id))
        }),
        reason,
    }
}

/// The approval token for a collected request: bound to the agent's key, valid from now for the
/// configured lifetime.
fn mint(state: &AppState, approval: &ApprovalRecord, now: i64) -> Result<String, ApiError> {
    let claims = ApprovalClaims {
        iss: state.public.issuer.clone(),
        sub: approval.user.as_str().to_owned(),
        aud: approval.audience.clone(),
        act: Actor {
            sub: approval.agent.clone(),
        },
        action: approval.action.clone(),
        params_sha256: approval.params_sha256.clone(),
        approval: approval.id.as_str().to_owned(),
        jti: uuid::Uuid::new_v4().to_string(),
        iat: now,
        nbf: now,
        exp: now + state.token_lifetime,
        cnf: Some(Confirmation {
            jkt: approval.agent.clone(),
        }),
    };
    token::mint(state.keyring.current(), &claims).map_err(ApiError::internal)
}

#[utoipa::path(get, path = "/v1/approvals/{id}/receipt", tag = "agents", params(("id" = String, Path, description = "the request's id")),
    responses((status = 200, description = "the receipt (docs/protocol.md, Receipts)", body = Object), (status = "4XX", description = "refused: `{\"error\", \"message\"}`", body = ErrorBody), (status = 503, description = "storage unavailable; nothing was decided or issued", body = ErrorBody)))]
async fn receipt(
    State(state): State<AppState>,
    agent: Agent,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = ApprovalId::parse(&id).map_err(|_| ApiError::not_found("approval request"))?;
    let approval = own_approval(&state, &agent, &id).await?;
    match approval.receipt() {
        Some(receipt) => Ok(Json(receipt).into_response()),
        None => Err(ApiError::conflict(
            ErrorCode::NotDecided,
            format!(
                "the request is {}; a receipt exists once a person has decided",
                approval.status(state.clock.now()).as_str()
            ),
        )),
    }
}

/// Asks the user to approve this key as an agent acting for them.
#[utoipa::path(post, path = "/v1/agents/enroll", tag = "agents", request_body = EnrollAgent,
    responses((status = 201, body = ApprovalCreated), (status = "4XX", description = "refused: `{\"error\", \"message\"}`", body = ErrorBody), (status = 503, description = "storage unavailable; nothing was decided or issued", body = ErrorBody)))]
async fn enroll(
    State(state): State<AppState>,
    client: ClientAddress,
    proof: Proof,
    body: Bytes,
) -> Result<Response, ApiError> {
    counted(
        &state,
        request_enrollment(&state, client, proof, &body).await,
    )
}

/// Anyone with a key may ask, so everything that bounds a flood comes before anything is
/// stored for the caller: the rate per client address, the user's existence, the name, the
/// rate per user and the person's prompt budget; the proof is recorded only then, and the store
/// caps the agents waiting for the user's decision. An enrollment nobody decides leaves no agent
/// behind once it expires.
async fn request_enrollment(
    state: &AppState,
    client: ClientAddress,
    proof: Proof,
    body: &[u8],
) -> Result<Response, ApiError> {
    let now = state.clock.now();
    check_rate(state, Rate::EnrollmentsFrom(client.0), now).await?;
    let request: EnrollAgent = parse_json(body)?;
    let user = UserId::parse(&request.user)
        .map_err(|e| ApiError::bad_request(ErrorCode::InvalidUser, e.to_string()))?;
    let name = AgentName::parse(&request.name)
        .map_err(|e| ApiError::bad_request(ErrorCode::InvalidName, e.to_string()))?;
    if state.store.user(&user).await?.is_none() {
        return Err(ApiError::not_found("user"));
    }
    // A copy of a real agent's name would let the prompt pass for that agent.
    let taken = state
        .store
        .agents(Some(&user))
        .await?
        .into_iter()
        .any(|agent| agent.exists_at(now) && name.is_taken_by(&agent.name));
    if taken {
        return Err(ApiError::conflict(
            ErrorCode::NameTaken,
            format!(
                "{user} already has an agent called {:?}; enroll under another name",
                name.as_str()
            ),
        ));
    }
    check_rate(state, Rate::EnrollmentsFor(&user), now).await?;
    check_rate(state, Rate::Prompts(&user), now).await?;
    proof.record(state).await?;
    let agent = AgentRecord {
        id: proof.key_id().to_owned(),
        name: name.to_string(),
        user: user.clone(),
        public_jwk: None,
        status: AgentStatus::Pending,
        created_at: now,
        enrollment_expires_at: Some(now + DEFAULT_TTL),
    };
    match state
        .store
        .add_enrolling_agent(&agent, state.limits.max_pending_enrollments, now)
        .await
    {
        Err(StoreError::AlreadyExists(_)) => {
            return Err(ApiError::conflict(
                ErrorCode::AlreadyEnrolled,
                "an agent with this key already exists or is waiting for its enrollment; use a new key to enroll again",
            ));
        }
        other => other?,
    }
    let params = json!({"agent": agent.id, "name": agent.name, "user": user});
    let params =
        CanonicalParams::from_value(&params, &state.limits.params()).map_err(params_error)?;
    let ask = Ask {
        kind: ApprovalKind::Enrollment,
        action: ENROLL_ACTION.to_owned(),
        audience: state.public.issuer.clone(),
        params,
        params_order: ParamsOrder::default(),
        message: None,
        ttl: DEFAULT_TTL,
    };
    let approval = new_approval(&agent, ask, now)?;
    state
        .approvals
        .create(&approval, state.limits.max_pending_per_agent, now)
        .await?;
    Ok((StatusCode::CREATED, Json(created(state, &approval))).into_response())
}
