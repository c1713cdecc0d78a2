//! The approval token: an EdDSA JWT good for one action with exact parameters, for one audience,
//! for at most 30 seconds, once.
//!
//! [`verify`] makes every check of `design.md` "The approval token" except the two that need
//! state or the HTTP request: the DPoP proof (see [`crate::dpop`]) and consuming the `jti` once.
//! Each failed check has its own [`TokenError`] variant and a stable [`TokenError::code`], which
//! the service middleware puts in `WWW-Authenticate` so that a service author can tell which check
//! failed.

use serde::{Deserialize, Serialize};

use crate::api::ErrorCode;
use crate::jws::{self, CompactJws, JwsError};
use crate::keys::{KeySet, SigningKey};
use crate::params::ParamsHash;

/// The `typ` header of an approval token; a JWT of any other type is refused, so that no other
/// kind of token signed with the same key can pass for an approval.
pub const TOKEN_TYP: &str = "handsign-approval+jwt";
/// Longest lifetime a token may have: `exp - iat` and `exp - nbf` are at most this.
pub const MAX_LIFETIME_SECS: i64 = 30;
/// Largest clock skew a verifier may allow.
pub const MAX_SKEW_SECS: i64 = 5;

/// The token's protected header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenHeader {
    pub alg: String,
    #[serde(default)]
    pub typ: Option<String>,
    #[serde(default)]
    pub kid: Option<String>,
}

/// The actor claim (RFC 8693 section 4.1): the agent acting for the user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub sub: String,
}

/// The confirmation claim (RFC 9449 section 6.1): the thumbprint of the key a DPoP proof must be
/// made with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confirmation {
    pub jkt: String,
}

/// The claims of an approval token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalClaims {
    pub iss: String,
    /// The user who approved.
    pub sub: String,
    pub aud: String,
    pub act: Actor,
    pub action: String,
    pub params_sha256: ParamsHash,
    /// The approval id, which leads to the receipt.
    pub approval: String,
    /// Unique token id, consumed once by the service.
    pub jti: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cnf: Option<Confirmation>,
}

/// Signs `claims` as an approval token under `key`, with `kid` set to the key's thumbprint.
pub fn mint(key: &SigningKey, claims: &ApprovalClaims) -> Result<String, serde_json::Error> {
    let header = TokenHeader {
        alg: "EdDSA".into(),
        typ: Some(TOKEN_TYP.into()),
        kid: Some(key.kid().into()),
    };
    jws::sign(key, &header, claims)
}

/// What the service expects of a token, from its configuration and from the request it received.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    /// The gateway's issuer URL.
    pub issuer: &'a str,
    /// This service's audience.
    pub audience: &'a str,
    /// The action the route performs.
    pub action: &'a str,
    /// The hash of the params the request actually carries.
    pub params_sha256: &'a ParamsHash,
    /// Unix seconds now.
    pub now: i64,
    /// Allowed clock skew in seconds; values above [`MAX_SKEW_SECS`] are treated as that.
    pub skew: i64,
}

/// Why a token was refused: one variant per check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("malformed token: {0}")]
    Malformed(String),
    #[error("wrong alg {found:?}: approval tokens are signed with EdDSA only")]
    WrongAlg { found: String },
    #[error("wrong typ {found:?}: expected \"{TOKEN_TYP}\"")]
    WrongTyp { found: Option<String> },
    #[error("the token has no kid, so no key can be chosen to verify it")]
    MissingKid,
    #[error("unknown kid {kid:?}: no key with this id in the gateway's key set")]
    UnknownKid { kid: String },
    #[error("bad signature: the token was not signed by the key {kid:?} or was altered")]
    BadSignature { kid: String },
    #[error("malformed claims: {0}")]
    MalformedClaims(String),
    #[error("wrong issuer {found:?}: expected {expected:?}")]
    WrongIssuer { expected: String, found: String },
    #[error("wrong audience {found:?}: this service is {expected:?}")]
    WrongAudience { expected: String, found: String },
    #[error("expired at {exp} (now {now}, skew {skew} s)")]
    Expired { exp: i64, now: i64, skew: i64 },
    #[error("not yet valid: nbf {nbf} (now {now}, skew {skew} s)")]
    NotYetValid { nbf: i64, now: i64, skew: i64 },
    #[error("lifetime {lifetime} s is over the {MAX_LIFETIME_SECS} s allowed")]
    LifetimeTooLong { lifetime: i64 },
    #[error("action differs: the token approves {found:?}, this route performs {expected:?}")]
    ActionMismatch { expected: String, found: String },
    #[error(
        "params hash differs: the token approves params_sha256 {found}, the request carries {expected}"
    )]
    ParamsMismatch {
        expected: ParamsHash,
        found: ParamsHash,
    },
}

