//! The receipt: the evidence of a decision, checkable offline by anyone.
//!
//! A receipt holds the statement, the exact params, the WebAuthn assertion the person made over the
//! statement's digest, and the credential's public key as registered, all signed by the gateway.
//! [`Receipt::verify`] needs no network and no database: it recomputes the params hash and the
//! statement digest and checks the assertion against the public key itself.
//!
//! All of that only shows the receipt is self-consistent: anyone can make one from scratch with
//! their own passkey, RP ID and origin. It becomes evidence against a [`TrustAnchor`], something
//! the auditor trusts apart from the receipt: the gateway's keys (its signature attests that the
//! passkey was registered to the statement's user, at the receipt's RP ID and origins), or a
//! credential key the auditor knows to be the user's, with the RP ID and origin it was used at.

use serde::{Deserialize, Serialize};

use crate::base64url;
use crate::canonical::{self, CanonicalError, Limits};
use crate::jws::{self, CompactJws};
use crate::keys::{KeySet, SigningKey};
use crate::params::{CanonicalParams, ParamsHash};
use crate::statement::{Decision, STATEMENT_VERSION, Statement};
use crate::webauthn::{
    Assertion, AssertionError, AssertionExpectations, CoseKeyError, CredentialPublicKey,
    verify_assertion,
};

/// The receipt version this crate writes and accepts.
pub const RECEIPT_VERSION: &str = "handsign-receipt/1";
/// The `typ` of the gateway's signature over a receipt.
pub const RECEIPT_SIGNATURE_TYP: &str = "handsign-receipt+jws";

/// Limits for reading params back from a receipt: generous, since the gateway already enforced its
/// own, and an auditor must be able to check whatever a gateway was configured to accept.
const RECEIPT_LIMITS: Limits = Limits {
    max_bytes: 64 * 1024 * 1024,
    max_depth: 1024,
};

/// The WebAuthn assertion as the browser returned it, every member base64url.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Evidence {
    pub credential_id: String,
    pub authenticator_data: String,
    pub client_data_json: String,
    pub signature: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_handle: Option<String>,
}

/// The credential's public key as registered: the COSE key the authenticator produced, and the
/// same key as a JWK for tools that read JWKs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credential {
    pub public_key_cose: String,
    pub public_key_jwk: serde_json::Value,
}

/// Everything a receipt says, before the gateway signs it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiptBody {
    /// Always [`RECEIPT_VERSION`].
    pub v: String,
    pub statement: Statement,
    /// The params exactly as approved.
    pub params: serde_json::Value,
    pub evidence: Evidence,
    pub credential: Credential,
    pub rp_id: String,
    /// The origins the gateway accepted assertions from.
    pub origins: Vec<String>,
}

/// A receipt: the body and the gateway's signature. As JSON, the body's members and `signature`
/// side by side.
#[derive(Debug, Clone)]
pub struct Receipt {
    pub body: ReceiptBody,
    /// A compact JWS with detached payload (`header..signature`, RFC 7515 Appendix F) whose payload
    /// is the RFC 8785 form of every other member of the receipt.
    pub signature: String,
}

impl Serialize for Receipt {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut value = serde_json::to_value(&self.body).map_err(serde::ser::Error::custom)?;
        if let serde_json::Value::Object(members) = &mut value {
            members.insert("signature".into(), self.signature.clone().into());
        }
        value.serialize(serializer)
    }
}

/// Reads a receipt leniently (for storage round trips); [`Receipt::parse`] is the strict reader
/// for receipts from elsewhere.
impl<'de> Deserialize<'de> for Receipt {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut value = serde_json::Value::deserialize(deserializer)?;
        let signature = match value.as_object_mut().and_then(|m| m.remove("signature")) {
            Some(serde_json::Value::String(signature)) => signature,
            _ => return Err(serde::de::Error::missing_field("signature")),
        };
        let body = serde_json::from_value(value).map_err(serde::de::Error::custom)?;
        Ok(Receipt { body, signature })
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct SignatureHeader {
    alg: String,
    typ: Option<String>,
    kid: Option<String>,
}

/// What a receipt is checked against besides itself.
#[derive(Debug, Clone, Copy)]
pub enum TrustAnchor<'a> {
    /// Nothing: only that the receipt is self-consistent, which proves nothing about who
    /// approved, since anyone can make such a receipt with their own passkey.
    None,
    /// The gateway's keys: the receipt must carry a valid signature by one of them.
    Gateway(&'a KeySet),
    /// A credential the auditor knows: the receipt's passkey must be this key, and its
    /// assertion must be for this RP ID and made at this origin.
    Credential(&'a PinnedCredential),
}

/// A passkey credential known to the auditor apart from any receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinnedCredential {
    /// The credential's public key as a JWK (`kty` EC, OKP or RSA). Members a key does not
    /// consist of (`kid`, `alg`, `use`, ...) are not compared.
    pub public_key_jwk: serde_json::Value,
    /// The RP ID the credential is registered for, e.g. `handsign.example.com`.
    pub rp_id: String,
    /// The origin the assertion must have been made at, e.g. `https://handsign.example.com`.
    pub origin: String,
}

/// What a receipt was verified against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Anchored {
    /// Nothing beyond the receipt: self-consistent, not evidence.
    Unverified,
    /// The gateway's signature, by the key with this `kid`.
    GatewaySignature { kid: String },
    /// The pinned credential: its key made the assertion, for this RP ID at this origin.
    PinnedCredential { rp_id: String, origin: String },
}

