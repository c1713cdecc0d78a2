//! The person's own pages and their JSON: setup (`/setup`), login and logout, and the dashboard
//! (`/` and `/dashboard/...`).
//!
//! Every dashboard endpoint acts for the session's user only, and someone else's request or agent
//! is "not found", exactly like an id that does not exist, so ids cannot be probed. The
//! state-changing ones also require the gateway's own Origin: the session cookie is
//! SameSite=Strict, and the Origin check stops a request that another site's page makes anyway.
//! Operator-level changes (an agent's status, an invitation) go through [`admin::execute`], the
//! same code `handsign agent` and `handsign user invite` run, so the dashboard cannot do anything
//! the operator commands would refuse.
//!
//! Nothing here decides a request: deciding takes a passkey on the approval page.

use handsign_protocol::api::ErrorCode;
use std::convert::Infallible;

use askama::Template as _;
use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use futures_util::StreamExt as _;
use futures_util::stream::{self, Stream};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::admin::{self, Answer, Command};
use crate::domain::{AgentRecord, AgentStatus, ApprovalId, ApprovalRecord, ApprovalStatus, UserId};
use crate::error::ApiError;
use crate::events::{UserChange, UserWaiter};
use crate::invitations::INVITATION_SECS;
use crate::pages::dashboard::{
    AgentNames, AgentRow, DashboardPage, HistoryList, HistoryRow, PasskeyRow, PendingList,
    PendingRow,
};
use crate::pages::error::{negotiated, wants_html};
use crate::pages::login::LoginPage;
use crate::pages::receipt::{ReceiptPage, file_name as receipt_file_name};
use crate::pages::setup::SetupPage;
use crate::routes::webauthn::{Purpose, StepUp, code_hash};
use crate::routes::{parse_json, require_same_origin};
use crate::session::{self, SessionUser};
use crate::state::AppState;
use crate::store::{ApprovalFilter, StoreError};

/// The most pending requests a listing shows (each agent may have only a few pending).
const PENDING_LIMIT: usize = 200;
/// How much history the dashboard shows: the most recent requests.
const HISTORY_LIMIT: usize = 50;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(dashboard))
        .route("/setup", get(setup))
        .route("/login", get(login))
        .route("/logout", post(logout))
        .route("/dashboard/events", get(events))
        .route("/dashboard/approvals", get(approvals))
        .route("/dashboard/approvals/{id}/receipt", get(receipt))
        .route(
            "/dashboard/approvals/{id}/receipt.json",
            get(receipt_download),
        )
        .route("/dashboard/agents/{id}/status", post(agent_status))
        .route("/dashboard/invitations", post(invite))
}

#[derive(Debug, Deserialize)]
struct SetupQuery {
    #[serde(default)]
    code: Option<String>,
}

/// The setup page for the link's code: a form when the code can be redeemed, an explanation
/// (and 404) when it cannot.
async fn setup(
    State(state): State<AppState>,
    Query(query): Query<SetupQuery>,
) -> Result<Response, ApiError> {
    let code = query.code.filter(|code| !code.is_empty());
    let invitation = match &code {
        Some(code) => {
            state
                .store
                .invitation(&code_hash(code), state.clock.now())
                .await?
        }
        None => None,
    };
    // A code that can no longer create anyone: a setup code once someone is set up, an
    // invitation for a name that now exists.
    let invitation = match invitation {
        Some(invitation) => {
            let usable = match &invitation.user {
                None => state.store.count_users().await? == 0,
                Some(user) => state.store.user(user).await?.is_none(),
            };
            usable.then_some(invitation)
        }
        None => None,
    };
    let page = SetupPage::new(code.as_deref(), invitation.as_ref());
    let status = if page.usable() {
        StatusCode::OK
    } else {
        StatusCode::NOT_FOUND
    };
    Ok((status, page).into_response())
}

async fn login(session: Option<SessionUser>) -> LoginPage {
    LoginPage {
        logged_in_as: session.map(|SessionUser(user)| user.to_string()),
    }
}

