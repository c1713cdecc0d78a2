//! Passkey registration and login, as JSON over HTTP in the WebAuthn JSON shapes, so that the
//! pages' script stays thin and any client can drive them.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use handsign_protocol::api::{CeremonyOptions, ErrorBody, ErrorCode, LoggedIn, PasskeyRegistered};
use handsign_protocol::base64url;
use handsign_protocol::webauthn::AttestedCredential;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use utoipa_axum::{router::OpenApiRouter, routes};
use webauthn_rs::prelude::{
    DiscoverableAuthentication, PasskeyAuthentication, PasskeyRegistration, PublicKeyCredential,
    RegisterPublicKeyCredential,
};

use crate::domain::{AgentStatus, PasskeyRecord, UserId, UserRecord, random_bytes};
use crate::error::ApiError;
use crate::passkeys::CeremonyError;
use crate::rate::{ClientAddress, Rate, check_rate};
use crate::routes::{parse_json, passkeys_of, record_passkey_use, require_same_origin};
use crate::session::{self, SessionUser};
use crate::state::AppState;
use crate::store::StoreError;

/// How long a person has between options and finish.
const CEREMONY_SECS: i64 = 300;

/// The passkey ceremonies, each registered with its OpenAPI description (`tag = "passkeys"`).
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(register_options))
        .routes(routes!(register_finish))
        .routes(routes!(login_options))
        .routes(routes!(login_finish))
        .routes(routes!(step_up_options))
}

/// base64url SHA-256 of a setup or invitation code: what the store keeps.
pub fn code_hash(code: &str) -> String {
    base64url::encode(Sha256::digest(code.as_bytes()))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterOptionsRequest {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    user: Option<String>,
    /// For a logged-in person adding a passkey: a fresh assertion for
    /// [`Purpose::AddPasskey`].
    #[serde(default)]
    step_up: Option<StepUp>,
}

/// A registration in progress, stored between options and finish.
#[derive(Debug, Serialize, Deserialize)]
struct PendingRegistration {
    user: UserId,
    /// The hash of the code being redeemed; `None` when a logged-in user adds a passkey.
    code_sha256: Option<String>,
    /// Whether the code is the setup code: the first user is an admin.
    #[serde(default)]
    first_user: bool,
    state: PasskeyRegistration,
}

#[utoipa::path(post, path = "/webauthn/register/options", tag = "passkeys",
    request_body(content = Object, description = "`{\"code\"?, \"user\"?, \"step_up\"?}`"),
    responses((status = 200, description = "`{\"ceremony\", \"publicKey\"}`: the options for navigator.credentials", body = Object), (status = "4XX", description = "refused: `{\"error\", \"message\"}`", body = ErrorBody), (status = 503, description = "storage unavailable; nothing was decided or issued", body = ErrorBody)))]
async fn register_options(
    State(state): State<AppState>,
    client: ClientAddress,
    session: Option<SessionUser>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    require_same_origin(&headers, &state.public.origin)?;
    check_rate(&state, Rate::CeremoniesFrom(client.0), state.clock.now()).await?;
    let request: RegisterOptionsRequest = parse_json(&body)?;
    let now = state.clock.now();
    let (user, code_sha256, first_user) = match (request.code, session) {
        (Some(code), _) => {
            let code_sha256 = code_hash(&code);
            let invitation = state
                .store
                .invitation(&code_sha256, now)
                .await?
                .ok_or(StoreError::InvalidInvitation)?;
            // Checked again, atomically, when the invitation is redeemed.
            if invitation.user.is_none() && state.store.count_users().await? > 0 {
                return Err(StoreError::InvalidInvitation.into());
            }
            let named = request
                .user
                .as_deref()
                .map(UserId::parse)
                .transpose()
                .map_err(|e| ApiError::bad_request(ErrorCode::InvalidUser, e.to_string()))?;
            let first_user = invitation.user.is_none();
            let user = match (invitation.user, named) {
                (Some(invited), Some(named)) if invited != named => {
                    return Err(ApiError::forbidden(
                        ErrorCode::WrongUser,
                        format!("this invitation is for {invited}, not {named}"),
                    ));
                }
                (Some(invited), _) => invited,
                (None, Some(named)) => named,
                (None, None) => {
                    return Err(ApiError::bad_request(
                        ErrorCode::InvalidUser,
                        "choose a user name (\"user\")",
                    ));
                }
            };
            // An invitation creates a user and nothing else: a passkey for an existing account
            // is added by that account, with a fresh assertion.
            if state.store.user(&user).await?.is_some() {
                return Err(ApiError::conflict(
                    ErrorCode::AlreadyExists,
                    format!(
                        "{user} already exists; an invitation only creates a new user (an existing user adds passkeys from their dashboard)"
                    ),
                ));
            }
            (user, Some(code_sha256), first_user)
        }
        (None, Some(SessionUser(user))) => {
            let step_up = request.step_up.ok_or_else(|| {
                ApiError::forbidden(
                    ErrorCode::StepUpRequired,
                    "adding a passkey needs a fresh assertion with one of your passkeys (\"step_up\")",
                )
            })?;
            step_up.verify(&state, &user, &Purpose::AddPasskey).await?;
            (user, None, false)
        }
        (None, None) => {
            return Err(ApiError::unauthorized(
                ErrorCode::LoginRequired,
                "registering a passkey needs a setup or invitation code, or a logged-in session",
            ));
        }
    };
    let existing = passkeys_of(&state, &user).await?;
    let (options, registration) = state
        .passkeys
        .start_registration(&user, &existing)
        .map_err(ApiError::internal)?;
    let pending = PendingRegistration {
        user,
        code_sha256,
        first_user,
        state: registration,
    };
    begin(&state, "register", &pending, &options.public_key).await
}