/// What a valid receipt shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedReceipt {
    pub decision: Decision,
    pub user: String,
    pub agent: String,
    pub action: String,
    pub audience: String,
    pub params_sha256: ParamsHash,
    pub anchored: Anchored,
}

/// Why a receipt does not hold; the message names the check.
#[derive(Debug, thiserror::Error)]
pub enum ReceiptError {
    #[error("not a receipt: {0}")]
    Malformed(String),
    #[error("receipt version {0:?} is not {RECEIPT_VERSION:?}")]
    UnsupportedVersion(String),
    #[error("statement version {0:?} is not {STATEMENT_VERSION:?}")]
    UnsupportedStatementVersion(String),
    #[error("the receipt's params cannot be canonicalized: {0}")]
    Params(CanonicalError),
    #[error(
        "params hash differs: the statement says {statement}, the receipt's params hash to {computed}"
    )]
    ParamsHashMismatch {
        statement: ParamsHash,
        computed: ParamsHash,
    },
    #[error("the statement cannot be canonicalized: {0}")]
    Statement(CanonicalError),
    #[error("the credential's public key is unusable: {0}")]
    CredentialKey(CoseKeyError),
    #[error("the credential's JWK is not the same key as its COSE key")]
    JwkMismatch,
    #[error("evidence member {0} is not base64url")]
    EvidenceEncoding(&'static str),
    #[error("passkey assertion: {0}")]
    Assertion(AssertionError),
    #[error("gateway signature is malformed: {0}")]
    GatewaySignatureMalformed(String),
    #[error("gateway signature is by kid {0:?}, which is not among the gateway's keys")]
    UnknownGatewayKid(String),
    #[error(
        "gateway signature does not verify: the receipt was altered or not signed by the gateway"
    )]
    BadGatewaySignature,
    #[error("the receipt's passkey is not the pinned credential key")]
    NotPinnedKey,
    #[error("the receipt is for RP ID {found:?}, the pinned credential for {pinned:?}")]
    NotPinnedRpId { pinned: String, found: String },
}

impl ReceiptBody {
    /// The bytes the gateway signs: RFC 8785 over the body.
    fn signed_bytes(&self) -> Result<Vec<u8>, ReceiptError> {
        let value =
            serde_json::to_value(self).map_err(|e| ReceiptError::Malformed(e.to_string()))?;
        canonical::canonicalize_value(&value, &RECEIPT_LIMITS).map_err(ReceiptError::Params)
    }

    /// Signs the body as the gateway.
    pub fn sign(self, key: &SigningKey) -> Result<Receipt, ReceiptError> {
        let header = SignatureHeader {
            alg: "EdDSA".into(),
            typ: Some(RECEIPT_SIGNATURE_TYP.into()),
            kid: Some(key.kid().into()),
        };
        let signature = jws::sign_detached(key, &header, &self.signed_bytes()?)
            .map_err(|e| ReceiptError::Malformed(e.to_string()))?;
        Ok(Receipt {
            body: self,
            signature,
        })
    }
}

impl Receipt {
    /// Reads a receipt strictly: duplicate members, imprecise numbers and unknown members are
    /// refused rather than silently resolved, since the verdict must be about these exact bytes.
    pub fn parse(json: &[u8]) -> Result<Self, ReceiptError> {
        let canonical = canonical::canonicalize(json, &RECEIPT_LIMITS)
            .map_err(|e| ReceiptError::Malformed(e.to_string()))?;
        let mut value: serde_json::Value = serde_json::from_slice(&canonical)
            .map_err(|e| ReceiptError::Malformed(e.to_string()))?;
        let signature = match value.as_object_mut().and_then(|m| m.remove("signature")) {
            Some(serde_json::Value::String(signature)) => signature,
            _ => {
                return Err(ReceiptError::Malformed(
                    "member \"signature\" (a string) is missing".into(),
                ));
            }
        };
        let body =
            serde_json::from_value(value).map_err(|e| ReceiptError::Malformed(e.to_string()))?;
        Ok(Receipt { body, signature })
    }

