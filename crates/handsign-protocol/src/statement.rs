//! The approval statement: what a person signs with their passkey.
//!
//! The WebAuthn challenge of an approval ceremony is SHA-256 over the statement's canonical JSON,
//! so the assertion itself names the gateway, the user, the agent, the audience, the action, the
//! exact parameters (through their hash) and the decision. An assertion made for one request or
//! one decision can therefore never be accepted for another.

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::canonical::{self, CanonicalError, Limits};
use crate::params::ParamsHash;

/// The statement version this crate writes and accepts.
pub const STATEMENT_VERSION: &str = "handsign/1";

/// What the person decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Approve,
    Deny,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Approve => "approve",
            Decision::Deny => "deny",
        }
    }
}

/// The approval statement, member for member as `design.md` defines it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Statement {
    /// Always [`STATEMENT_VERSION`].
    pub v: String,
    /// The approval id.
    pub id: String,
    /// The gateway's issuer URL.
    pub iss: String,
    /// The user who decides.
    pub sub: String,
    /// The agent id (RFC 7638 thumbprint of its key).
    pub act: String,
    /// The audience: the service that will perform the action.
    pub aud: String,
    pub action: String,
    pub params_sha256: ParamsHash,
    pub decision: Decision,
    /// base64url of 32 random bytes chosen when the request was created, so that two identical
    /// requests never share a challenge.
    pub nonce: String,
    /// Unix seconds when the request was created.
    pub iat: i64,
}

impl Statement {
    /// The statement's RFC 8785 canonical bytes.
    pub fn canonical_bytes(&self) -> Result<Vec<u8>, CanonicalError> {
        let value = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        let limits = Limits {
            max_bytes: usize::MAX,
            max_depth: 1,
        };
        canonical::canonicalize_value(&value, &limits)
    }

    /// The WebAuthn challenge: SHA-256 over the canonical bytes.
    pub fn digest(&self) -> Result<[u8; 32], CanonicalError> {
        Ok(Sha256::digest(self.canonical_bytes()?).into())
    }

    /// The same statement with the other decision.
    pub fn with_decision(&self, decision: Decision) -> Statement {
        Statement {
            decision,
            ..self.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::CanonicalParams;

    fn statement() -> Statement {
        Statement {
            v: STATEMENT_VERSION.into(),
            id: "apr_1".into(),
            iss: "https://gw.example".into(),
            sub: "alice".into(),
            act: "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k".into(),
            aud: "https://travel.example".into(),
            action: "flights.book".into(),
            params_sha256: CanonicalParams::parse(b"{}", &Limits::default())
                .unwrap()
                .hash(),
            decision: Decision::Approve,
            nonce: "AAAA".into(),
            iat: 1_700_000_000,
        }
    }

    #[test]
    fn canonical_bytes_sort_members_and_name_the_decision() {
        let text = String::from_utf8(statement().canonical_bytes().unwrap()).unwrap();
        assert_eq!(
            text,
            concat!(
                r#"{"act":"kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k","action":"flights.book","#,
                r#""aud":"https://travel.example","decision":"approve","iat":1700000000,"id":"apr_1","#,
                r#""iss":"https://gw.example","nonce":"AAAA","#,
                r#""params_sha256":"RBNvo1WzZ4oRRq0W9-hknpT7T8If536DEMBg9hyq_4o","sub":"alice","#,
                r#""v":"handsign/1"}"#
            )
        );
    }

    #[test]
    fn every_member_changes_the_digest() {
        let base = statement();
        let digest = base.digest().unwrap();
        let variants = [
            Statement {
                id: "apr_2".into(),
                ..base.clone()
            },
            Statement {
                iss: "https://other.example".into(),
                ..base.clone()
            },
            Statement {
                sub: "bob".into(),
                ..base.clone()
            },
            Statement {
                act: "other".into(),
                ..base.clone()
            },
            Statement {
                aud: "https://bank.example".into(),
                ..base.clone()
            },
            Statement {
                action: "flights.cancel".into(),
                ..base.clone()
            },
            Statement {
                params_sha256: CanonicalParams::parse(b"[]", &Limits::default())
                    .unwrap()
                    .hash(),
                ..base.clone()
            },
            base.with_decision(Decision::Deny),
            Statement {
                nonce: "AAAB".into(),
                ..base.clone()
            },
            Statement {
                iat: base.iat + 1,
                ..base.clone()
            },
        ];
        for variant in variants {
            assert_ne!(variant.digest().unwrap(), digest, "{variant:?}");
        }
    }
}