/// Ends this browser's session (see [`session::end`]).
///
/// The dashboard's script calls this with `fetch`, not a plain form: the pages' referrer policy
/// is `no-referrer`, under which a browser sends `Origin: null` with a form's POST, and the
/// Origin check rightly refuses that.
async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    require_same_origin(&headers, &state.public.origin)?;
    let clear = session::end(&state, &headers).await?;
    Ok((
        [(header::SET_COOKIE, clear)],
        Json(json!({"logged_out": true})),
    )
        .into_response())
}

/// The dashboard, or the login page for a browser that is not logged in.
async fn dashboard(
    State(state): State<AppState>,
    session: Option<SessionUser>,
) -> Result<Response, ApiError> {
    let Some(SessionUser(user)) = session else {
        return Ok(Redirect::to("/login").into_response());
    };
    let now = state.clock.now();
    let mut agents = state.store.agents(Some(&user)).await?;
    agents.retain(|agent| agent.exists_at(now));
    let names = agent_names(&agents);
    let requests = Requests::of(&state, &user, now).await?;
    let passkeys = state.store.passkeys(&user).await?;
    let admin = state
        .store
        .user(&user)
        .await?
        .is_some_and(|record| record.admin);
    Ok(DashboardPage {
        user: user.to_string(),
        admin,
        pending: requests.pending_rows(&names, now),
        history: requests.history_rows(&names, now),
        agents: agents.iter().map(AgentRow::new).collect(),
        passkeys: passkeys.iter().map(PasskeyRow::new).collect(),
    }
    .into_response())
}

fn agent_names(agents: &[AgentRecord]) -> AgentNames {
    agents
        .iter()
        .map(|agent| (agent.id.clone(), agent.name.clone()))
        .collect()
}

/// The user's requests, pending and recent history, newest first.
struct Requests {
    pending: Vec<ApprovalRecord>,
    /// Until when each pending request's agent counts as waiting, in the same order.
    agents_waiting_until: Vec<i64>,
    history: Vec<ApprovalRecord>,
}

impl Requests {
    async fn of(state: &AppState, user: &UserId, now: i64) -> Result<Requests, ApiError> {
        let store = &state.store;
        let pending = store
            .approvals(user, ApprovalFilter::Pending, now, PENDING_LIMIT)
            .await?;
        let agents_waiting_until =
            futures_util::future::try_join_all(pending.iter().map(|approval| async move {
                let recorded = store.agent_waiting_until(&approval.id, now).await?;
                Ok::<_, ApiError>(approval.agent_waiting_until(recorded))
            }))
            .await?;
        Ok(Requests {
            pending,
            agents_waiting_until,
            history: store
                .approvals(user, ApprovalFilter::History, now, HISTORY_LIMIT)
                .await?,
        })
    }

    fn pending_rows(&self, names: &AgentNames, now: i64) -> Vec<PendingRow> {
        let row = |(approval, until): (&ApprovalRecord, &i64)| {
            PendingRow::new(approval, names, now).with_agent_waiting_until(*until, now)
        };
        self.pending
            .iter()
            .zip(&self.agents_waiting_until)
            .map(row)
            .collect()
    }

    fn history_rows(&self, names: &AgentNames, now: i64) -> Vec<HistoryRow> {
        let row = |approval| HistoryRow::new(approval, names, now);
        self.history.iter().map(row).collect()
    }
}

/// A request as `GET /dashboard/approvals` lists it. The agent-written strings are here as they
/// were sent, for clients that show them their own way; a browser shows the `html` fragments.
#[derive(Debug, Serialize)]
struct ListedApproval {
    id: ApprovalId,
    kind: crate::domain::ApprovalKind,
    status: ApprovalStatus,
    agent: ListedAgent,
    action: String,
    audience: String,
    message: Option<String>,
    code: String,
    created_at: i64,
    expires_at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    seconds_left: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    decided_at: Option<i64>,
    approval_url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    receipt_url: Option<String>,
}

