//! Passkey registration and login, as JSON over HTTP in the WebAuthn JSON shapes, so that the
//! pages' script stays thin and any client can drive them.

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use handsign_protocol::base64url;
use handsign_protocol::webauthn::AttestedCredential;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest as _, Sha256};
use webauthn_rs::prelude::{
    PasskeyAuthentication, PasskeyRegistration, PublicKeyCredential, RegisterPublicKeyCredential,
};

use crate::clock;
use crate::domain::{PasskeyRecord, UserId, UserRecord, random_bytes};
use crate::error::ApiError;
use crate::routes::{parse_json, passkeys_of, record_passkey_use, require_same_origin};
use crate::session::{self, SessionUser};
use crate::state::AppState;

/// How long a person has between options and finish.
const CEREMONY_SECS: i64 = 300;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/webauthn/register/options", post(register_options))
        .route("/webauthn/register/finish", post(register_finish))
        .route("/webauthn/login/options", post(login_options))
        .route("/webauthn/login/finish", post(login_finish))
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
}

/// A registration in progress, stored between options and finish.
#[derive(Debug, Serialize, Deserialize)]
struct PendingRegistration {
    user: UserId,
    /// The hash of the code being redeemed; `None` when a logged-in user adds a passkey.
    code_sha256: Option<String>,
    state: PasskeyRegistration,
}

async fn register_options(
    State(state): State<AppState>,
    session: Option<SessionUser>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    require_same_origin(&headers, &state.public.origin)?;
    let request: RegisterOptionsRequest = parse_json(&body)?;
    let now = clock::now();
    let (user, code_sha256) = match (request.code, session) {
        (Some(code), _) => {
            let code_sha256 = code_hash(&code);
            let invitation = state
                .store
                .invitation(&code_sha256, now)
                .await?
                .ok_or(crate::store::StoreError::InvalidInvitation)?;
            let named = request
                .user
                .as_deref()
                .map(UserId::parse)
                .transpose()
                .map_err(|e| ApiError::bad_request("invalid_user", e.to_string()))?;
            let user = match (invitation.user, named) {
                (Some(invited), Some(named)) if invited != named => {
                    return Err(ApiError::forbidden(
                        "wrong_user",
                        format!("this invitation is for {invited}, not {named}"),
                    ));
                }
                (Some(invited), _) => invited,
                (None, Some(named)) => {
                    if state.store.user(&named).await?.is_some() {
                        return Err(ApiError::conflict(
                            "already_exists",
                            format!("the name {named} is taken"),
                        ));
                    }
                    named
                }
                (None, None) => {
                    return Err(ApiError::bad_request(
                        "invalid_user",
                        "choose a user name (\"user\")",
                    ));
                }
            };
            (user, Some(code_sha256))
        }
        (None, Some(SessionUser(user))) => (user, None),
        (None, None) => {
            return Err(ApiError::unauthorized(
                "login_required",
                "registering a passkey needs a setup or invitation code, or a logged-in session",
            ));
        }
    };
    let existing = passkeys_of(&state, &user).await?;
    let (options, registration) = state
        .passkeys
        .start_registration(&user, &existing)
        .map_err(ApiError::internal)?;
    let ceremony = ceremony_id()?;
    let pending = PendingRegistration {
        user,
        code_sha256,
        state: registration,
    };
    state
        .store
        .put_ceremony(
            &format!("register:{ceremony}"),
            &serde_json::to_vec(&pending).map_err(ApiError::internal)?,
            now + CEREMONY_SECS,
        )
        .await?;
    Ok(Json(json!({"ceremony": ceremony, "publicKey": options.public_key})).into_response())
}

fn ceremony_id() -> Result<String, ApiError> {
    Ok(base64url::encode(
        random_bytes::<16>().map_err(ApiError::internal)?,
    ))
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

async fn register_finish(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    require_same_origin(&headers, &state.public.origin)?;
    let request: RegisterFinishRequest = parse_json(&body)?;
    let now = clock::now();
    let pending = state
        .store
        .take_ceremony(&format!("register:{}", request.ceremony), now)
        .await?
        .ok_or_else(|| {
            ApiError::conflict(
                "no_ceremony",
                "no registration is in progress with this ceremony id (it was used or expired); start again",
            )
        })?;
    let pending: PendingRegistration =
        serde_json::from_slice(&pending).map_err(ApiError::internal)?;
    let passkey = state
        .passkeys
        .finish_registration(&request.credential, &pending.state)
        .map_err(|e| ApiError::bad_request("passkey_refused", e.to_string()))?;
    // The exact COSE key the authenticator produced, kept for receipts; a key whose algorithm
    // an auditor could not check is refused here.
    let attested = AttestedCredential::from_attestation_object(
        &request.credential.response.attestation_object,
    )
    .map_err(|e| ApiError::bad_request("passkey_refused", e.to_string()))?;
    let name = crate::domain::device_name(request.name.as_deref(), "passkey")
        .map_err(|e| ApiError::bad_request("invalid_name", e))?;
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
        Json(json!({"user": pending.user, "credential_id": record.credential_id})),
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginOptionsRequest {
    #[serde(default)]
    user: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct PendingLogin {
    user: UserId,
    state: PasskeyAuthentication,
}

async fn login_options(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    require_same_origin(&headers, &state.public.origin)?;
    let request: LoginOptionsRequest = parse_json(&body)?;
    let user = request
        .user
        .as_deref()
        .map(UserId::parse)
        .transpose()
        .map_err(|e| ApiError::bad_request("invalid_user", e.to_string()))?
        .ok_or_else(|| {
            ApiError::bad_request("invalid_user", "name the user to log in as (\"user\")")
        })?;
    let passkeys = passkeys_of(&state, &user).await?;
    if passkeys.is_empty() {
        return Err(ApiError::not_found("user with a passkey"));
    }
    let (options, login) = state
        .passkeys
        .start_login(&passkeys)
        .map_err(ApiError::internal)?;
    let ceremony = ceremony_id()?;
    state
        .store
        .put_ceremony(
            &format!("login:{ceremony}"),
            &serde_json::to_vec(&PendingLogin { user, state: login })
                .map_err(ApiError::internal)?,
            clock::now() + CEREMONY_SECS,
        )
        .await?;
    Ok(Json(json!({"ceremony": ceremony, "publicKey": options.public_key})).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginFinishRequest {
    ceremony: String,
    credential: PublicKeyCredential,
}

async fn login_finish(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    require_same_origin(&headers, &state.public.origin)?;
    let request: LoginFinishRequest = parse_json(&body)?;
    let now = clock::now();
    let pending = state
        .store
        .take_ceremony(&format!("login:{}", request.ceremony), now)
        .await?
        .ok_or_else(|| {
            ApiError::conflict(
                "no_ceremony",
                "no login is in progress with this ceremony id (it was used or expired); start again",
            )
        })?;
    let pending: PendingLogin = serde_json::from_slice(&pending).map_err(ApiError::internal)?;
    let result = state
        .passkeys
        .finish_authentication(&request.credential, &pending.state)
        .map_err(|e| ApiError::forbidden("passkey_refused", e.to_string()))?;
    record_passkey_use(&state, &pending.user, &request.credential, &result, now).await?;
    let cookie = session::start(&state, &pending.user).await?;
    Ok((
        [(header::SET_COOKIE, cookie)],
        Json(json!({"user": pending.user})),
    )
        .into_response())
}
