//! Agent authentication: every `/v1` call carries a DPoP proof (RFC 9449, EdDSA) made with the
//! agent's key. There is no other credential: a proof cannot be replayed (its `jti` is
//! remembered for as long as the proof could be fresh), cannot be moved to another method or
//! URL, and names the agent by its key's thumbprint.
//!
//! Nothing is stored for a caller before it is known: a proof is checked (size, signature,
//! method, URL, age) without touching the store, the caller is looked up, and only a caller
//! allowed to make the call has its `jti` recorded. A stranger's proofs, however many and however
//! large, write nothing.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use handsign_protocol::api::ErrorCode;
use handsign_protocol::dpop::{self, VerifiedProof};
use sha2::{Digest as _, Sha256};

use crate::domain::{AgentRecord, AgentStatus};
use crate::error::ApiError;
use crate::state::AppState;

/// The longest `DPoP` header read. An EdDSA proof is about 400 bytes; anything much larger is
/// refused before it is parsed.
pub const MAX_PROOF_BYTES: usize = 2048;

/// A DPoP proof that verified and is fresh, not yet recorded: the caller holds the key with this
/// thumbprint. Record it with [`Proof::record`] once the caller is allowed, before acting.
#[derive(Debug, Clone)]
pub struct Proof {
    verified: VerifiedProof,
}

impl Proof {
    /// RFC 7638 thumbprint of the proof's key: the agent id.
    pub fn key_id(&self) -> &str {
        &self.verified.jkt
    }

    /// Remembers the proof's `jti` for as long as the proof is fresh; a proof seen before is
    /// refused. The store keeps a hash of the key and `jti`, so its entry has a fixed size.
    pub async fn record(&self, state: &AppState) -> Result<(), ApiError> {
        let replay_key = format!(
            "dpop:{}",
            handsign_protocol::base64url::encode(Sha256::digest(format!(
                "{}\0{}",
                self.verified.jkt, self.verified.jti
            )))
        );
        let first_use = state
            .store
            .remember_jti(&replay_key, self.verified.fresh_until(), state.clock.now())
            .await?;
        if first_use {
            Ok(())
        } else {
            Err(ApiError::unauthorized(
                ErrorCode::DpopReplay,
                "this DPoP proof was already used; make a new proof for every request",
            ))
        }
    }
}

impl FromRequestParts<AppState> for Proof {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let mut proofs = parts.headers.get_all("dpop").iter();
        let (Some(proof), None) = (proofs.next(), proofs.next()) else {
            return Err(if parts.headers.contains_key("dpop") {
                ApiError::unauthorized(
                    ErrorCode::InvalidDpopProof,
                    "send exactly one DPoP header; this request has several",
                )
            } else {
                ApiError::unauthorized(
                    ErrorCode::DpopRequired,
                    "agent calls need a DPoP header: a proof made with the agent's Ed25519 key for this method and URL",
                )
            });
        };
        if proof.len() > MAX_PROOF_BYTES {
            return Err(ApiError::unauthorized(
                ErrorCode::InvalidDpopProof,
                format!("the DPoP proof is longer than {MAX_PROOF_BYTES} bytes"),
            ));
        }
        let proof = proof.to_str().map_err(|_| {
            ApiError::unauthorized(ErrorCode::InvalidDpopProof, "the DPoP header is not ASCII")
        })?;
        let url = state.public.join(parts.uri.path());
        let expected = dpop::Expected {
            method: parts.method.as_str(),
            url: &url,
            now: state.clock.now(),
            access_token: None,
        };
        let verified = dpop::verify(proof, &expected).map_err(|e| {
            let hint = match e {
                dpop::DpopError::WrongUrl { .. } => format!(
                    "; proofs name the gateway's public URL, {}",
                    state.public.issuer
                ),
                _ => String::new(),
            };
            ApiError::unauthorized(ErrorCode::InvalidDpopProof, format!("{e}{hint}"))
        })?;
        Ok(Proof { verified })
    }
}

/// An enrolled agent that is not revoked, proven by its DPoP proof, which is recorded.
#[derive(Debug, Clone)]
pub struct Agent(pub AgentRecord);

impl FromRequestParts<AppState> for Agent {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let proof = Proof::from_request_parts(parts, state).await?;
        let agent = known_agent(state, proof.key_id()).await?;
        proof.record(state).await?;
        Ok(Agent(agent))
    }
}

/// The agent with this key, refusing unknown, expired-enrollment and revoked ones.
async fn known_agent(state: &AppState, id: &str) -> Result<AgentRecord, ApiError> {
    let agent = state
        .store
        .agent(id)
        .await?
        .filter(|agent| agent.exists_at(state.clock.now()))
        .ok_or_else(|| {
            ApiError::unauthorized(
                ErrorCode::UnknownAgent,
                format!(
                    "no agent has the key {id}; enroll with POST /v1/agents/enroll or ask the operator to run `handsign agent add`"
                ),
            )
        })?;
    if agent.status == AgentStatus::Revoked {
        return Err(ApiError::forbidden(
            ErrorCode::AgentRevoked,
            "this agent was revoked and can do nothing more",
        ));
    }
    Ok(agent)
}

impl Agent {
    /// Refuses unless the agent is active (not pending enrollment, not suspended).
    pub fn require_active(&self) -> Result<&AgentRecord, ApiError> {
        match self.0.status {
            AgentStatus::Active => Ok(&self.0),
            AgentStatus::Pending => Err(ApiError::forbidden(
                ErrorCode::AgentNotEnrolled,
                "this agent's enrollment has not been approved yet",
            )),
            AgentStatus::Suspended => Err(ApiError::forbidden(
                ErrorCode::AgentSuspended,
                "this agent is suspended; ask its user to resume it",
            )),
            AgentStatus::Revoked => Err(ApiError::forbidden(
                ErrorCode::AgentRevoked,
                "this agent was revoked and can do nothing more",
            )),
        }
    }
}