impl TokenError {
    /// A stable machine-readable code for the failed check, used as `error="..."` in
    /// `WWW-Authenticate` and as the CLI's verdict.
    pub fn code(&self) -> ErrorCode {
        match self {
            TokenError::Malformed(_) => ErrorCode::MalformedToken,
            TokenError::WrongAlg { .. } => ErrorCode::WrongAlg,
            TokenError::WrongTyp { .. } => ErrorCode::WrongTyp,
            TokenError::MissingKid | TokenError::UnknownKid { .. } => ErrorCode::UnknownKid,
            TokenError::BadSignature { .. } => ErrorCode::BadSignature,
            TokenError::MalformedClaims(_) => ErrorCode::MalformedClaims,
            TokenError::WrongIssuer { .. } => ErrorCode::WrongIssuer,
            TokenError::WrongAudience { .. } => ErrorCode::WrongAudience,
            TokenError::Expired { .. } => ErrorCode::Expired,
            TokenError::NotYetValid { .. } => ErrorCode::NotYetValid,
            TokenError::LifetimeTooLong { .. } => ErrorCode::LifetimeTooLong,
            TokenError::ActionMismatch { .. } => ErrorCode::ActionMismatch,
            TokenError::ParamsMismatch { .. } => ErrorCode::ParamsMismatch,
        }
    }
}

impl From<JwsError> for TokenError {
    fn from(e: JwsError) -> Self {
        TokenError::Malformed(e.to_string())
    }
}

/// Checks `token` against `keys` and `expected`, in this order: envelope, `alg`, `typ`, `kid`,
/// signature, claims, `iss`, `aud`, time window, lifetime, action, params hash. Nothing from the
/// claims is looked at before the signature holds.
pub fn verify(
    token: &str,
    keys: &KeySet,
    expected: &Expected<'_>,
) -> Result<ApprovalClaims, TokenError> {
    let jws = CompactJws::parse(token)?;
    let header: TokenHeader = jws.header()?;
    if header.alg != "EdDSA" {
        return Err(TokenError::WrongAlg { found: header.alg });
    }
    if header.typ.as_deref() != Some(TOKEN_TYP) {
        return Err(TokenError::WrongTyp { found: header.typ });
    }
    let kid = header.kid.ok_or(TokenError::MissingKid)?;
    let key = keys
        .get(&kid)
        .ok_or_else(|| TokenError::UnknownKid { kid: kid.clone() })?;
    if !jws.verify(key) {
        return Err(TokenError::BadSignature { kid });
    }
    let claims: ApprovalClaims = jws.payload().map_err(|e| match e {
        JwsError::Json { reason, .. } => TokenError::MalformedClaims(reason),
        other => TokenError::Malformed(other.to_string()),
    })?;
    check_claims(&claims, expected)?;
    Ok(claims)
}

fn check_claims(claims: &ApprovalClaims, expected: &Expected<'_>) -> Result<(), TokenError> {
    if claims.iss != expected.issuer {
        return Err(TokenError::WrongIssuer {
            expected: expected.issuer.into(),
            found: claims.iss.clone(),
        });
    }
    if claims.aud != expected.audience {
        return Err(TokenError::WrongAudience {
            expected: expected.audience.into(),
            found: claims.aud.clone(),
        });
    }
    let (now, skew) = (expected.now, expected.skew.clamp(0, MAX_SKEW_SECS));
    if now >= claims.exp.saturating_add(skew) {
        return Err(TokenError::Expired {
            exp: claims.exp,
            now,
            skew,
        });
    }
    if claims.nbf.saturating_sub(skew) > now {
        return Err(TokenError::NotYetValid {
            nbf: claims.nbf,
            now,
            skew,
        });
    }
    let lifetime = claims.exp.saturating_sub(claims.iat.min(claims.nbf));
    if lifetime > MAX_LIFETIME_SECS {
        return Err(TokenError::LifetimeTooLong { lifetime });
    }
    if claims.action != expected.action {
        return Err(TokenError::ActionMismatch {
            expected: expected.action.into(),
            found: claims.action.clone(),
        });
    }
    if claims.params_sha256 != *expected.params_sha256 {
        return Err(TokenError::ParamsMismatch {
            expected: expected.params_sha256.clone(),
            found: claims.params_sha256.clone(),
        });
    }
    Ok(())
}