#[derive(Debug, Serialize)]
struct ListedAgent {
    id: String,
    name: String,
}

impl ListedApproval {
    fn new(state: &AppState, approval: &ApprovalRecord, names: &AgentNames, now: i64) -> Self {
        use crate::domain::ApprovalState;
        let status = approval.status(now);
        let decided_at = match &approval.state {
            ApprovalState::Approved { decided_at, .. }
            | ApprovalState::Denied { decided_at, .. } => Some(*decided_at),
            ApprovalState::Cancelled { at, .. } => Some(*at),
            ApprovalState::Pending => None,
        };
        ListedApproval {
            id: approval.id.clone(),
            kind: approval.kind,
            status,
            agent: ListedAgent {
                id: approval.agent.clone(),
                name: names
                    .get(&approval.agent)
                    .unwrap_or(&approval.agent_name)
                    .clone(),
            },
            action: approval.action.clone(),
            audience: approval.audience.clone(),
            message: approval.message.clone(),
            code: approval.code.clone(),
            created_at: approval.created_at,
            expires_at: approval.expires_at,
            seconds_left: (status == ApprovalStatus::Pending)
                .then(|| (approval.expires_at - now).max(0)),
            decided_at,
            approval_url: state.public.join(&format!("/approve/{}", approval.id)),
            receipt_url: approval.receipt().map(|_| {
                state
                    .public
                    .join(&format!("/dashboard/approvals/{}/receipt", approval.id))
            }),
        }
    }
}

/// The user's pending requests and recent history (newest first), as data and as the HTML
/// fragments the dashboard swaps in.
async fn approvals(
    State(state): State<AppState>,
    SessionUser(user): SessionUser,
) -> Result<Response, ApiError> {
    let now = state.clock.now();
    let names = agent_names(&state.store.agents(Some(&user)).await?);
    let requests = Requests::of(&state, &user, now).await?;
    let pending = PendingList {
        pending: &requests.pending_rows(&names, now),
    }
    .render()
    .map_err(ApiError::internal)?;
    let history = HistoryList {
        history: &requests.history_rows(&names, now),
    }
    .render()
    .map_err(ApiError::internal)?;
    let listed = |list: &[ApprovalRecord]| -> Vec<ListedApproval> {
        let item = |approval| ListedApproval::new(&state, approval, &names, now);
        list.iter().map(item).collect()
    };
    Ok(Json(json!({
        "pending": listed(&requests.pending),
        "history": listed(&requests.history),
        "html": {"pending": pending, "history": history},
    }))
    .into_response())
}

/// The receipt of one of the user's decided requests: a page for a browser, the JSON file for
/// anyone else.
async fn receipt(
    State(state): State<AppState>,
    SessionUser(user): SessionUser,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let shown = async {
        let approval = decided_approval(&state, &user, &id).await?;
        if !wants_html(&headers) {
            return receipt_file(&approval, "inline");
        }
        let passkey = match approval.receipt() {
            Some(receipt) => {
                let credential = &receipt.body.evidence.credential_id;
                state.store.passkey(credential).await?
            }
            None => None,
        };
        let page = ReceiptPage::new(
            &approval,
            passkey.as_ref().map(|p| p.name.as_str()),
            &state.public.issuer,
        )
        .ok_or_else(|| ApiError::internal("a decided request without a receipt"))?;
        Ok(page.into_response())
    };
    shown
        .await
        .unwrap_or_else(|error| negotiated(&headers, error))
}

/// The receipt as a file to save, named after its request.
async fn receipt_download(
    State(state): State<AppState>,
    SessionUser(user): SessionUser,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let approval = decided_approval(&state, &user, &id).await?;
    receipt_file(&approval, "attachment")
}