/// A fresh, unguessable ceremony id: 128 random bits.
pub fn ceremony_id() -> Result<String, ApiError> {
    Ok(base64url::encode(
        random_bytes::<16>().map_err(ApiError::internal)?,
    ))
}

/// Keeps a ceremony's state (`pending`) for [`CEREMONY_SECS`] under a fresh ceremony id, and
/// answers the ceremony's options with that id, which the browser sends back to finish.
async fn begin(
    state: &AppState,
    kind: &str,
    pending: &impl Serialize,
    public_key: &impl Serialize,
) -> Result<Response, ApiError> {
    let ceremony = ceremony_id()?;
    state
        .store
        .put_ceremony(
            &format!("{kind}:{ceremony}"),
            &serde_json::to_vec(pending).map_err(ApiError::internal)?,
            state.clock.now() + CEREMONY_SECS,
        )
        .await?;
    Ok(Json(CeremonyOptions {
        ceremony,
        public_key,
    })
    .into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterFinishRequest {
    ceremony: String,
    credential: RegisterPublicKeyCredential,
    /// What to call this passkey, e.g. "phone".
    #[serde(default)]
    name: Option<String>,
}

#[utoipa::path(post, path = "/webauthn/register/finish", tag = "passkeys",
    request_body(content = Object, description = "`{\"ceremony\", \"credential\": RegistrationResponseJSON}`"),
    responses((status = 201, description = "registered; sets the session cookie", body = PasskeyRegistered), (status = "4XX", description = "refused: `{\"error\", \"message\"}`", body = ErrorBody), (status = 503, description = "storage unavailable; nothing was decided or issued", body = ErrorBody)))]
