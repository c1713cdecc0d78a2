//! The same checks as the layer, for a service that is not an HTTP route: a tool gate that
//! collects the token itself, a hook, a queue consumer. It takes the token, how its holder
//! shows the agent key, the action and the params as a JSON value, and answers with the
//! verified claims after consuming the token in the verifier's replay store, or with the
//! refusal the layer would have answered.
//!
//! ```no_run
//! # async fn run(verifier: handsign_verify::Verifier, token: &str, agent_id: &str)
//! # -> Result<(), handsign_verify::TokenRefused> {
//! use handsign_verify::{KeyBinding, Presented};
//!
//! let params = serde_json::json!({"command": "git push", "cwd": "/src/app"});
//! let claims = verifier
//!     .verify_token(&Presented {
//!         token,
//!         // This process collected the token with its own agent key.
//!         binding: KeyBinding::Holder { jkt: agent_id },
//!         action: "claude-code.Bash",
//!         params: &params,
//!     })
//!     .await?;
//! println!("{} approved it", claims.sub);
//! # Ok(()) }
//! ```

use handsign_protocol::api::ErrorCode;
use handsign_protocol::token::ApprovalClaims;

use crate::Verifier;
use crate::check::{self, Holder};
use crate::refusal::Refusal;

/// How the presenter shows that it holds the agent key the token is bound to (`cnf.jkt`).
#[derive(Debug, Clone, Copy)]
pub enum KeyBinding<'a> {
    /// A DPoP proof made for `method` and `url` with `ath` naming the token, as an agent sends
    /// with an HTTP request: for a service that receives tokens from agents over another
    /// transport and names the method and URL the agent's proofs must carry. Its `jti` is
    /// consumed like the token's.
    Proof {
        proof: &'a str,
        method: &'a str,
        url: &'a str,
    },
    /// This process holds the agent key and collected the token itself (a gate asking on an
    /// agent's behalf): the key's RFC 7638 thumbprint, compared with the token's `cnf.jkt`.
    /// Nobody else presents the token, so there is no proof to check.
    Holder { jkt: &'a str },
}

/// A token and what it must approve.
#[derive(Debug, Clone, Copy)]
pub struct Presented<'a> {
    /// The approval token (compact JWS).
    pub token: &'a str,
    pub binding: KeyBinding<'a>,
    /// The action this call performs; the token must name exactly it.
    pub action: &'a str,
    /// The call's params; the token's `params_sha256` must be their RFC 8785 hash.
    pub params: &'a serde_json::Value,
}

/// Why a presented token was not accepted: the `error` code and message the layer would have
/// answered with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} ({code})")]
pub struct TokenRefused {
    pub code: ErrorCode,
    pub message: String,
    /// The check could not be made (replay store or gateway keys unreachable), so the token was
    /// refused without being judged; the layer answers these with `503`.
    pub unavailable: bool,
}

impl From<Refusal> for TokenRefused {
    fn from(refusal: Refusal) -> Self {
        TokenRefused {
            code: refusal.code(),
            unavailable: refusal.is_unavailable(),
            message: refusal.message(),
        }
    }
}

impl Verifier {
    /// Checks `presented` exactly as a route's layer checks a request (signature, issuer,
    /// this verifier's audience, time window, action, params hash, key binding, the replay
    /// record's coverage) and consumes it: `Ok` once per token. Counted in
    /// [`metrics`](Self::metrics) like the layer's requests.
    pub async fn verify_token(
        &self,
        presented: &Presented<'_>,
    ) -> Result<ApprovalClaims, TokenRefused> {
        let verifier = &self.inner;
        let outcome = async {
            let kid = check::token_kid(presented.token)?;
            let keys = verifier.keys.for_kid(&kid).await?;
            let params_sha256 = check::value_hash(verifier, presented.params)?;
            let holder = match presented.binding {
                KeyBinding::Proof { proof, method, url } => Holder::Proof { proof, method, url },
                KeyBinding::Holder { jkt } => Holder::Key { jkt },
            };
            check::accept(
                verifier,
                presented.token,
                &keys,
                presented.action,
                &params_sha256,
                &holder,
            )
            .await
        }
        .await;
        check::counted(verifier, presented.action, outcome).map_err(TokenRefused::from)
    }
}