    /// Checks the receipt: params hash, statement digest, the passkey assertion over it, and
    /// then `anchor`: the gateway's signature, or that the passkey, RP ID and origin are the
    /// pinned credential's. With [`TrustAnchor::None`] a receipt made from scratch passes too:
    /// the answer says [`Anchored::Unverified`].
    pub fn verify(&self, anchor: TrustAnchor<'_>) -> Result<VerifiedReceipt, ReceiptError> {
        let body = &self.body;
        if body.v != RECEIPT_VERSION {
            return Err(ReceiptError::UnsupportedVersion(body.v.clone()));
        }
        let statement = &body.statement;
        if statement.v != STATEMENT_VERSION {
            return Err(ReceiptError::UnsupportedStatementVersion(
                statement.v.clone(),
            ));
        }
        let params = CanonicalParams::from_value(&body.params, &RECEIPT_LIMITS)
            .map_err(ReceiptError::Params)?;
        if params.hash() != statement.params_sha256 {
            return Err(ReceiptError::ParamsHashMismatch {
                statement: statement.params_sha256.clone(),
                computed: params.hash(),
            });
        }
        let digest = statement.digest().map_err(ReceiptError::Statement)?;

        let cose = decode(
            &body.credential.public_key_cose,
            "credential.public_key_cose",
        )?;
        let key = CredentialPublicKey::from_cose(&cose).map_err(ReceiptError::CredentialKey)?;
        let jwk = key.to_jwk();
        if jwk != body.credential.public_key_jwk {
            return Err(ReceiptError::JwkMismatch);
        }
        // A pinned credential's RP ID and origin replace the receipt's own in the assertion
        // check; the receipt must name the same RP ID.
        let pinned_origin;
        let (rp_id, origins) = match anchor {
            TrustAnchor::Credential(pinned) => {
                if !same_key(&jwk, &pinned.public_key_jwk) {
                    return Err(ReceiptError::NotPinnedKey);
                }
                if body.rp_id != pinned.rp_id {
                    return Err(ReceiptError::NotPinnedRpId {
                        pinned: pinned.rp_id.clone(),
                        found: body.rp_id.clone(),
                    });
                }
                pinned_origin = [pinned.origin.clone()];
                (pinned.rp_id.as_str(), &pinned_origin[..])
            }
            TrustAnchor::None | TrustAnchor::Gateway(_) => (body.rp_id.as_str(), &body.origins[..]),
        };
        let evidence = &body.evidence;
        let assertion = Assertion {
            authenticator_data: decode(&evidence.authenticator_data, "authenticator_data")?,
            client_data_json: decode(&evidence.client_data_json, "client_data_json")?,
            signature: decode(&evidence.signature, "signature")?,
        };
        let expected = AssertionExpectations {
            challenge: &digest,
            rp_id,
            allowed_origins: origins,
            require_user_verified: true,
        };
        verify_assertion(&key, &assertion, &expected).map_err(ReceiptError::Assertion)?;

        let anchored = match anchor {
            TrustAnchor::None => Anchored::Unverified,
            TrustAnchor::Gateway(keys) => self.verify_gateway_signature(keys)?,
            TrustAnchor::Credential(pinned) => Anchored::PinnedCredential {
                rp_id: pinned.rp_id.clone(),
                origin: pinned.origin.clone(),
            },
        };
        Ok(VerifiedReceipt {
            decision: statement.decision,
            user: statement.sub.clone(),
            agent: statement.act.clone(),
            action: statement.action.clone(),
            audience: statement.aud.clone(),
            params_sha256: statement.params_sha256.clone(),
            anchored,
        })
    }

    fn verify_gateway_signature(&self, keys: &KeySet) -> Result<Anchored, ReceiptError> {
        let malformed = |reason: String| ReceiptError::GatewaySignatureMalformed(reason);
        let jws = CompactJws::parse(&self.signature).map_err(|e| malformed(e.to_string()))?;
        let header: SignatureHeader = jws.header().map_err(|e| malformed(e.to_string()))?;
        if header.alg != "EdDSA" || header.typ.as_deref() != Some(RECEIPT_SIGNATURE_TYP) {
            return Err(malformed(format!(
                "alg {:?} and typ {:?} must be \"EdDSA\" and \"{RECEIPT_SIGNATURE_TYP}\"",
                header.alg, header.typ
            )));
        }
        let kid = header
            .kid
            .ok_or_else(|| malformed("the header has no kid".into()))?;
        let key = keys
            .get(&kid)
            .ok_or_else(|| ReceiptError::UnknownGatewayKid(kid.clone()))?;
        if !jws.verify_detached(key, &self.body.signed_bytes()?) {
            return Err(ReceiptError::BadGatewaySignature);
        }
        Ok(Anchored::GatewaySignature { kid })
    }
}

/// Whether `pinned` is the key `jwk` (as [`CredentialPublicKey::to_jwk`] writes it): every
/// member of `jwk` equal in `pinned`, whatever else `pinned` carries.
fn same_key(jwk: &serde_json::Value, pinned: &serde_json::Value) -> bool {
    jwk.as_object().is_some_and(|members| {
        !members.is_empty()
            && members
                .iter()
                .all(|(name, value)| pinned.get(name) == Some(value))
    })
}

fn decode(text: &str, member: &'static str) -> Result<Vec<u8>, ReceiptError> {
    base64url::decode(text).map_err(|_| ReceiptError::EvidenceEncoding(member))
}