/// `user`'s request `id`, which must have been decided.
async fn decided_approval(
    state: &AppState,
    user: &UserId,
    id: &str,
) -> Result<ApprovalRecord, ApiError> {
    let not_found = || ApiError::not_found("approval request");
    let id = ApprovalId::parse(id).map_err(|_| not_found())?;
    let approval = match state.store.approval(&id).await? {
        Some(approval) if approval.user == *user => approval,
        _ => return Err(not_found()),
    };
    if approval.receipt().is_none() {
        return Err(ApiError::conflict(
            ErrorCode::NotDecided,
            format!(
                "the request is {}; a receipt exists once a person has decided",
                approval.status(state.clock.now()).as_str()
            ),
        ));
    }
    Ok(approval)
}

/// The receipt's JSON, with a `disposition` (`inline` or `attachment`) under a name that says
/// what it is.
fn receipt_file(approval: &ApprovalRecord, disposition: &str) -> Result<Response, ApiError> {
    let receipt = approval
        .receipt()
        .ok_or_else(|| ApiError::internal("a decided request without a receipt"))?;
    let name = receipt_file_name(approval.id.as_str());
    let disposition = HeaderValue::from_str(&format!("{disposition}; filename=\"{name}\""))
        .map_err(ApiError::internal)?;
    Ok(([(header::CONTENT_DISPOSITION, disposition)], Json(receipt)).into_response())
}

/// What the dashboard may set an agent to. There is no way back to "pending": an enrolling agent
/// becomes active only by the person's passkey on its enrollment request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum WantedStatus {
    Active,
    Suspended,
    Revoked,
}