async fn register_finish(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    require_same_origin(&headers, &state.public.origin)?;
    let request: RegisterFinishRequest = parse_json(&body)?;
    let now = state.clock.now();
    let pending = state
        .store
        .take_ceremony(&format!("register:{}", request.ceremony), now)
        .await?
        .ok_or_else(|| {
            ApiError::conflict(
                ErrorCode::NoCeremony,
                "no registration is in progress with this ceremony id (it was used or expired); start again",
            )
        })?;
    let pending: PendingRegistration =
        serde_json::from_slice(&pending).map_err(ApiError::internal)?;
    let passkey = state
        .passkeys
        .finish_registration(&request.credential, &pending.state)
        .map_err(|e| ApiError::bad_request(ErrorCode::PasskeyRefused, e.to_string()))?;
    // The exact COSE key the authenticator produced, kept for receipts; a key whose algorithm
    // an auditor could not check is refused here.
    let attested = AttestedCredential::from_attestation_object(
        &request.credential.response.attestation_object,
    )
    .map_err(|e| ApiError::bad_request(ErrorCode::PasskeyRefused, e.to_string()))?;
    let name = crate::domain::device_name(request.name.as_deref(), "passkey")
        .map_err(|e| ApiError::bad_request(ErrorCode::InvalidName, e))?;
    let record = PasskeyRecord {
        credential_id: base64url::encode(passkey.cred_id()),
        user: pending.user.clone(),
        name,
        passkey,
        public_key_cose: base64url::encode(attested.credential_public_key_cose()),
        created_at: now,
        last_used_at: None,
    };
    match &pending.code_sha256 {
        Some(code_sha256) => {
            let user = UserRecord {
                id: pending.user.clone(),
                created_at: now,
                admin: pending.first_user,
            };
            state
                .store
                .redeem_invitation(code_sha256, &user, &record, now)
                .await?;
        }
        None => state.store.add_passkey(&record).await?,
    }
    tracing::info!(user = %pending.user, "passkey registered");
    let cookie = session::start(&state, &pending.user).await?;
    Ok((
        StatusCode::CREATED,
        [(header::SET_COOKIE, cookie)],
        Json(PasskeyRegistered {
            user: pending.user.as_str().to_owned(),
            credential_id: record.credential_id,
        }),
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginOptionsRequest {
    /// Without a name, the passkey picks the account (discoverable credentials): the answer is
    /// the same whoever asks, so it reveals nothing about which names exist. With a name, only
    /// that user's credentials are allowed (for security keys that keep no account).
    #[serde(default)]
    user: Option<String>,
}

/// A login in progress: for a named user, or for whichever account the passkey names.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum PendingLogin {
    Named {
        user: UserId,
        state: PasskeyAuthentication,
    },
    Discoverable {
        state: DiscoverableAuthentication,
    },
}

#[utoipa::path(post, path = "/webauthn/login/options", tag = "passkeys",
    request_body(content = Object, description = "`{}` or `{\"user\"}`"),
    responses((status = 200, description = "`{\"ceremony\", \"publicKey\"}`: the options for navigator.credentials", body = Object), (status = "4XX", description = "refused: `{\"error\", \"message\"}`", body = ErrorBody), (status = 503, description = "storage unavailable; nothing was decided or issued", body = ErrorBody)))]
async fn login_options(
    State(state): State<AppState>,
    client: ClientAddress,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    require_same_origin(&headers, &state.public.origin)?;
    check_rate(&state, Rate::CeremoniesFrom(client.0), state.clock.now()).await?;
    let request: LoginOptionsRequest = parse_json(&body)?;
    let user = request
        .user
        .as_deref()
        .map(UserId::parse)
        .transpose()
        .map_err(|e| ApiError::bad_request(ErrorCode::InvalidUser, e.to_string()))?;
    let (public_key, pending) = match user {
        None => {
            let (options, login) = state
                .passkeys
                .start_discoverable_login()
                .map_err(ApiError::internal)?;
            (
                options.public_key,
                PendingLogin::Discoverable { state: login },
            )
        }
        Some(user) => {
            let passkeys = passkeys_of(&state, &user).await?;
            if passkeys.is_empty() {
                return Err(ApiError::not_found("user with a passkey"));
            }
            let (options, login) = state
                .passkeys
                .start_login(&passkeys)
                .map_err(ApiError::internal)?;
            (
                options.public_key,
                PendingLogin::Named { user, state: login },
            )
        }
    };
    begin(&state, "login", &pending, &public_key).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginFinishRequest {
    ceremony: String,
    credential: PublicKeyCredential,
}

#[utoipa::path(post, path = "/webauthn/login/finish", tag = "passkeys",
    request_body(content = Object, description = "`{\"ceremony\", \"credential\": AuthenticationResponseJSON}`"),
    responses((status = 200, description = "logged in; sets the session cookie", body = LoggedIn), (status = "4XX", description = "refused: `{\"error\", \"message\"}`", body = ErrorBody), (status = 503, description = "storage unavailable; nothing was decided or issued", body = ErrorBody)))]
