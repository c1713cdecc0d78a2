//! Agent authentication: every `/v1` call carries a DPoP proof (RFC 9449, EdDSA) made with the
//! agent's key. There is no other credential: a proof cannot be replayed (its `jti` is
//! remembered for the acceptance window), cannot be moved to another method or URL, and names
//! the agent by its key's thumbprint.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use handsign_protocol::dpop::{self, MAX_PROOF_AGE_SECS};

use crate::clock;
use crate::domain::{AgentRecord, AgentStatus};
use crate::error::ApiError;
use crate::state::AppState;

/// A valid, fresh DPoP proof: the caller holds the key with this thumbprint.
#[derive(Debug, Clone)]
pub struct KeyHolder {
    /// RFC 7638 thumbprint of the proof's key: the agent id.
    pub agent_id: String,
}

impl FromRequestParts<AppState> for KeyHolder {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let proof = parts
            .headers
            .get("dpop")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                ApiError::unauthorized(
                    "dpop_required",
                    "agent calls need a DPoP header: a proof made with the agent's Ed25519 key for this method and URL",
                )
            })?;
        let now = clock::now();
        let url = state.public.join(parts.uri.path());
        let expected = dpop::Expected {
            method: parts.method.as_str(),
            url: &url,
            now,
            access_token: None,
        };
        let verified = dpop::verify(proof, &expected)
            .map_err(|e| ApiError::unauthorized("invalid_dpop_proof", e.to_string()))?;
        let replay_key = format!("dpop:{}:{}", verified.jkt, verified.jti);
        let first_use = state
            .store
            .remember_jti(&replay_key, now + 2 * MAX_PROOF_AGE_SECS, now)
            .await?;
        if !first_use {
            return Err(ApiError::unauthorized(
                "dpop_replay",
                "this DPoP proof was already used; make a new proof for every request",
            ));
        }
        Ok(KeyHolder {
            agent_id: verified.jkt,
        })
    }
}

/// An enrolled agent that is not revoked, proven by its DPoP proof.
#[derive(Debug, Clone)]
pub struct Agent(pub AgentRecord);

impl FromRequestParts<AppState> for Agent {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let holder = KeyHolder::from_request_parts(parts, state).await?;
        let agent = state.store.agent(&holder.agent_id).await?.ok_or_else(|| {
            ApiError::unauthorized(
                "unknown_agent",
                format!(
                    "no agent has the key {}; enroll with POST /v1/agents/enroll or ask the operator to run `handsign agent add`",
                    holder.agent_id
                ),
            )
        })?;
        if agent.status == AgentStatus::Revoked {
            return Err(ApiError::forbidden(
                "agent_revoked",
                "this agent was revoked and can do nothing more",
            ));
        }
        Ok(Agent(agent))
    }
}

impl Agent {
    /// Refuses unless the agent is active (not pending enrollment, not suspended).
    pub fn require_active(&self) -> Result<&AgentRecord, ApiError> {
        match self.0.status {
            AgentStatus::Active => Ok(&self.0),
            AgentStatus::Pending => Err(ApiError::forbidden(
                "agent_not_enrolled",
                "this agent's enrollment has not been approved yet",
            )),
            AgentStatus::Suspended => Err(ApiError::forbidden(
                "agent_suspended",
                "this agent is suspended; ask its user to resume it",
            )),
            AgentStatus::Revoked => Err(ApiError::forbidden(
                "agent_revoked",
                "this agent was revoked and can do nothing more",
            )),
        }
    }
}