impl From<WantedStatus> for AgentStatus {
    fn from(wanted: WantedStatus) -> AgentStatus {
        match wanted {
            WantedStatus::Active => AgentStatus::Active,
            WantedStatus::Suspended => AgentStatus::Suspended,
            WantedStatus::Revoked => AgentStatus::Revoked,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusRequest {
    status: WantedStatus,
    /// A fresh passkey assertion for exactly this change.
    #[serde(default)]
    step_up: Option<StepUp>,
}

/// The step-up a request carries, checked for `purpose`: a session cookie alone cannot widen
/// what a stolen session can do.
async fn require_step_up(
    state: &AppState,
    user: &UserId,
    step_up: Option<StepUp>,
    purpose: Purpose,
) -> Result<(), ApiError> {
    let step_up = step_up.ok_or_else(|| {
        ApiError::forbidden(
            ErrorCode::StepUpRequired,
            "this change needs a fresh assertion with one of your passkeys (\"step_up\")",
        )
    })?;
    step_up.verify(state, user, &purpose).await
}

/// Suspends, resumes or revokes one of the user's agents. Revoking is final and cancels the
/// agent's pending requests; whoever waits on them (an open dashboard, the agent) is woken.
async fn agent_status(
    State(state): State<AppState>,
    SessionUser(user): SessionUser,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    require_same_origin(&headers, &state.public.origin)?;
    let request: StatusRequest = parse_json(&body)?;
    let agent = match state.store.agent(&id).await? {
        Some(agent) if agent.user == user => agent,
        _ => return Err(ApiError::not_found("agent")),
    };
    match (agent.status, request.status) {
        (AgentStatus::Revoked, _) => {
            return Err(ApiError::conflict(
                ErrorCode::AgentRevoked,
                "this agent is revoked for good; a new key has to enroll again",
            ));
        }
        // Suspending an enrolling agent and resuming it would make it active without the
        // person's passkey on its enrollment request.
        (AgentStatus::Pending, WantedStatus::Active | WantedStatus::Suspended) => {
            return Err(ApiError::conflict(
                ErrorCode::EnrollmentPending,
                "this agent is waiting for its enrollment to be decided: approve or deny its \
                 enrollment request with your passkey, or revoke it",
            ));
        }
        _ => {}
    }
    let purpose = Purpose::SetAgentStatus {
        agent: agent.id.clone(),
        status: request.status.into(),
    };
    require_step_up(&state, &user, request.step_up, purpose).await?;
    // The requests a revocation cancels, so that their waiters can be woken afterwards.
    let cancelled = state
        .approvals
        .cancelled_by(&user, &agent.id, request.status.into(), state.clock.now())
        .await?;
    let command = Command::SetAgentStatus {
        agent: agent.id.clone(),
        status: request.status.into(),
    };
    let agent = match admin::execute(
        state.store.as_ref(),
        &state.public,
        command,
        state.clock.now(),
    )
    .await
    {
        Answer::Agent { agent } => agent,
        Answer::Refused { message } => return Err(ApiError::conflict(ErrorCode::Refused, message)),
        Answer::Unavailable { message } => return Err(StoreError::Unavailable(message).into()),
        other => return Err(ApiError::internal(format!("unexpected answer {other:?}"))),
    };
    state.approvals.cancelled(&user, &cancelled);
    tracing::info!(agent = %agent.id, status = agent.status.as_str(), %user, "agent status set from the dashboard");
    Ok(Json(json!({
        "id": agent.id,
        "name": agent.name,
        "status": agent.status.as_str(),
    }))
    .into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InviteRequest {
    user: String,
    /// A fresh passkey assertion for inviting exactly this user.
    #[serde(default)]
    step_up: Option<StepUp>,
}

/// Creates a one-time invitation link for a new user, as `handsign user invite` does.
async fn invite(
    State(state): State<AppState>,
    SessionUser(inviter): SessionUser,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    require_same_origin(&headers, &state.public.origin)?;
    let request: InviteRequest = parse_json(&body)?;
    let user = UserId::parse(request.user.trim())
        .map_err(|e| ApiError::bad_request(ErrorCode::InvalidUser, e.to_string()))?;
    // Who may bring people in is a role, not every session.
    let admin = state
        .store
        .user(&inviter)
        .await?
        .is_some_and(|record| record.admin);
    if !admin {
        return Err(ApiError::forbidden(
            ErrorCode::AdminRequired,
            "only admins invite people; ask the operator (`handsign user admin NAME` makes an admin)",
        ));
    }
    require_step_up(
        &state,
        &inviter,
        request.step_up,
        Purpose::Invite { user: user.clone() },
    )
    .await?;
    let command = Command::InviteUser {
        user: user.to_string(),
    };
    match admin::execute(
        state.store.as_ref(),
        &state.public,
        command,
        state.clock.now(),
    )
    .await
    {
        Answer::Invitation { user, url } => {
            tracing::info!(%inviter, invited = %user, "invitation created from the dashboard");
            Ok((
                StatusCode::CREATED,
                Json(json!({"user": user, "url": url, "expires_in": INVITATION_SECS})),
            )
                .into_response())
        }
        Answer::Refused { message } => Err(ApiError::conflict(ErrorCode::Refused, message)),
        Answer::Unavailable { message } => Err(StoreError::Unavailable(message).into()),
        other => Err(ApiError::internal(format!("unexpected answer {other:?}"))),
    }
}

/// Server-sent events for the user's open dashboards: `ready` when the stream starts (so a
/// change missed while disconnected is caught up), then `changed` (data: the request id) every
/// time one of the user's requests is created, decided or cancelled. An event carries no state:
/// the page fetches `GET /dashboard/approvals` again.
async fn events(
    State(state): State<AppState>,
    SessionUser(user): SessionUser,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let changes = state.events.user(&user);
    let ready = stream::once(async { Ok(Event::default().event("ready").data("ready")) });
    Sse::new(ready.chain(changes_for(changes))).keep_alive(KeepAlive::default())
}

/// The user's changes as `changed` events. Changes that may have been missed (a lagging
/// waiter, a lost link to other instances) are reported as `lagged`, and the page looks again.
fn changes_for(changes: UserWaiter) -> impl Stream<Item = Result<Event, Infallible>> {
    stream::unfold(changes, |mut changes| async move {
        let data = match changes.next().await? {
            UserChange::Approval(id) => id.to_string(),
            UserChange::Unknown => "lagged".to_owned(),
        };
        Some((Ok(Event::default().event("changed").data(data)), changes))
    })
}