async fn login_finish(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    require_same_origin(&headers, &state.public.origin)?;
    let request: LoginFinishRequest = parse_json(&body)?;
    let now = state.clock.now();
    let pending = state
        .store
        .take_ceremony(&format!("login:{}", request.ceremony), now)
        .await?
        .ok_or_else(|| {
            ApiError::conflict(
                ErrorCode::NoCeremony,
                "no login is in progress with this ceremony id (it was used or expired); start again",
            )
        })?;
    let pending: PendingLogin = serde_json::from_slice(&pending).map_err(ApiError::internal)?;
    let refused = |e: CeremonyError| ApiError::forbidden(ErrorCode::PasskeyRefused, e.to_string());
    let (user, result) = match pending {
        PendingLogin::Named { user, state: login } => {
            let result = state
                .passkeys
                .finish_authentication(&request.credential, &login)
                .map_err(refused)?;
            (user, result)
        }
        PendingLogin::Discoverable { state: login } => {
            // The account is the one the credential is registered to in our records; the
            // user handle the browser sends is never trusted.
            let credential_id = base64url::encode(&request.credential.raw_id);
            let passkey = state.store.passkey(&credential_id).await?.ok_or_else(|| {
                ApiError::forbidden(
                    ErrorCode::PasskeyRefused,
                    "this passkey is not registered here",
                )
            })?;
            let result = state
                .passkeys
                .finish_discoverable_login(&request.credential, login, &passkey.passkey)
                .map_err(refused)?;
            (passkey.user, result)
        }
    };
    record_passkey_use(&state, &user, &request.credential, &result, now).await?;
    let cookie = session::start(&state, &user).await?;
    let answer = LoggedIn {
        user: user.as_str().to_owned(),
    };
    Ok(([(header::SET_COOKIE, cookie)], Json(answer)).into_response())
}

/// What a step-up assertion is for: one sensitive action, named exactly, so that an assertion
/// made to invite one person cannot revoke an agent or invite another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum Purpose {
    AddPasskey,
    Invite { user: UserId },
    SetAgentStatus { agent: String, status: AgentStatus },
}

/// A step-up in progress: whose, and for what.
#[derive(Debug, Serialize, Deserialize)]
struct PendingStepUp {
    user: UserId,
    purpose: Purpose,
    state: PasskeyAuthentication,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StepUpOptionsRequest {
    purpose: Purpose,
}

/// Starts a step-up: an assertion by one of the logged-in person's passkeys, for `purpose`.
#[utoipa::path(post, path = "/webauthn/step-up/options", tag = "passkeys",
    request_body(content = Object, description = "`{\"purpose\"}`: the sensitive action the assertion is for"),
    responses((status = 200, description = "`{\"ceremony\", \"publicKey\"}`: the options for navigator.credentials", body = Object), (status = "4XX", description = "refused: `{\"error\", \"message\"}`", body = ErrorBody), (status = 503, description = "storage unavailable; nothing was decided or issued", body = ErrorBody)))]
async fn step_up_options(
    State(state): State<AppState>,
    client: ClientAddress,
    SessionUser(user): SessionUser,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    require_same_origin(&headers, &state.public.origin)?;
    check_rate(&state, Rate::CeremoniesFrom(client.0), state.clock.now()).await?;
    let request: StepUpOptionsRequest = parse_json(&body)?;
    let passkeys = passkeys_of(&state, &user).await?;
    let (options, login) = state
        .passkeys
        .start_login(&passkeys)
        .map_err(ApiError::internal)?;
    let pending = PendingStepUp {
        user,
        purpose: request.purpose,
        state: login,
    };
    begin(&state, "step-up", &pending, &options.public_key).await
}

/// A step-up assertion, carried by the request of the action it is for.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepUp {
    ceremony: String,
    credential: PublicKeyCredential,
}

impl StepUp {
    /// Checks that `user` just asserted with one of their passkeys for exactly `purpose`. The
    /// ceremony is taken out of the store first, so an assertion steps up one action once.
    pub async fn verify(
        &self,
        state: &AppState,
        user: &UserId,
        purpose: &Purpose,
    ) -> Result<(), ApiError> {
        let now = state.clock.now();
        let pending = state
            .store
            .take_ceremony(&format!("step-up:{}", self.ceremony), now)
            .await?
            .ok_or_else(|| {
                ApiError::forbidden(
                    ErrorCode::StepUpRequired,
                    "no step-up is in progress with this ceremony id (it was used or expired); confirm with your passkey again",
                )
            })?;
        let pending: PendingStepUp =
            serde_json::from_slice(&pending).map_err(ApiError::internal)?;
        if pending.user != *user || pending.purpose != *purpose {
            return Err(ApiError::forbidden(
                ErrorCode::StepUpRequired,
                "this passkey confirmation was for another action; confirm this one",
            ));
        }
        let result = state
            .passkeys
            .finish_authentication(&self.credential, &pending.state)
            .map_err(|e| ApiError::forbidden(ErrorCode::PasskeyRefused, e.to_string()))?;
        record_passkey_use(state, user, &self.credential, &result, now).await?;
        Ok(())
    }
}
